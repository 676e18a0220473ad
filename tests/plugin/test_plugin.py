"""Plugin behaviour, end to end through pytester, with the deterministic fake provider.

Every inner run gets a conftest that builds prompt tasks over a small synthetic example set and
answers them with ``tests/support/fake_provider.py``. Most runs are in-process (litellm is imported once,
by the outer run); the xdist run and the import check need a subprocess.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pytest_opro.prompts import artifact as artifact_mod
from tests.support.fake_provider import fake_handler

#: Inner pytest runs happen in this process: pytest-opro, litellm and their lazy imports load first.
pytestmark = pytest.mark.usefixtures("inline_ready")

REPO = Path(__file__).resolve().parents[2]

#: Unrelated plugins of this environment, each slow to start in a subprocess and its xdist workers.
OTHER_PLUGINS_OFF = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:anyio")

CONFTEST = """
import os
import pathlib
import sys

sys.path.insert(0, {repo!r})

import pytest
from pytest_opro import PromptTask, load_examples
from tests.support.fake_provider import FakeBrain, install

HERE = pathlib.Path(__file__).parent


def new_brain():
    keywords = os.environ.get("OPRO_FAKE_KEYWORDS")
    brain = FakeBrain(keywords=keywords.split("|")) if keywords else FakeBrain()
    script = os.environ.get("OPRO_FAKE_OPTIMIZER")
    if script:
        brain.optimizer = script.split("|")
    return brain


@pytest.fixture
def make_task():
    \"\"\"Build a PromptTask over a JSONL file in the test directory, answered by a fresh fake brain.\"\"\"

    def make(name="sports", data="sports.jsonl", **kwargs):
        examples = load_examples(HERE / data)
        install(new_brain()).learn(examples)
        kwargs.setdefault("scorer", "fake/scorer")
        kwargs.setdefault("optimizer", "fake/optimizer")
        kwargs.setdefault("settings", {{"max_steps": 2, "select_alpha": 1}})
        kwargs.setdefault("metric", "choice")
        return PromptTask(name=name, examples=examples, **kwargs)

    return make
"""

TEST_SPORTS = """
def test_sports(opro, make_task):
    opro.check(make_task())
"""


def example_lines(n: int = 30, prefix: str = "q") -> str:
    """`n` yes/no questions as JSONL (the fake scorer knows their targets)."""
    rows = []
    for i in range(n):
        rows.append(
            json.dumps(
                {
                    "id": f"{prefix}{i:03d}",
                    "input": f"Question {prefix}{i:03d}: is the number {i * 7 + 3} odd?",
                    "target": "yes" if (i * 7 + 3) % 2 else "no",
                    "choices": ["yes", "no"],
                }
            )
        )
    return "\n".join(rows) + "\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester dir with the conftest, 30 examples and one prompt test."""
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)))
    pytester.path.joinpath("sports.jsonl").write_text(example_lines(30), encoding="utf-8")
    pytester.makepyfile(test_sports=TEST_SPORTS)
    return pytester


def artifact_of(pytester: pytest.Pytester, name: str = "sports", directory: str = "__opro__") -> dict:
    return yaml.safe_load(pytester.path.joinpath(directory, f"{name}.yaml").read_text(encoding="utf-8"))


def opro_section(result: pytest.RunResult) -> str:
    """The text of the terminal summary section "opro" (empty when absent)."""
    text = result.stdout.str()
    match = re.search(r"=+ opro =+\n(.*?)(?:\n=+ |\Z)", text, re.S)
    return match.group(1) if match else ""


def optimize(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest("--opro-optimize", "-p", "no:cacheprovider", *args)
    return result


def gate(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


# -- optimise ----------------------------------------------------------------------------------


def test_optimize_writes_a_valid_artifact(suite: pytest.Pytester) -> None:
    result = optimize(suite, "-q")
    result.assert_outcomes(passed=1)
    path = suite.path / "__opro__" / "sports.yaml"
    loaded = artifact_mod.load_artifact(path)  # validates schema and types
    data = artifact_of(suite)
    assert data["task"] == "sports"
    assert data["schema_version"] == artifact_mod.SCHEMA_VERSION
    # the fake optimizer's best proposal carries all three keywords and answers everything
    assert "step by step" in loaded.instruction and "double-check" in loaded.instruction
    assert data["scores"]["test"]["score"] == 1.0
    assert data["baseline"]["instruction"] == ""
    assert data["baseline"]["scores"]["test"]["score"] < 0.6
    assert set(loaded.test_outcomes) and all(v == 1.0 for v in loaded.test_outcomes.values())
    assert len(loaded.test_outcomes) == data["scores"]["test"]["n"]
    assert data["scorer"]["model"] == "fake/scorer"
    assert data["optimizer_settings"]["max_steps"] == 2
    assert data["run"]["steps_run"] == 2
    assert data["run"]["calls"] > 0
    assert not list((suite.path / "__opro__").glob(".*.tmp")), "temp files left behind"
    # progress lines show live even under -q, one per step
    result.stdout.fnmatch_lines(
        [
            "opro sports: optimising with fake/optimizer -> scorer fake/scorer; at most *",
            "opro sports: step 1/2 best train * val * | calls *",
            "opro sports: step 2/2 best train * val * | calls *",
        ]
    )
    section = opro_section(result)
    assert re.search(r"sports\s+\S+% -> 100\.0%", section), section
    assert "written: max_steps=2 reached" in section
    assert "instruction: Answer the question step by step, carefully, double-check." in section


def test_optimize_fails_without_gain_unless_allowed(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # an optimizer that only proposes instructions without any keyword cannot beat the baseline
    monkeypatch.setenv("OPRO_FAKE_OPTIMIZER", "<INS>Be nice.</INS>|<INS>Be kind.</INS>|<INS>Be brief.</INS>")
    result = optimize(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no candidate beat the baseline on validation*--opro-allow-no-gain*"])
    assert artifact_of(suite)["instruction"] == ""  # the baseline is kept
    allowed = optimize(suite, "--opro-allow-no-gain")
    allowed.assert_outcomes(passed=1)
    assert "no gain" in opro_section(allowed)


# -- gate --------------------------------------------------------------------------------------


def test_gate_passes_unchanged_task_from_warm_cache(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    result = gate(suite, "-q")
    result.assert_outcomes(passed=1)
    # the brain the inner conftest installed in the shared fake provider heard nothing
    brain = fake_handler().brain
    assert brain.targets and sum(brain.calls.values()) == 0
    section = opro_section(result)
    row = next(line for line in section.splitlines() if line.startswith("sports"))
    # recorded -> now, delta, p, provider calls, verdict
    assert re.match(r"sports\s+100\.0% -> 100\.0%\s+\+0\.0\s+1\.000\s+0\s+pass$", row), row
    assert "optimising" not in result.stdout.str()


def test_gate_fails_on_regression_with_details(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    optimize(suite).assert_outcomes(passed=1)
    recorded = artifact_of(suite)
    # the provider changed behaviour: two of the three keywords no longer help
    monkeypatch.setenv("OPRO_FAKE_KEYWORDS", "step by step|zebra|quokka")
    result = gate(suite, "--opro-cache=off")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    match = re.search(
        r"opro gate FAILED for task 'sports': accuracy dropped\n"
        r"\s*recorded 100\.0% -> now (\d+\.\d)%  \(delta (-\d+\.\d) points, n=(\d+)\)\n"
        r"\s*paired sign test: (\d+) right->wrong, 0 wrong->right, one-sided p=(\S+) .*\n"
        r"\s*first ids that flipped right->wrong: (.*)\n",
        out,
    )
    assert match, out
    now, delta, n, worse, p_value, ids = match.groups()
    assert int(n) == recorded["scores"]["test"]["n"]
    assert float(now) == pytest.approx(100 - int(worse) * 100 / int(n), abs=0.05)
    assert float(delta) == pytest.approx(float(now) - 100, abs=0.05)
    assert float(p_value) == pytest.approx(0.5 ** int(worse), rel=1e-2)
    flipped = [i.strip() for i in ids.replace("...", "").split(",") if i.strip()]
    assert flipped and set(flipped) <= set(recorded["test_outcomes"])
    assert "pytest --opro-optimize" in out
    row = next(line for line in opro_section(result).splitlines() if line.startswith("sports"))
    assert row.endswith("regression") and int(row.split()[-2]) > 0  # calls were made
    shown_p = row.split()[-3]
    assert float(shown_p) == pytest.approx(float(p_value), rel=0.5) and float(shown_p) > 0, row


def test_gate_passes_on_improvement(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # recorded with a harder scorer: the winner misses the examples that need a 4th keyword
    monkeypatch.setenv("OPRO_FAKE_KEYWORDS", "step by step|carefully|double-check|zebra")
    optimize(suite).assert_outcomes(passed=1)
    recorded = artifact_of(suite)["scores"]["test"]["score"]
    assert recorded < 1.0
    monkeypatch.delenv("OPRO_FAKE_KEYWORDS")
    result = gate(suite, "--opro-cache=off")
    result.assert_outcomes(passed=1)
    row = next(line for line in opro_section(result).splitlines() if line.startswith("sports"))
    assert row.endswith("improved"), row
    assert "-> 100.0%" in row


def test_gate_fails_on_missing_artifact(suite: pytest.Pytester) -> None:
    result = gate(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*opro sports: no artifact at *__opro__*sports.yaml. Create it with:",
            "*pytest --opro-optimize test_sports.py::test_sports",
            "*then commit __opro__/sports.yaml",
        ]
    )
    assert "missing" in opro_section(result)


def test_gate_fails_on_stale_artifact(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    # the task changed: a new template and two more examples
    suite.makepyfile(
        test_sports="""
        def test_sports(opro, make_task):
            opro.check(make_task(template="Q: {{ input }}"))
        """
    )
    suite.path.joinpath("sports.jsonl").write_text(example_lines(30) + example_lines(2, prefix="z"), encoding="utf-8")
    result = gate(suite)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "opro sports: artifact sports.yaml is stale: changed since it was written: " in out
    assert "template (or position / system prompt)" in out
    assert "examples" in out.split("is stale:")[1].split("\n")[0]
    assert "--opro-allow-stale" in out
    assert "stale" in opro_section(result)

    allowed = gate(suite, "--opro-allow-stale", "-W", "always")
    allowed.assert_outcomes(passed=1)
    # the warnings summary names this one; other plugins and libraries may add their own
    allowed.stdout.fnmatch_lines(
        [
            "*: UserWarning: opro sports: artifact sports.yaml is stale: changed since it was written: "
            "*; gating anyway (--opro-allow-stale).",
        ]
    )


def test_gate_reports_corrupt_artifact(suite: pytest.Pytester) -> None:
    directory = suite.path / "__opro__"
    directory.mkdir()
    directory.joinpath("sports.yaml").write_text("task: sports\ninstruction: [unclosed\n", encoding="utf-8")
    result = gate(suite)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["opro sports: *sports.yaml:3: corrupt artifact (*); restore it from git*"])
    assert "During handling of the above exception" not in out and "Traceback" not in out
    # the broken file belongs to a task that ran: it is not obsolete
    assert "opro: obsolete artifact" not in out
    rows = [line for line in opro_section(result).splitlines() if line.startswith("sports")]
    assert len(rows) == 1 and rows[0].endswith("error"), rows


# -- settings ----------------------------------------------------------------------------------


def test_help_lists_opro_options_with_ini_twins(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "prompt optimisation and regression gating (pytest-opro):" in out
    from pytest_opro.plugin.options import FLAGS, SPECS

    for name in [f for f, _ in FLAGS] + [s.name for s in SPECS]:
        assert f"--opro-{name}" in out
        assert re.search(rf"^  opro_{name.replace('-', '_')} \(", out, re.M), name


@pytest.mark.parametrize(
    "args, ini, message",
    [
        (["--opro-steps=-1"], "", "--opro-steps='-1' must be 0 or more"),
        (["--opro-candidates=many"], "", "--opro-candidates='many' is not a valid n"),
        (["--opro-cache=maybe"], "", "--opro-cache='maybe' must be rw, ro or off"),
        (["--opro-alpha=1.5"], "", "--opro-alpha='1.5' must be between 0 and 1"),
        (["--opro-report=out.txt"], "", "--opro-report='out.txt' must end in .md or .json"),
        (["--opro-cache-ttl=0"], "", "--opro-cache-ttl='0' must be a positive number"),
        (["--opro-shard=0/2"], "", "--opro-shard='0/2' must be K/N with 1 <= K <= N"),
        (
            [],
            "opro_cache_url = memcached://:pw-1234@host",
            "ini opro_cache_url='memcached://:***@host' must be a Redis URL",
        ),
        (["--opro-proposers=edit,format"], "", "proposers must include 'opro'"),
        ([], "opro_proposers = opro:1 telepathy:1", "unknown proposer 'telepathy'"),
        (["--opro-screening=fast"], "", "--opro-screening='fast' must be race or off"),
        ([], "opro_tolerance = 500", "ini opro_tolerance='500' must be between 0 and 100"),
        ([], "opro_allow_stale = maybe", "ini opro_allow_stale: invalid truth value 'maybe'; use true or false"),
        ([], "opro_model =   ", None),  # empty ini value means "not set": no error
    ],
)
def test_invalid_option_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str | None
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest(*args)
    if message is None:
        assert result.ret == 0
        return
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_precedence_cli_over_task_over_ini(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nopro_steps = 3\nopro_candidates = 2\nopro_model = fake/ini-scorer\n")
    suite.makepyfile(
        test_sports="""
        def test_sports(opro, make_task):
            opro.check(make_task(settings={"max_steps": 1, "select_alpha": 1}))
        """
    )
    optimize(suite).assert_outcomes(passed=1)
    data = artifact_of(suite)
    # task beats ini for steps; ini fills what the task leaves open; the task's scorer beats ini
    assert data["optimizer_settings"]["max_steps"] == 1
    assert data["optimizer_settings"]["candidates"] == 2
    assert data["scorer"]["model"] == "fake/scorer"
    # the command line beats the task
    optimize(suite, "--opro-steps=2", "--opro-model=fake/cli-scorer").assert_outcomes(passed=1)
    data = artifact_of(suite)
    assert data["optimizer_settings"]["max_steps"] == 2
    assert data["run"]["steps_run"] == 2
    assert data["scorer"]["model"] == "fake/cli-scorer"
    assert data["fingerprint"]["scorer_model"] == "fake/cli-scorer"


def test_proposers_option_reaches_the_run_and_its_artifact(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_sports="""
        def test_sports(opro, make_task):
            opro.check(make_task(settings={"max_steps": 2, "candidates": 2, "select_alpha": 1}))
        """
    )
    optimize(suite, "--opro-proposers=opro:1,classic:1").assert_outcomes(passed=1)
    data = artifact_of(suite)
    assert data["optimizer_settings"]["proposers"] == "opro:1,classic:1"
    assert data["run"]["proposals"] == {"opro": 2, "classic": 2}


def test_unknown_task_setting_fails_the_test_cleanly(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_sports="""
        def test_sports(opro, make_task):
            opro.check(make_task(settings={"max_stepz": 2}))
        """
    )
    result = optimize(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["opro sports: task 'sports': unknown optimizer setting(s) max_stepz; known: *"])
    assert "During handling of the above exception" not in result.stdout.str()
    assert re.search(r"^sports\s+error: task 'sports': unknown optimizer setting", opro_section(result), re.M)


def test_ini_default_model_and_artifact_dir(suite: pytest.Pytester) -> None:
    suite.makeini(
        "[pytest]\nopro_dir = prompts_opro\nopro_model = fake/scorer\nopro_optimizer_model = fake/optimizer\n"
    )
    suite.makepyfile(
        test_sports="""
        def test_sports(opro, make_task):
            opro.check(make_task(scorer=None, optimizer=None))
        """
    )
    optimize(suite).assert_outcomes(passed=1)
    assert not (suite.path / "__opro__").exists()
    data = artifact_of(suite, directory="prompts_opro")
    assert data["scorer"]["model"] == "fake/scorer" and data["optimizer"]["model"] == "fake/optimizer"
    gate(suite).assert_outcomes(passed=1)


# -- fixture API, properties, hooks --------------------------------------------------------------


def test_instruction_returns_committed_instruction(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    committed = artifact_of(suite)["instruction"]
    suite.makepyfile(
        test_use=f"""
        import pytest_opro

        def test_use(opro, make_task):
            task = make_task()
            assert opro.instruction(task) == {committed!r}
            assert pytest_opro.load_instruction(opro.artifact_path(task)) == {committed!r}

        def test_use_missing(opro, make_task):
            opro.instruction(make_task(name="nothing"))
        """
    )
    result = gate(suite, "test_use.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*opro nothing: no artifact at *nothing.yaml*pytest --opro-optimize*"])


def test_junitxml_has_scores_as_properties(suite: pytest.Pytester) -> None:
    optimize(suite, "--junitxml=opt.xml").assert_outcomes(passed=1)
    gate(suite, "--junitxml=gate.xml").assert_outcomes(passed=1)

    def properties(name: str) -> dict[str, str]:
        root = ET.parse(suite.path / name).getroot()
        return {p.get("name"): p.get("value") for p in root.iter("property")}

    opt = properties("opt.xml")
    assert opt["opro_task"] == "sports" and opt["opro_mode"] == "optimize" and opt["opro_status"] == "written"
    assert float(opt["opro_test_score"]) == 1.0
    assert float(opt["opro_baseline_test_score"]) < 0.6
    assert int(opt["opro_calls"]) > 0
    gated = properties("gate.xml")
    assert gated["opro_mode"] == "gate" and gated["opro_status"] == "passed"
    assert float(gated["opro_recorded_score"]) == 1.0 and float(gated["opro_test_score"]) == 1.0
    assert float(gated["opro_p_value"]) == 1.0
    assert gated["opro_calls"] == "0"


HOOKS_CONFTEST = """
import json, pathlib

LOG = pathlib.Path(__file__).parent / "hooks.jsonl"

def _log(**row):
    with LOG.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\\n")

def pytest_opro_step(task, report):
    _log(hook="step", task=task.name, step=report.step)

def pytest_opro_candidate(task, candidate):
    _log(hook="candidate", task=task.name, text=candidate.text)

def pytest_opro_artifact_written(task, path, result):
    _log(hook="artifact_written", task=task.name, path=str(path), instruction=result.instruction)

def pytest_opro_gate(task, decision):
    _log(hook="gate", task=task.name, verdict=decision.verdict, passed=decision.passed)
"""


def test_conftest_hooks_are_called(suite: pytest.Pytester) -> None:
    suite.mkpydir("sub")
    suite.path.joinpath("sub", "conftest.py").write_text(HOOKS_CONFTEST, encoding="utf-8")
    suite.path.joinpath("sub", "test_sports.py").write_text(TEST_SPORTS, encoding="utf-8")
    suite.path.joinpath("test_sports.py").unlink()
    optimize(suite).assert_outcomes(passed=1)
    gate(suite).assert_outcomes(passed=1)
    rows = [json.loads(line) for line in suite.path.joinpath("sub", "hooks.jsonl").read_text().splitlines()]
    kinds = [r["hook"] for r in rows]
    assert [r["step"] for r in rows if r["hook"] == "step"] == [1, 2]
    assert kinds.count("candidate") >= 8
    written = [r for r in rows if r["hook"] == "artifact_written"]
    assert len(written) == 1 and written[0]["path"] == str(suite.path / "sub" / "__opro__" / "sports.yaml")
    assert written[0]["instruction"] == artifact_of(suite, directory="sub/__opro__")["instruction"]
    assert kinds[-1] == "gate" and rows[-1]["verdict"] == "pass" and rows[-1]["passed"] is True
    assert kinds.index("artifact_written") > max(i for i, k in enumerate(kinds) if k == "step")


# -- end of run ----------------------------------------------------------------------------------


def test_obsolete_artifact_reported_on_full_run_only(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    old = suite.path / "__opro__" / "retired.yaml"
    old.write_text((suite.path / "__opro__" / "sports.yaml").read_text().replace("task: sports", "task: retired"))
    suite.makepyfile(test_plain="def test_plain():\n    pass\n")
    full = gate(suite)
    full.assert_outcomes(passed=2)
    full.stdout.fnmatch_lines(["opro: obsolete artifact *retired.yaml: no task of that name ran*"])
    assert "sports.yaml: no task" not in full.stdout.str()
    assert full.ret == 0  # a note, not a failure

    for narrowed in (["-k", "sports"], ["test_sports.py"], ["test_sports.py::test_sports"]):
        partial = gate(suite, *narrowed)
        partial.assert_outcomes(passed=1)
        assert "opro: obsolete artifact" not in partial.stdout.str(), narrowed


def test_optimize_without_prompt_task_selected(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = optimize(suite, "-k", "plain")
    result.assert_outcomes(passed=1, deselected=1)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["opro: --opro-optimize ran but no test called opro.check(task)*"])
    assert not (suite.path / "__opro__").exists()


# -- subprocess runs -------------------------------------------------------------------------------


def test_xdist_optimize_runs_each_task_in_one_worker(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    suite.path.joinpath("trivia.jsonl").write_text(example_lines(30, prefix="t"), encoding="utf-8")
    suite.makepyfile(
        test_trivia="""
        def test_trivia(opro, make_task):
            opro.check(make_task(name="trivia", data="trivia.jsonl"))
        """
    )
    suite.makepyfile(test_plain="def test_plain():\n    pass\n")
    suite.mkdir("__opro__").joinpath("retired.yaml").write_text("task: retired\n", encoding="utf-8")
    result = suite.runpytest_subprocess("-n", "2", "--opro-optimize", "-k", "not plain", *OTHER_PLUGINS_OFF)
    result.assert_outcomes(passed=2)  # (under xdist the summary line does not count deselected tests)
    # the workers deselected a test: the controller must not call the unrelated artifact obsolete
    assert "opro: obsolete artifact" not in result.stdout.str()
    section = opro_section(result)
    assert re.search(r"^sports\s", section, re.M) and re.search(r"^trivia\s", section, re.M), section
    assert section.count("written: max_steps=2 reached") == 2
    for name in ("sports", "trivia"):
        assert artifact_mod.load_artifact(suite.path / "__opro__" / f"{name}.yaml").data["task"] == name
    # the workers filled the one shared cache: an ordinary run now needs no provider call
    again = gate(suite)
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(["opro: obsolete artifact *retired.yaml*"])
    rows = [line for line in opro_section(again).splitlines() if line.startswith(("sports", "trivia"))]
    assert len(rows) == 2 and all(re.search(r"\s0\s+pass$", row) for row in rows), rows


def test_no_litellm_import_without_prompt_task(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_plain="def test_plain():\n    pass\n")
    suite.path.joinpath("conftest.py").write_text(
        suite.path.joinpath("conftest.py").read_text()
        + "\n\ndef pytest_sessionfinish(session):\n"
        + "    (HERE / 'litellm_imported.txt').write_text(str('litellm' in sys.modules))\n",
        encoding="utf-8",
    )
    result = suite.runpytest_subprocess("-k", "plain", *OTHER_PLUGINS_OFF)
    result.assert_outcomes(passed=1, deselected=1)
    assert suite.path.joinpath("litellm_imported.txt").read_text() == "False"
    assert not (suite.path / ".opro_cache").exists()


def test_screening_option_reaches_the_run_and_racing_is_reported(suite: pytest.Pytester) -> None:
    suite.path.joinpath("sports.jsonl").write_text(example_lines(120), encoding="utf-8")
    off = optimize(suite, "--opro-screening=off", "--opro-report=off.json")
    raced = optimize(suite, "--opro-report=race.json")
    off_task = json.loads(suite.path.joinpath("off.json").read_text(encoding="utf-8"))["tasks"][0]
    race_task = json.loads(suite.path.joinpath("race.json").read_text(encoding="utf-8"))["tasks"][0]
    assert off_task["run"]["screening"] == "off" and race_task["run"]["screening"] == "race"
    assert off_task["run"]["screened_out"] == off_task["run"]["calls_saved"] == 0
    assert "screened out" not in off.stdout.str() and "racing:" not in opro_section(off)
    partial = [c for c in race_task["candidates"] if c["partial_train"] is not None]
    assert race_task["run"]["screened_out"] == len(partial) > 0
    full_n = {c["train_n"] for c in race_task["candidates"] if c["train"] is not None}
    assert len(full_n) == 1 and all(c["train"] is None and c["train_n"] < min(full_n) for c in partial)
    assert race_task["run"]["calls_saved"] > 0
    raced.stdout.fnmatch_lines(
        ["opro sports: *expected * scorer calls*", "opro sports: step * | screened out */*, saved * calls"]
    )
    assert f"racing: {race_task['run']['screened_out']} candidates screened out" in opro_section(raced)
