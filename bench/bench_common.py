"""Shared helpers for the benchmarks: a loopback server in its own process, timing, table output.

The server runs in a child process so its request threads do not compete with the client for the
GIL (a real provider is another machine). The parent asks it for counters over a pipe.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_MODEL = "openai/bench-model"
API_KEY = "sk-loopback"


def bench_answer(messages: list[dict]) -> str:
    """Server replies: a fresh instruction for meta-prompts, a label (fixed by the prompt) otherwise."""
    text = ""
    for message in messages:
        if message.get("role") == "user":
            text = str(message.get("content") or "")
    if "generate the instruction <INS>" in text:
        return f"<INS>Label the review as positive or negative (variant {next(_variants)}).</INS>"
    return "positive" if hashlib.sha256(text.encode()).digest()[0] % 2 else "negative"


_variants = itertools.count(1)


def _serve(conn: Any, latency: float, max_seconds: float, answer: Any, options: dict | None = None) -> None:
    from tests.support.loopback import LoopbackServer

    with LoopbackServer(answer=answer, latency=latency, max_seconds=max_seconds, **(options or {})) as server:
        conn.send(server.url)
        while True:
            command = conn.recv()
            if command == "stats":
                conn.send(
                    {
                        "requests": server.requests,
                        "completed": server.completed,
                        "max_in_flight": server.max_in_flight,
                        "rate_limited": server.rate_limited,
                        "faults": dict(server.fault_counts),
                    }
                )
            elif command == "reset":
                with server._lock:
                    server.requests = server.completed = server.max_in_flight = server.rate_limited = 0
                    server.fault_counts.clear()
                    server._tokens, server._refilled = server.rate_burst, time.monotonic()
                conn.send(True)
            else:
                conn.send(True)
                break


class ServerProcess:
    """``with ServerProcess(latency=0.1) as server:`` -> ``server.url``, ``server.stats()``."""

    def __init__(
        self, latency: float = 0.1, max_seconds: float = 600.0, answer: Any = bench_answer, **options: Any
    ) -> None:
        self.latency = latency
        self.max_seconds = max_seconds
        self.answer = answer
        self.options = options  # more LoopbackServer arguments, e.g. rate_limit=20

    def __enter__(self) -> "ServerProcess":
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child, self.latency, self.max_seconds, self.answer, self.options), daemon=True
        )
        self._proc.start()
        self.url: str = self._conn.recv()
        return self

    def stats(self) -> dict[str, int]:
        self._conn.send("stats")
        return self._conn.recv()

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
            self._conn.recv()
        except (OSError, EOFError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()


class StubLitellm:
    """Stands in for the litellm module in diagnostics: ``acompletion`` sleeps L and answers like the
    benchmark server, so only our own code (pytest_opro) spends CPU."""

    def __init__(self, latency: float, answer: Any = bench_answer) -> None:
        self.latency = latency
        self.answer = answer

    async def acompletion(self, *, messages: list[dict], **kwargs: Any) -> dict:
        import asyncio

        await asyncio.sleep(self.latency)
        return {
            "choices": [{"message": {"content": self.answer(messages)}}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1},
        }

    def completion_cost(self, **kwargs: Any) -> float:
        return 0.0


class stubbed_litellm:
    """``with stubbed_litellm(0.1):`` -> pytest_opro.models.llm talks to a StubLitellm instead of litellm."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def __enter__(self) -> StubLitellm:
        from pytest_opro.models import litellm_bridge as llm

        self._real = llm.get_litellm()
        llm._litellm = StubLitellm(self.latency)
        return llm._litellm

    def __exit__(self, *exc: object) -> None:
        from pytest_opro.models import litellm_bridge as llm

        llm._litellm = self._real


def model_config(url: str, model: str = BENCH_MODEL, transport: str = "auto", **params: Any) -> Any:
    from pytest_opro.models.config import ModelConfig

    return ModelConfig(
        model=model,
        params=params or {"temperature": 0, "max_tokens": 16},
        api_base=url,
        api_key=API_KEY,
        timeout=30.0,
        transport=transport,
    )


def transport_label(config: Any) -> str:
    """How the benchmark's calls travel: "HTTP" (pytest_opro.models.openai_http) or "litellm"."""
    return "HTTP" if config.uses_http() else "litellm"


def runqueue_wait() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat).

    On a shared machine this is the time other processes took from us; 0.0 where unavailable.
    """
    total = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return 0.0
    return total / 1e9


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(values: Sequence[float], digits: int = 3) -> str:
    med, lo, hi = summary(values)
    return f"{med:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata as md

    try:
        litellm_version = md.version("litellm")
    except md.PackageNotFoundError:
        litellm_version = "absent"
    return (
        f"{os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}, litellm {litellm_version}, "
        f"{platform.system()} {platform.release()}, load average {loadavg()}"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)
