"""The model's own process: generation runs in a child process that the worker supervises.

llama.cpp is native code: on a CPU whose advertised instructions the OS or VM does not enable, or
with a broken build, it can die of a segfault, an abort or an illegal instruction. In the child,
such a death fails the calls in flight (and every later call to that model in this process) with
one :class:`ProviderError` naming the model, the signal and what to do; pytest goes on.

Parent and child speak length-prefixed pickle frames over the child's stdin and stdout (both ends
are this module): a list of ``(messages, params)`` goes in, a list of ``GenerationResult`` or
``ProviderError`` comes back, one per item.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Mapping, Sequence, Union

from pytest_opro.errors import ProviderError
from pytest_opro.models.local.sampling import GenerationResult

#: Tests only: a signal name (``SIGSEGV``, ``SIGABRT``, ``SIGILL``) the child raises on itself before
#: it generates, to prove that a native crash of the model fails calls and leaves pytest running.
CRASH_FOR_TESTS = "OPRO_LOCAL_TEST_CRASH"
WHAT_TO_DO = (
    "update the binding (pip install -U llama-cpp-python) or use a server model "
    "(for example ollama/..., hosted_vllm/... or openai/...)"
)

Item = tuple[Sequence[Mapping[str, Any]], Mapping[str, Any]]
Outcome = Union[GenerationResult, ProviderError]
_HEADER = struct.Struct("<Q")
_CHILD = "import sys; from pytest_opro.models.local.process import main; main(sys.argv[1:])"


def _send(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - frames come from our own child process


def describe_exit(code: int) -> str:
    """``SIGSEGV (segmentation fault)`` for a child killed by a signal, else ``exit status N``."""
    if code < 0:
        try:
            number = signal.Signals(-code)
        except ValueError:
            return f"signal {-code}"
        text = signal.strsignal(number) or ""
        return f"{number.name} ({text.lower()})" if text else number.name
    return f"exit status {code}"


class ModelProcess:
    """One model file loaded in a child process; :meth:`generate` runs a batch there.

    Not for concurrent use: the worker thread is its only caller (a lock guards it anyway).
    """

    def __init__(self, path: Path, name: str, n_threads: int, env: Mapping[str, str] | None = None) -> None:
        self.path, self.name = path, name
        self.lock = threading.Lock()
        self.failure: ProviderError | None = None
        self._stderr = tempfile.TemporaryFile()
        package_root = str(Path(__file__).resolve().parents[3])  # the child runs this very code
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), name, str(n_threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env,
        )
        try:
            ready = _receive(self._stdout)
        except (EOFError, OSError):
            raise self._died("loading") from None
        if isinstance(ready, ProviderError):  # the file did not load: a plain error, not a crash
            self.failure = ready
            self.close()
            raise ready

    @property
    def _stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def _stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def generate(self, items: Sequence[Item]) -> list[Outcome]:
        """Run chat completions in the child; a dead child raises its ProviderError, now and later."""
        with self.lock:
            if self.failure is not None:
                raise self.failure
            try:
                _send(self._stdin, [(list(messages), dict(params)) for messages, params in items])
                outcomes: list[Outcome] = _receive(self._stdout)
            except (EOFError, OSError):
                raise self._died("generating") from None
            return outcomes

    def _died(self, doing: str) -> ProviderError:
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        last = self._last_stderr_line()
        detail = f"; its last words: {last}" if last else ""
        self.failure = ProviderError(
            f"{self.name}: the model process died of {describe_exit(code)} in llama.cpp while {doing} "
            f"(the model file {self.path.name}){detail}; {WHAT_TO_DO}"
        )
        return self.failure

    def _last_stderr_line(self) -> str:
        try:
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read()[-4000:].decode("utf-8", "replace").splitlines()]
        except OSError:
            return ""
        # llama.cpp's own last words (GGML_ASSERT ..., ... error: ...), not Python's fault dump
        said = [line for line in lines if ("GGML" in line or "error" in line.lower()) and "Fatal Python" not in line]
        last = said[-1] if said else ""
        return last if len(last) <= 200 else last[:197] + "..."

    def close(self) -> None:
        """End the child (it exits when its stdin closes) and free its pipes."""
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


# -- the child ---------------------------------------------------------------------------------
def _serve(model: Any, items: list[Item]) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(items)
    requests, slots = [], []
    for k, (messages, params) in enumerate(items):
        try:
            requests.append(model.request(messages, params))
            slots.append(k)
        except ProviderError as exc:
            outcomes[k] = exc
    crash = os.environ.get(CRASH_FOR_TESTS, "").strip()
    if crash:
        os.kill(os.getpid(), getattr(signal, crash))
    if requests:
        try:
            results: list[Outcome] = list(model.generate(requests))
        except Exception as exc:  # noqa: BLE001 - reported for every item of the batch
            results = [ProviderError(f"{model.name}: generation failed: {exc}")] * len(requests)
        for k, result in zip(slots, results):
            outcomes[k] = result
    return [o for o in outcomes if o is not None]


def main(argv: Sequence[str]) -> None:
    """The child: load the model, then answer frames from stdin until it closes."""
    from pytest_opro.models.local.model import LocalModel

    path, name, threads = argv
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever native code prints goes to stderr, never into the frames
    faulthandler.enable()
    try:
        model = LocalModel(path, n_threads=int(threads), name=name)
    except ProviderError as exc:
        _send(out, exc)
        return
    _send(out, "ready")
    source = sys.stdin.buffer
    while True:
        try:
            items = _receive(source)
        except EOFError:
            return
        _send(out, _serve(model, items))
