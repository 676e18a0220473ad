"""Building the optimizer's meta-prompt from Jinja2 templates in ``pytest_opro/templates``.

A template is chosen by name (``"instruction"`` → ``templates/instruction.j2``), by a path to a
``.j2`` file, or given as source. Trajectory texts and exemplars are variables: model output is
never parsed as template source.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pytest_opro.errors import TemplateError
from pytest_opro.opro.templating import render


def _templates() -> Any:
    """The shipped ``templates`` folder (read as package data, without importing it)."""
    return resources.files("pytest_opro").joinpath("templates")


def template_source(spec: str, what: str = "meta-prompt template") -> tuple[str, str]:
    """Return (source, origin) for a shipped template's name, a path to a ``.j2`` file, or literal
    source; `what` names the kind of template in error messages."""
    if "{{" in spec or "{%" in spec:
        return spec, f"{what} (inline)"
    if spec.endswith(".j2") or "/" in spec or "\\" in spec:
        path = Path(spec)
        if not path.is_file():
            raise TemplateError(f"{what} file not found: {spec}")
        return path.read_text(encoding="utf-8"), str(path)
    resource = _templates().joinpath(f"{spec}.j2")
    if not resource.is_file():
        names = sorted(p.name[:-3] for p in _templates().iterdir() if p.name.endswith(".j2"))
        raise TemplateError(f"unknown {what} {spec!r}; shipped ones: {', '.join(names)}")
    return resource.read_text(encoding="utf-8"), f"templates/{spec}.j2"


def bucketize(value: float, buckets: int) -> int:
    """A score in [0, 1] shown as an integer 0-100, rounded to `buckets` levels (the paper: 100)."""
    value = min(1.0, max(0.0, value))
    if buckets <= 0:
        return round(value * 100)
    return round(round(value * buckets) * 100 / buckets)


def build_meta_prompt(spec: str, variables: dict[str, Any]) -> str:
    """Render the meta-prompt template `spec` with `variables`."""
    source, origin = template_source(spec)
    return render(source, variables, origin).strip() + "\n"
