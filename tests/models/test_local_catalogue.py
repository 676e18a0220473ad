"""Catalogue models (``local/<name>``) come from the Hugging Face cache, offline.

The tests lay out a hub cache in a temporary directory (``HF_HUB_CACHE``) holding the shipped
SmolLM2 GGUF under a test repository id, and run with ``HF_HUB_OFFLINE=1``: no network. They run in
a fresh interpreter because huggingface_hub reads both variables when it is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_opro.models import local
from pytest_opro.models.local.catalogue import CATALOGUE, sha256_of

pytest.importorskip("llama_cpp", reason='the embedded model needs: pip install "pytest-opro[local]"')
pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[2]
REPO_ID = "pytest-opro-test/smollm2-gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

SCRIPT = """
import json, sys
from pytest_opro.errors import ProviderError
from pytest_opro.models import local
from pytest_opro.models.local.catalogue import CATALOGUE, HubModel

repo, filename, sha256 = sys.argv[1:4]
CATALOGUE["smollm2-test"] = HubModel(repo, filename, 92, "tests", sha256)
CATALOGUE["smollm2-tampered"] = HubModel(repo, filename, 92, "tests", "0" * 64)
out = {}
out["path"] = str(local.check("local/smollm2-test"))
reply = local.submit("local/smollm2-test", [{"role": "user", "content": "Say hello."}], {"temperature": 0, "max_tokens": 4})
out["text"] = reply.result(timeout=600).text
for name in ("local/qwen2.5-0.5b", "local/smollm2-tampered"):
    try:
        local.check(name)
        out[name] = "no error"
    except ProviderError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache holding the shipped SmolLM2 GGUF as REPO_ID's file at COMMIT."""
    gguf = local.smollm2_path()
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / ("models--" + REPO_ID.replace("/", "--"))
    digest = sha256_of(gguf)
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / digest).symlink_to(gguf)  # the hub names a large file's blob by its SHA-256
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT, encoding="utf-8")
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / gguf.name).symlink_to(Path("..", "..", "blobs", digest))
    return cache


def run_offline(cache: Path) -> dict[str, str]:
    gguf = local.smollm2_path()
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, REPO_ID, gguf.name, sha256_of(gguf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_catalogue_models_come_from_the_hub_cache_offline(hub_cache: Path) -> None:
    out = run_offline(hub_cache)
    snapshot = hub_cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    assert out["path"] == str(snapshot / local.smollm2_path().name)  # found in the cache, checksum verified
    assert out["text"].strip()  # and the model answers from there
    missing = out["local/qwen2.5-0.5b"]
    assert missing.startswith(f"local/qwen2.5-0.5b: {CATALOGUE['qwen2.5-0.5b'].repo_id}/")
    assert f"is not in the Hugging Face cache ({hub_cache})" in missing
    assert "run once with network, or set HF_HUB_OFFLINE=1" in missing
    tampered = out["local/smollm2-tampered"]
    assert tampered.startswith("local/smollm2-tampered: ") and f"expected {'0' * 64}" in tampered


def test_a_local_file_path_needs_no_catalogue() -> None:
    gguf = local.smollm2_path()
    assert local.check(f"local/{gguf}") == gguf


def test_the_catalogue_names_real_gguf_files() -> None:
    for name, entry in CATALOGUE.items():
        assert name == name.lower() and "/" not in name and name != "smollm2"
        assert entry.repo_id.count("/") == 1 and entry.filename.endswith(".gguf")
        assert entry.sha256 is None or len(entry.sha256) == 64  # checked when known
