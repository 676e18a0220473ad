"""The package's shape as users and the layer rules see it, each checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys


def _fresh(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    out = _fresh(
        "import json, pytest_opro\n"
        "print(json.dumps({n: type(getattr(pytest_opro, n)).__name__ for n in pytest_opro.__all__}))"
    )
    kinds = json.loads(out)
    assert {
        "PromptTask",
        "load_examples",
        "metrics",
        "optimize",
        "ModelConfig",
        "Budget",
        "OptimizerSettings",
        "Result",
        "load_instruction",
        "OproError",
        "__version__",
    } <= set(kinds)
    assert kinds["metrics"] == "module" and kinds["PromptTask"] == "type" and kinds["optimize"] == "function"


def test_the_optimizer_core_loads_nothing_else_of_the_package() -> None:
    out = _fresh(
        "import sys, pytest_opro.opro\nprint('\\n'.join(sorted(m for m in sys.modules if m.startswith('pytest_opro'))))"
    )
    loaded = out.split()
    assert "pytest_opro.opro.loop" in loaded
    assert all(m in ("pytest_opro", "pytest_opro.errors") or m.startswith("pytest_opro.opro") for m in loaded), loaded
    assert "litellm" not in _fresh("import sys, pytest_opro.opro; print(' '.join(sys.modules))").split()
