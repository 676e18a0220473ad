"""The one thread that runs every generation, coalescing concurrent requests into batches."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from pytest_opro.models.local.model import LocalModel, get_model
from pytest_opro.models.local.sampling import GenerationRequest

COALESCE_SECONDS = 0.003  # how long the worker waits for more requests once one has arrived


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


def submit(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None = None
) -> concurrent.futures.Future:
    """Queue one chat completion on the worker; the future's result is a GenerationResult."""
    local = get_model(model)
    return _get_worker().submit(local, local.request(messages, params or {}))
