"""A loaded GGUF model: chat template, tokenizer, and generation (batched, with a single-sequence
fallback); one instance per file and process.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_opro.errors import ProviderError
from pytest_opro.models.local.batch import (
    BATCH_N_CTX,
    MAX_SEQUENCES,
    N_CTX,
    N_UBATCH,
    BatchDecoder,
    fits_in_batch,
)
from pytest_opro.models.local.files import (
    DEFAULT_MODEL,
    default_threads,
    full_name,
    llama_cpp_module,
    model_path,
)
from pytest_opro.models.local.sampling import (
    DEFAULT_MAX_TOKENS,
    GenerationRequest,
    GenerationResult,
)

# A minimal ChatML rendering for GGUF files without a chat template.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class LocalModel:
    """A GGUF model loaded with llama-cpp-python: chat rendering and (batched) generation.

    Not thread safe by itself: :func:`get_model` hands out one instance per file and the worker
    thread is the only caller of :meth:`generate`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_threads: int | None = None,
        batched: bool = True,
        name: str | None = None,
        extra_buffer_types: bool = False,
    ) -> None:
        llama_cpp = llama_cpp_module(name or DEFAULT_MODEL)
        self.path = Path(path)
        self.name = name or full_name(str(self.path))
        self.n_threads = n_threads or default_threads()
        with _quiet(), _extra_buffer_types(extra_buffer_types):
            try:
                self.llama = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=N_CTX,
                    n_batch=N_UBATCH,
                    n_ubatch=N_UBATCH,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ProviderError(f"{self.name}: cannot load GGUF file {str(self.path)!r} ({exc})") from None
        self._lib = llama_cpp
        self._template = _compile_template(self.llama.metadata.get("tokenizer.chat_template") or _CHATML)
        self._bos = self._token_text(self.llama.token_bos())
        self._eos = self._token_text(self.llama.token_eos())
        self._batcher: BatchDecoder | None = None
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
            prompt = self._template.render(
                messages=messages, add_generation_prompt=True, bos_token=self._bos, eos_token=self._eos
            )
        except Exception as exc:  # noqa: BLE001 - template errors come from the model file
            raise ProviderError(f"{self.name}: the model's chat template failed: {exc}") from None
        return prompt + prefill

    def tokenize(self, text: str) -> list[int]:
        if self._bos and text.startswith(self._bos):
            text = text[len(self._bos) :]  # llama.cpp adds BOS itself when the model wants it
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
            top_p=float(params["top_p"]) if params.get("top_p") is not None else 1.0,
            top_k=int(params.get("top_k") or 0),
            seed=int(seed) if seed is not None else None,
            stop=tuple(s for s in stops if s),
        )
        if request.max_tokens < 1:
            raise ProviderError(f"{self.name}: max_tokens must be >= 1, got {request.max_tokens}")
        limit = BATCH_N_CTX if self.batched else N_CTX
        if len(request.tokens) + request.max_tokens > limit:
            raise ProviderError(
                f"{self.name}: prompt of {len(request.tokens)} tokens plus max_tokens="
                f"{request.max_tokens} exceeds the context of {limit} tokens"
            )
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
            if members and (len(candidate) > MAX_SEQUENCES or not fits_in_batch(candidate)):
                yield group
                group, members = [], []
            group.append(index)
            members.append(request)
        if group:
            yield group

    def _run_group(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self.batched and self._batcher is None:
            try:
                self._batcher = BatchDecoder(self._lib, self.llama._model, self.n_threads)
            except Exception:  # noqa: BLE001 - no multi-sequence context on this build: one at a time
                self.batched = False
        if self._batcher is not None:
            return self._run_batched(requests)
        return [self._run_one(r) for r in requests]

    def _run_batched(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Decode `requests` together; a group llama.cpp cannot place in its KV cache (it reports
        "failed to find a memory slot") is split in halves, down to single requests, which always fit."""
        assert self._batcher is not None
        try:
            return self._batcher.run(requests)
        except RuntimeError:
            if len(requests) == 1:  # llama.cpp trouble even alone: the single-sequence path, where it fits
                request = requests[0]
                if len(request.tokens) + request.max_tokens > N_CTX:
                    raise
                return [self._run_one(request)]
            half = len(requests) // 2
            return self._run_batched(requests[:half]) + self._run_batched(requests[half:])

    def _run_one(self, request: GenerationRequest) -> GenerationResult:
        """Single-sequence fallback through llama-cpp-python's own completion (reuses the KV prefix)."""
        kwargs: dict[str, Any] = dict(
            max_tokens=request.max_tokens,
            stop=list(request.stop) or None,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            min_p=0.0,
            repeat_penalty=1.0,
        )
        if request.temperature > 0 and request.seed is not None:
            kwargs["seed"] = request.seed
        out = self.llama.create_completion(request.tokens, **kwargs)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return GenerationResult(
            choice.get("text") or "",
            len(request.tokens),
            int(usage.get("completion_tokens") or 0),
            "length" if choice.get("finish_reason") == "length" else "stop",
        )

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        with contextlib.suppress(Exception):
            self.llama.close()


def _plain_message(message: Mapping[str, Any]) -> dict[str, str]:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(
            str(p.get("text") or "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return {"role": str(message.get("role") or "user"), "content": "" if content is None else str(content)}


def _compile_template(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


_loader_lock = threading.Lock()


@contextlib.contextmanager
def _extra_buffer_types(enabled: bool) -> Any:
    """Load models with llama.cpp's ``use_extra_bufts`` set to `enabled` (``Llama()`` has no argument
    for it, so its loader is handed the parameter while a model loads).

    Off by default: the extra buffer types are llama.cpp's repacked and AMX weight layouts. A CPU can
    advertise AMX that its OS or VM does not enable, and the AMX kernels then die of a general
    protection fault on their first matrix product. Without extra buffer types the weights stay in
    plain CPU buffers and are multiplied by the AVX2/AVX-512 kernels every x86-64 CPU here runs; the
    shipped SmolLM2 file has no tensor the repacked layout takes, so this costs it nothing.
    """
    import llama_cpp.llama_cpp as low  # the module whose loader Llama() calls

    with _loader_lock:
        load = low.llama_model_load_from_file

        def load_with(path: bytes, params: Any) -> Any:
            params.use_extra_bufts = enabled
            return load(path, params)

        low.llama_model_load_from_file = load_with
        try:
            yield
        finally:
            low.llama_model_load_from_file = load


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
    name = full_name(model)
    llama_cpp_module(name)
    path = model_path(model)
    loaded = _models.get(path)
    if loaded is not None:
        return loaded
    with _models_lock:
        if path not in _models:
            _models[path] = LocalModel(path, name=name)
        return _models[path]
