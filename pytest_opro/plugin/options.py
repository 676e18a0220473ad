"""Command-line options and ini settings: declared once, validated at start-up.

Every ``--opro-x`` option has an ini twin ``opro_x``. Precedence: CLI > task > ini > default
(the task part is applied in :mod:`pytest_opro.plugin.session`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

_TRUTH = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be a positive integer")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be 0 or more")
    return number


def _probability(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise ValueError("must be between 0 and 1")
    return number


def _tolerance(value: str) -> float:
    """Points of accuracy, e.g. 2 means two percentage points."""
    number = float(value)
    if not 0 <= number <= 100:
        raise ValueError("must be between 0 and 100 (percentage points)")
    return number


def _cache_mode(value: str) -> str:
    if value not in ("rw", "ro", "off"):
        raise ValueError("must be rw, ro or off")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


def _cache_url(value: str) -> str:
    from pytest_opro.models.redis_cache import check_url

    try:
        return check_url(value)
    except ValueError:
        raise ValueError("must be a Redis URL such as redis://host:6379/0 or rediss://host:6380/0") from None


def _cache_scope(value: str) -> str:
    from pytest_opro.models.redis_cache import SCOPE_RULE, check_scope

    try:
        return check_scope(value)
    except ValueError:
        raise ValueError(f"must be a scope name of {SCOPE_RULE}") from None


def _cache_trust(value: str) -> tuple[str, ...]:
    from pytest_opro.models.redis_cache import parse_scopes

    try:
        return parse_scopes(value)
    except ValueError as exc:
        raise ValueError(f"must list scope names, comma-separated ({exc})") from None


def _shard(value: str) -> tuple[int, int]:
    from pytest_opro.plugin.shard import parse_shard

    return parse_shard(value)


def _proposers(value: str) -> str:
    from pytest_opro.errors import ConfigError
    from pytest_opro.opro.mix import parse_mix

    try:
        parse_mix(value)
    except ConfigError as exc:
        raise ValueError(f"must be a mix like opro:1,edit:1 ({exc})") from None
    return value.strip()


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    if value.strip() not in choices:
        raise ValueError(f"must be {' or '.join(choices)}")
    return value.strip()


def _screening(value: str) -> str:
    from pytest_opro.opro.settings import SCREENING

    return _one_of(value, SCREENING)


def _collapse(value: str) -> str:
    from pytest_opro.opro.settings import COLLAPSE_ACTIONS

    return _one_of(value, COLLAPSE_ACTIONS)


def _aggregate(value: str) -> str:
    from pytest_opro.opro.settings import AGGREGATES

    if value.strip() not in AGGREGATES:
        raise ValueError(f"must be {', '.join(AGGREGATES[:-1])} or {AGGREGATES[-1]}")
    return value.strip()


def _report_path(value: str) -> str:
    if not value.endswith((".md", ".json")):
        raise ValueError("must end in .md or .json")
    return value


def _html_path(value: str) -> str:
    if not value.strip().endswith((".html", ".htm")):
        raise ValueError("must end in .html")
    return value.strip()


@dataclass(frozen=True)
class OptionSpec:
    """One setting: its name (``--opro-<name>`` and ``opro_<name>``), parser, default and help."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    secret: bool = False  # the value may hold a password: error messages show it redacted


SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("model", _text, None, "scorer model, a litellm model string (default local/smollm2)", "MODEL"),
    OptionSpec("optimizer-model", _text, None, "optimizer model (default: local/smollm2)", "MODEL"),
    OptionSpec("steps", _non_negative_int, None, "maximum optimisation steps (default 10)", "N"),
    OptionSpec("candidates", _positive_int, None, "candidate instructions per step (default 8)", "N"),
    OptionSpec(
        "patience", _non_negative_int, None, "stop after N steps without validation gain (default 3, 0 = never)", "N"
    ),
    OptionSpec("max-calls", _positive_int, None, "stop a task's run after N provider calls", "N"),
    OptionSpec("max-tokens", _positive_int, None, "stop a task's run after N tokens", "N"),
    OptionSpec("max-cost", _non_negative_float, None, "stop a task's run after USD spent", "USD"),
    OptionSpec("concurrency", _positive_int, 16, "concurrent model calls (default 16)", "N"),
    OptionSpec(
        "proposers",
        _proposers,
        None,
        "how a step's candidates are shared, e.g. 'opro:1,edit:1,format:1,classic:1' (default: opro only)",
        "MIX",
    ),
    OptionSpec(
        "screening",
        _screening,
        None,
        "train scoring: race (default; stop clearly worse candidates early) or off (every candidate on all of train)",
        "MODE",
    ),
    OptionSpec(
        "samples",
        _positive_int,
        None,
        "scorer calls per example, for scorers whose answers vary between calls (default 1)",
        "K",
    ),
    OptionSpec(
        "aggregate",
        _aggregate,
        None,
        "how an example's samples become its score: mean (default, graded), all (pass^k) or majority",
        "HOW",
    ),
    OptionSpec("seed", _non_negative_int, None, "optimizer seed (default 0)", "N"),
    OptionSpec(
        "select-alpha",
        _probability,
        None,
        "optimise: significance level a winner must reach on validation "
        "(paired test, candidates tested in train-score order; default 0.05)",
        "P",
    ),
    OptionSpec(
        "collapse",
        _collapse,
        None,
        "optimise: a candidate whose answers collapse onto one label: reject (default; not shipped when the "
        "task's targets are less concentrated) or flag (shipped when it wins, and flagged)",
        "MODE",
    ),
    OptionSpec("cache", _cache_mode, "rw", "response cache: rw (default), ro or off", "MODE"),
    OptionSpec("cache-dir", _text, ".opro_cache", "response cache directory (default <rootdir>/.opro_cache)", "DIR"),
    OptionSpec(
        "cache-url",
        _cache_url,
        None,
        "shared response cache in Redis instead of the directory: "
        "redis://host:6379/0 or rediss://... (password in the URL or $OPRO_REDIS_PASSWORD)",
        "URL",
        secret=True,
    ),
    OptionSpec(
        "cache-scope",
        _cache_scope,
        None,
        "Redis cache: the trust scope this run writes, e.g. main, pr-42 (default: none, one shared key space); "
        "it reads its own scope, then the trusted ones",
        "NAME",
    ),
    OptionSpec(
        "cache-trust",
        _cache_trust,
        None,
        "Redis cache: the scopes a scoped run reads after its own, comma-separated (default main; none: "
        "only its own); a run whose own scope is trusted reads only that",
        "SCOPES",
    ),
    OptionSpec(
        "cache-ttl", _positive_float, None, "response cache entries expire after SECONDS (default: never)", "SECONDS"
    ),
    OptionSpec(
        "router",
        _text,
        None,
        "send every model call through a litellm Router set up in FILE (YAML: "
        "model_list, router_settings, pacing; relative to the rootdir)",
        "FILE",
    ),
    OptionSpec(
        "shard",
        _shard,
        None,
        "run only shard K of N (e.g. 2/4): N CI jobs check disjoint sets of prompt tests whose union is all of them",
        "K/N",
    ),
    OptionSpec("tolerance", _tolerance, 2.0, "gate: accuracy drop in points tolerated (default 2)", "POINTS"),
    OptionSpec("alpha", _probability, 0.05, "gate: significance level of the paired test (default 0.05)", "P"),
    OptionSpec("report", _report_path, None, "write a report: PATH.md (markdown) or PATH.json", "PATH"),
    OptionSpec(
        "html",
        _html_path,
        None,
        "write one self-contained HTML page with every example's outputs side by side (PATH.html)",
        "PATH",
    ),
    OptionSpec(
        "html-rows", _positive_int, 2000, "HTML report: example rows shown per task at most (default 2000)", "N"
    ),
    OptionSpec("plot", _text, None, "write one PNG per optimised task into DIR (needs pytest-opro[plot])", "DIR"),
    OptionSpec("dir", _text, "__opro__", "artifact directory beside each test module (default __opro__)", "NAME"),
)

FLAGS = (
    ("optimize", "run the OPRO loop for selected prompt tasks and write their artifacts"),
    ("allow-stale", "gate even when the artifact's fingerprint does not match the task (warn only)"),
    ("allow-no-gain", "with --opro-optimize: pass even when no candidate beat the baseline on validation"),
    (
        "compare-fail",
        "with --opro-compare-model: fail a task whose score drops on a compared model as the gate would fail it",
    ),
)

#: --opro-compare-model (repeatable) and its ini twin opro_compare_models (one model a line).
COMPARE_HELP = (
    "gate mode: also score each committed instruction with MODEL as scorer and compare with the "
    "recorded outcomes (repeatable; 'MODEL key=value ...' sets sampling parameters)"
)


def dest(name: str) -> str:
    return "opro_" + name.replace("-", "_")


def add_options(parser: pytest.Parser) -> None:
    """Register the "opro" option group and the matching ini settings."""
    group = parser.getgroup("opro", "prompt optimisation and regression gating (pytest-opro)")
    for name, text in FLAGS:
        group.addoption(f"--opro-{name}", action="store_true", default=None, dest=dest(name), help=text)
        parser.addini(dest(name), f"{text} (ini: true/false)", default="false")
    for spec in SPECS:
        group.addoption(f"--opro-{spec.name}", dest=dest(spec.name), default=None, metavar=spec.metavar, help=spec.help)
        parser.addini(dest(spec.name), spec.help, default=None)
    group.addoption(
        "--opro-compare-model",
        action="append",
        dest="opro_compare_model",
        default=None,
        metavar="MODEL",
        help=COMPARE_HELP,
    )
    parser.addini("opro_compare_models", COMPARE_HELP + " (ini: one model a line)", type="linelist", default=[])


def _compare_models(config: pytest.Config) -> list[str]:
    """The models of --opro-compare-model (or ini opro_compare_models), each checked to parse."""
    from pytest_opro.errors import ConfigError
    from pytest_opro.models.config import parse_model

    cli = config.getoption("opro_compare_model")
    source = "--opro-compare-model" if cli is not None else "ini opro_compare_models"
    models = [str(m).strip() for m in (cli if cli is not None else config.getini("opro_compare_models") or [])]
    for model in models:
        try:
            parse_model(model)
        except ConfigError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None
    return [m for m in models if m]


@dataclass
class Options:
    """Validated settings of one pytest run (CLI over ini over defaults)."""

    values: dict[str, Any] = field(default_factory=dict)
    from_cli: set[str] = field(default_factory=set)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def cli(self, name: str) -> Any:
        """The value only when given on the command line (it beats the task's own)."""
        return self.values[name] if name in self.from_cli else None


def read_options(config: pytest.Config) -> Options:
    """Read and validate every option; a bad value is a UsageError naming option and fix."""
    opts = Options()
    for name, _ in FLAGS:
        key = dest(name)
        cli = config.getoption(key)
        if cli is not None:
            opts.values[key[5:]] = bool(cli)
            continue
        raw = str(config.getini(key) or "false").strip().lower()
        if raw not in _TRUTH:
            raise pytest.UsageError(f"ini {key}: invalid truth value {raw!r}; use true or false")
        opts.values[key[5:]] = _TRUTH[raw]
    for spec in SPECS:
        key = dest(spec.name)
        cli = config.getoption(key)
        ini = config.getini(key)
        raw, source = (cli, f"--opro-{spec.name}") if cli is not None else (ini, f"ini {key}")
        attr = key[5:]
        if raw is None or raw == "":
            opts.values[attr] = spec.default
            continue
        try:
            opts.values[attr] = spec.parse(str(raw))
        except ValueError as exc:
            reason = str(exc) if "must" in str(exc) else f"is not a valid {spec.metavar.lower()}"
            shown = raw if len(str(raw)) <= 100 else f"{str(raw)[:40]}... ({len(str(raw))} characters)"
            if spec.secret:
                from pytest_opro.models.redis_cache import redact_url

                shown = redact_url(str(raw))
            raise pytest.UsageError(f"{source}={shown!r} {reason}") from None
        if cli is not None:
            opts.from_cli.add(attr)
    opts.values["compare_models"] = _compare_models(config)
    if opts.values["plot"]:
        from pytest_opro.reporting.plot import missing_requirement

        problem = missing_requirement()
        if problem:
            raise pytest.UsageError(problem)
    cache_dir = Path(opts.values["cache_dir"])
    opts.values["cache_dir"] = cache_dir if cache_dir.is_absolute() else config.rootpath / cache_dir
    if opts.values["router"]:
        router = Path(opts.values["router"])
        opts.values["router"] = router if router.is_absolute() else config.rootpath / router
    return opts
