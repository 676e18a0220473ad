"""The committed artifact: ``__opro__/<task>.yaml``, written atomically, read with ``safe_load``."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_opro.errors import ArtifactError
from pytest_opro.models.usage import usage_totals
from pytest_opro.opro.atomic import write_text_atomic
from pytest_opro.opro.mix import proposer_of

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema_version", "task", "instruction", "position", "scores", "test_outcomes", "fingerprint")


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types
    """Safe dumper that writes multi-line strings as blocks, for readable diffs."""


_OTHER_BREAKS = ("\r", "\x85", "\u2028", "\u2029")  # line breaks to YAML that plain/block styles would fold


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if any(c in value for c in _OTHER_BREAKS):
        style = '"'  # escaped, so the text reads back exactly
    else:
        style = "|" if "\n" in value else ""
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _FlowList(list[Any]):
    """A short list written on one line, e.g. ``ci95: [0.61, 0.83]``."""


def _flow_representer(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _str_representer)
_Dumper.add_representer(_FlowList, _flow_representer)


#: Decimal places an artifact keeps for every score; fresh scores are compared at this precision.
SCORE_DECIMALS = 4


def as_recorded(score: float) -> float:
    """A score at the precision an artifact records it, so a fresh score and a recorded one compare equal."""
    return round(score, SCORE_DECIMALS)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else as_recorded(value)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, _FlowList):
        return _FlowList(_round(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def _score_block(score: dict[str, Any]) -> dict[str, Any]:
    block = {"score": score["value"], "n": score["n"], "ci95": _FlowList([score["ci_low"], score["ci_high"]])}
    if score.get("notes"):  # why replies scored as they did, e.g. {"not JSON": 12} (test split)
        block["notes"] = dict(score["notes"])
    return block


USAGE_FIELDS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "retries", "failures")


def proposal_counts(trajectory: list[dict[str, Any]]) -> dict[str, int]:
    """Candidates each proposer made after the starting points (rejected ones included)."""
    counts: dict[str, int] = {}
    for c in trajectory:
        if c.get("step", 0) > 0:
            name = proposer_of(c.get("proposer"), c["step"])
            counts[name] = counts.get(name, 0) + 1
    return counts


def artifact_from_result(result: dict[str, Any], plugin_version: str, top: list[dict[str, Any]]) -> dict[str, Any]:
    """The artifact mapping for a Result's ``to_dict()``; `top` is its top candidates as dicts."""
    totals = usage_totals(result["usage"], USAGE_FIELDS)
    test_outcomes = result["scores"]["test"].get("outcomes") or {}
    data = {
        "schema_version": SCHEMA_VERSION,
        "task": result["task"],
        "instruction": result["instruction"],
        "position": result["position"],
        "scores": {split: _score_block(s) for split, s in result["scores"].items()},
        "train_validation_gap": result["train_validation_gap"],
        "test_outcomes": dict(sorted(test_outcomes.items())),
        "baseline": {
            "instruction": result["baseline_instruction"],
            "scores": {split: _score_block(s) for split, s in result["baseline_scores"].items()},
        },
        # how the winner was chosen, and answer collapse (schema 1 additions; absent in older artifacts)
        **({"selection": _selection_block(result["selection"])} if result.get("selection") else {}),
        **(
            {"collapse": result["collapse"], "answers": result["answers"]}
            if any(result.get("answers", {}).values())
            else {}
        ),
        "scorer": result["scorer"],
        "optimizer": result["optimizer"],
        **({"judge": result["judge"]} if result.get("judge") else {}),
        "fingerprint": result["fingerprint"],
        "optimizer_settings": result["settings"],
        "run": {
            "steps_run": result["steps_run"],
            "best_step": result["best_step"],
            "stop_reason": result["stop_reason"],
            **totals,
            **(
                {
                    "by_role": {
                        role: {k: u[k] for k in USAGE_FIELDS if k in u} for role, u in result["usage_by_role"].items()
                    }
                }
                if result.get("usage_by_role")
                else {}
            ),
            "wall_seconds": result["wall_seconds"],
            "rejections": result["rejections"],
            "proposals": proposal_counts(result["trajectory"]),
        },
        "top_candidates": [
            {
                "text": c["text"],
                "train": c["train"],
                "train_n": c.get("train_n"),
                "validation": c["validation"],
                "validation_n": c.get("validation_n"),
                "step": c["step"],
                **({"top_answer": top_answer(c)} if top_answer(c) else {}),
                **({"proposer": c["proposer"]} if c.get("proposer") else {}),
            }
            for c in top
        ],
        "plugin_version": plugin_version,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    rounded: dict[str, Any] = _round(data)
    return rounded


def top_answer(candidate: dict[str, Any]) -> dict[str, Any] | None:
    """A validated candidate's most common answer on validation: answer, count, n and share."""
    counts, outcomes = candidate.get("validation_answers"), candidate.get("validation_outcomes")
    if not counts or not outcomes:
        return None
    answer, count = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return {"answer": answer, "count": count, "n": len(outcomes), "share": count / len(outcomes)}


def _selection_block(selection: dict[str, Any]) -> dict[str, Any]:
    """The selection test as the artifact records it: decision, reason, alpha, correction and counts."""
    keep = ("step", "score", "gain", "better", "worse", "n", "p_value", "adjusted_p", "method")
    out = {
        k: selection[k] for k in ("kept_baseline", "reason", "split", "comparisons", "alpha", "correction", "min_delta")
    }
    for who in ("chosen", "best"):
        block = selection.get(who)
        out[who] = {k: block[k] for k in keep} if block else None
    return out


def dump(data: dict[str, Any]) -> str:
    """YAML text of an artifact mapping (stable key order, unicode kept, no line wrapping)."""
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
    return text


def write_artifact(path: str | Path, data: dict[str, Any]) -> Path:
    """Write `data` to `path` atomically (temp file + rename) and return the path."""
    path = Path(path)
    write_text_atomic(path, dump(data))
    return path


@dataclass
class Artifact:
    """A loaded artifact; `data` is the validated mapping."""

    path: Path
    data: dict[str, Any]

    @property
    def instruction(self) -> str:
        text: str = self.data["instruction"]
        return text

    @property
    def test_outcomes(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in self.data["test_outcomes"].items()}

    @property
    def test_score(self) -> float:
        return float(self.data["scores"]["test"]["score"])

    @property
    def fingerprint(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.data["fingerprint"].items()}


def load_artifact(path: str | Path) -> Artifact:
    """Read and validate an artifact; every problem is an ArtifactError naming the file and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no artifact; create it with: pytest --opro-optimize") from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            f"{path}: not UTF-8 (byte {exc.start}); regenerate it with pytest --opro-optimize"
        ) from None
    conflict = next((i for i, line in enumerate(text.splitlines(), 1) if line.startswith("<<<<<<< ")), None)
    if conflict is not None:
        raise ArtifactError(
            f"{path}:{conflict}: unresolved merge conflict; keep one side or regenerate it with pytest --opro-optimize"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ArtifactError(
            f"{path}{where}: corrupt artifact ({problem}); restore it from git or regenerate it with pytest --opro-optimize"
        ) from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: artifact is not a mapping; regenerate it with pytest --opro-optimize")
    version = data.get("schema_version")
    if isinstance(version, bool):  # YAML reads `true` as a bool, which Python counts as an int
        version = str(version).lower()
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: schema_version {version} was written by a newer pytest-opro (this one reads {SCHEMA_VERSION}); "
            "upgrade with: pip install -U pytest-opro"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ArtifactError(f"{path}: artifact lacks {', '.join(missing)}; regenerate it with pytest --opro-optimize")
    if not isinstance(version, int) or version < 1:
        raise ArtifactError(f"{path}: schema_version must be a positive integer, got {version!r}")
    _check_types(path, data)
    return Artifact(path=path, data=data)


def _check_types(path: Path, data: dict[str, Any]) -> None:
    if not isinstance(data["instruction"], str):
        raise ArtifactError(f"{path}: 'instruction' must be a string; quote it in the YAML")
    outcomes = data["test_outcomes"]
    if not isinstance(outcomes, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in outcomes.values()
    ):
        raise ArtifactError(f"{path}: 'test_outcomes' must map example ids to scores in [0, 1]")
    if not isinstance(data["fingerprint"], dict):
        raise ArtifactError(f"{path}: 'fingerprint' must be a mapping")
    try:
        float(data["scores"]["test"]["score"])
    except (TypeError, KeyError, ValueError):
        raise ArtifactError(f"{path}: 'scores.test.score' is missing or not a number") from None


def load_instruction(path: str | Path) -> str:
    """The committed instruction in an artifact, for application code (no pytest needed)."""
    return load_artifact(path).instruction
