"""The one thread that sends every generation to the model's process, coalescing concurrent requests
into batches."""

from __future__ import annotations

import atexit
import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_opro.errors import ProviderError
from pytest_opro.models.local.files import default_threads, full_name, llama_cpp_module, model_path
from pytest_opro.models.local.process import ModelProcess

COALESCE_SECONDS = 0.003  # how long the worker waits for more requests once one has arrived


@dataclass
class _Job:
    path: Path
    name: str
    messages: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class _Worker:
    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.processes: dict[Path, ModelProcess] = {}
        self.thread = threading.Thread(target=self._loop, name="pytest-opro-local", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> concurrent.futures.Future:
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

    def _process(self, job: _Job) -> ModelProcess:
        """The model's process, started at its first batch; a crashed one stays, to fail fast."""
        process = self.processes.get(job.path)
        if process is None:
            process = self.processes[job.path] = ModelProcess(job.path, job.name, default_threads())
        return process

    def _loop(self) -> None:
        while True:
            jobs = [j for j in self._take() if j.future.set_running_or_notify_cancel()]
            by_model: dict[Path, list[_Job]] = {}
            for job in jobs:
                by_model.setdefault(job.path, []).append(job)
            for group in by_model.values():
                try:
                    outcomes = self._process(group[0]).generate([(j.messages, j.params) for j in group])
                except BaseException as exc:  # noqa: BLE001 - reported to every caller
                    for job in group:
                        job.future.set_exception(exc)
                    continue
                for job, outcome in zip(group, outcomes):
                    if isinstance(outcome, ProviderError):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)

    def close(self) -> None:
        for process in self.processes.values():
            process.close()
        self.processes.clear()


_worker: _Worker | None = None
_paths: dict[str, Path] = {}
_worker_lock = threading.Lock()


def _get_worker() -> _Worker:
    global _worker
    if _worker is None or not _worker.thread.is_alive():
        with _worker_lock:
            if _worker is None or not _worker.thread.is_alive():
                _worker = _Worker()
    return _worker


@atexit.register
def _close() -> None:
    if _worker is not None:
        _worker.close()


def submit(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None = None
) -> concurrent.futures.Future:
    """Queue one chat completion for the model's process; the future's result is a GenerationResult
    (or a ProviderError: a bad request, or the model process died)."""
    path = _paths.get(model)
    if path is None:  # reading package metadata for every call would be slow
        llama_cpp_module(full_name(model))
        path = _paths[model] = model_path(model)
    return _get_worker().submit(_Job(path, full_name(model), messages, dict(params or {})))
