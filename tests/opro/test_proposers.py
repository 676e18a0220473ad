"""Proposers (opro, edit, format, classic), their seeded mix, several starting points, and rejection
of leaks and non-instructions, on the deterministic fake provider."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from pytest_opro import OptimizerSettings, PromptTask, optimize
from pytest_opro.errors import ConfigError
from pytest_opro.opro.proposers import allocate, parse_mix, repeats_prompt
from pytest_opro.plugin.options import _proposers
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.proposers import CLASSIC, format_phrasings, format_proposals, task_labels
from pytest_opro.prompts.screening import LEAKAGE, OFF_TASK, Screen
from tests.support.fake_provider import FakeBrain
from tests.support.opro_replay import load_golden, recorded_run

REPEATS = "repeats the meta-prompt"


def sports_like(n: int = 36, **kw) -> PromptTask:
    records = [
        {
            "id": f"s{i:03d}",
            "input": f"Player number {i} of the {'red' if i % 2 else 'blue'} team scored a "
            f"goal in minute {i + 3} of match {i * 7}",
            "target": "plausible" if i % 3 else "implausible",
            "choices": ["plausible", "implausible"],
        }
        for i in range(n)
    ]
    kw.setdefault("counts", (12, 12, 12))
    return PromptTask(
        name="sportsish",
        examples=examples_from_records(records),
        metric="choice",
        template='Sentence: "{{ input }}"\nIs this sentence plausible or implausible?',
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        **kw,
    )


def counting_like(**kw) -> PromptTask:
    records = [
        {
            "id": f"c{i:03d}",
            "input": f"I have {i} apples and {i + 2} pears in basket {i}. How many fruits?",
            "target": str(2 * i + 2),
        }
        for i in range(36)
    ]
    return PromptTask(
        name="countish",
        examples=examples_from_records(records),
        metric="numeric",
        template="Question: {{ input }}\n{{ instruction }}",
        counts=(12, 12, 12),
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        **kw,
    )


def optimizer_prompts(brain: FakeBrain) -> list[str]:
    return [m[0]["content"] for model, m in brain.log if model == "fake/optimizer"]


# -- opro alone is the paper's loop, call for call ----------------------------------------------
@pytest.mark.parametrize("proposers", [None, ["opro"], "opro", {"opro": 3}])
def test_opro_alone_sends_the_recorded_meta_prompts_and_keeps_the_recorded_candidates(
    fake_llm: FakeBrain, proposers
) -> None:
    golden = load_golden()
    run = recorded_run(fake_llm, proposers=proposers)
    assert [c["meta_prompt"] for c in run["optimizer_calls"]] == [c["meta_prompt"] for c in golden["optimizer_calls"]]
    assert [c["sample_index"] for c in run["optimizer_calls"]] == [c["sample_index"] for c in golden["optimizer_calls"]]
    assert run["trajectory"] == golden["trajectory"]
    assert run["instruction"] == golden["instruction"]


# -- the mix -------------------------------------------------------------------------------------
def test_mix_is_parsed_from_names_weights_or_the_option_string() -> None:
    assert parse_mix(None) == {"opro": 1.0}
    assert parse_mix(["opro", "edit"]) == {"opro": 0.5, "edit": 0.5}
    assert parse_mix({"opro": 2, "format": 1, "classic": 1}) == {"opro": 0.5, "format": 0.25, "classic": 0.25}
    assert parse_mix("opro:3, edit:1") == {"opro": 0.75, "edit": 0.25}
    assert parse_mix([("opro", 1), ("edit", 3)]) == {"opro": 0.25, "edit": 0.75}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("opro,telepathy", "unknown proposer 'telepathy'"),
        (["edit", "format"], "must include 'opro'"),
        ({"opro": 0}, "share must be > 0"),
        ("opro:lots", "is not a number"),
    ],
)
def test_a_bad_mix_is_a_config_error(spec, message) -> None:
    with pytest.raises(ConfigError, match=message):
        OptimizerSettings(proposers=spec)
    if isinstance(spec, str):
        with pytest.raises(ValueError, match=message):
            _proposers(spec)


def test_allocation_follows_the_shares_and_is_seeded() -> None:
    mix = parse_mix({"opro": 2, "edit": 1, "format": 1})
    slots = allocate(mix, 8, random.Random(1))
    assert Counter(slots) == {"opro": 4, "edit": 2, "format": 2}
    assert slots == ["opro"] * 4 + ["edit"] * 2 + ["format"] * 2  # grouped in mix order
    assert allocate(parse_mix(["opro"]), 5, random.Random(0)) == ["opro"] * 5
    # A share too small for a slot per step still gets its share over steps; each step replays.
    small = parse_mix({"opro": 1, "edit": 1, "format": 1, "classic": 1})
    steps = [allocate(small, 2, random.Random(f"0:{step}")) for step in range(40)]
    assert steps == [allocate(small, 2, random.Random(f"0:{step}")) for step in range(40)]
    totals = Counter(name for slots in steps for name in slots)
    assert set(totals) == {"opro", "edit", "format", "classic"} and min(totals.values()) >= 12


def mixed_optimizer(meta: str, n: int) -> str:
    if "Combine them" in meta:
        return "<INS>Think step by step and carefully.</INS>"
    if "Rewrite it" in meta or "Write a short instruction" in meta:
        return f"<INS>Answer carefully (edit {n}).</INS>"
    return f"<INS>Answer step by step (opro {n}).</INS>"


def test_every_proposer_contributes_and_the_run_replays_from_cache(fake_llm: FakeBrain, tmp_path) -> None:
    task = sports_like(initial_instruction="Answer the question.")
    fake_llm.learn(task.examples)
    fake_llm.optimizer = mixed_optimizer
    settings = OptimizerSettings(
        max_steps=3, candidates=4, patience=0, proposers={"opro": 1, "edit": 1, "format": 1, "classic": 1}
    )
    first = optimize(task, settings=settings, cache=tmp_path)
    by = Counter(c.proposer for c in first.trajectory)
    assert by == {"initial": 1, "opro": 3, "edit": 3, "format": 3, "classic": 3}
    texts = {name: [c.text for c in first.trajectory if c.proposer == name] for name in by}
    assert texts["format"][0] == "Answer with one of: plausible, implausible."
    assert texts["classic"] == list(CLASSIC[:3])
    assert all("(edit " in t or "and carefully" in t for t in texts["edit"])
    edits = [m for m in optimizer_prompts(fake_llm) if "Rewrite it" in m or "Combine them" in m]
    assert len(edits) == 3 and all("<INS>" in m for m in edits)
    # Edit prompts quote an instruction of the trajectory (the edit's one instruction in).
    assert any("<INS>Answer the question.</INS>" in m for m in edits)
    assert first.to_dict()["trajectory"][1]["proposer"] in {"opro", "edit", "format", "classic"}
    calls = fake_llm.calls["fake/optimizer"]
    assert calls == 6  # format and classic call no model

    again = optimize(task, settings=settings, cache=tmp_path)
    assert fake_llm.calls["fake/optimizer"] == calls  # replayed from the response cache
    assert [(c.proposer, c.text, c.call) for c in again.trajectory] == [
        (c.proposer, c.text, c.call) for c in first.trajectory
    ]


def test_a_problem_without_edits_or_model_free_proposals_gets_opro_in_their_slots(fake_llm: FakeBrain) -> None:
    from pytest_opro.opro.proposers import ProposerPlan

    class Bare:
        meta_prompt = "Improve: {% for t in trajectory %}{{ t.text }} {% endfor %}"

    messages = [{"role": "user", "content": "meta"}]
    plan = ProposerPlan(Bare(), {"trajectory": []}, messages, [], set(), random.Random(0))  # type: ignore[arg-type]
    for name in ("edit", "format", "classic", "opro"):
        proposal = plan.proposal(name)
        assert proposal.proposer == "opro" and proposal.messages is messages and proposal.text is None


def test_format_proposals_follow_choices_metric_and_position() -> None:
    sports = sports_like()
    assert task_labels(sports) == ["plausible", "implausible"]
    assert format_phrasings(sports)[0] == "Answer with one of: plausible, implausible."
    prefix = sports_like(position="A_begin")
    assert all(not p.startswith("Answer with") for p in format_phrasings(prefix))
    assert format_phrasings(prefix)[0] == "The answer (plausible or implausible) is:"
    counting = counting_like()
    assert task_labels(counting) == []
    assert "End with the final number." in format_phrasings(counting)
    # The best instructions come back with a format phrase added (best first).
    proposals = format_proposals(sports, ["Be brief.", "Think about the sport."])
    assert proposals[:2] == [
        "Answer with one of: plausible, implausible.",
        "Think about the sport. Answer with one of: plausible, implausible.",
    ]
    assert "Be brief. Answer with only one word: plausible or implausible." in proposals


def test_model_free_proposals_are_not_proposed_twice(fake_llm: FakeBrain) -> None:
    task = sports_like()
    fake_llm.learn(task.examples)
    settings = OptimizerSettings(max_steps=3, candidates=4, patience=0, proposers={"opro": 1, "classic": 3})
    result = optimize(task, settings=settings, cache=None)
    classic = [c for c in result.trajectory if c.proposer == "classic"]
    assert [c.text for c in classic] == list(CLASSIC)  # 7 in the library, then opro takes the slots
    assert all(c.rejection is None for c in classic)
    assert Counter(c.proposer for c in result.trajectory if c.step == 3) == {"opro": 3, "classic": 1}


# -- several starting points ----------------------------------------------------------------------
def test_all_starting_points_are_scored_at_step_0_and_the_first_is_the_baseline(fake_llm: FakeBrain) -> None:
    task = sports_like(
        initial_instruction="Answer.",
        initial_instructions=["Answer step by step, carefully, double-check.", "Answer.", "Answer carefully."],
    )
    assert task.starting_instructions() == [
        "Answer.",
        "Answer step by step, carefully, double-check.",
        "Answer carefully.",
    ]
    fake_llm.learn(task.examples)
    fake_llm.optimizer = ["<INS>Answer plainly.</INS>"]
    result = optimize(task, settings=OptimizerSettings(max_steps=1, candidates=1, patience=0), cache=None)
    start = [c for c in result.trajectory if c.step == 0]
    assert [c.text for c in start] == task.starting_instructions()
    assert all(c.train is not None and c.validation is not None and c.proposer == "initial" for c in start)
    # The strongest starting point is shown to the optimizer and can win ...
    assert "Answer step by step, carefully, double-check." in optimizer_prompts(fake_llm)[0]
    assert result.instruction == "Answer step by step, carefully, double-check."
    # ... but the baseline the gate and the report compare against is the first.
    assert result.baseline_instruction == "Answer."
    assert result.baseline_scores["validation"].value == start[0].validation < start[1].validation


def test_initial_instructions_must_be_a_list_of_strings() -> None:
    with pytest.raises(ConfigError, match="initial_instructions must be a list"):
        sports_like(initial_instructions="Answer.")


# -- rejections ------------------------------------------------------------------------------------
def test_leakage_quote_of_a_training_input_or_a_training_target_as_answer_key() -> None:
    sports = sports_like()
    screen = Screen(sports)
    train = sports.splits.train[0]
    assert screen(f'For example "{train.input}" is {train.target}.') == LEAKAGE
    words = train.input.split()
    assert screen("Remember: " + " ".join(words[1:9]) + ".") == LEAKAGE  # eight words of one input
    test_example = sports.splits.test[0]
    assert screen(f'Consider "{test_example.input}".') is None  # the optimizer never saw test examples
    assert screen("Answer with one of: plausible, implausible.") is None  # labels are format
    assert screen("Player number and team matter; answer plausible or implausible.") is None  # shared wording

    counting = counting_like()
    screen = Screen(counting)
    target = counting.splits.train[0].target
    test_only = sorted(
        {ex.target for ex in counting.splits.test}
        - {ex.target for ex in counting.splits.train + counting.splits.validation}
    )
    assert screen(f"Count the fruits. The answer is {target}.") == LEAKAGE
    assert screen(f"Count the fruits -> {target}") == LEAKAGE
    assert screen(f"Count the {target} kinds of fruit.") is None  # a number, not an answer key
    assert test_only and screen(f"The answer is {test_only[0]}.") is None
    assert screen("Count the fruits and answer with a single number.") is None


def test_story_like_replies_that_share_nothing_with_the_task_are_off_task() -> None:
    screen = Screen(sports_like())
    story = (
        "Once upon a time a lighthouse keeper found a lantern. The lantern glowed over the harbour. "
        "Ships came home at dusk."
    )
    assert screen(story) == OFF_TASK
    listing = "islands of clarests\noceanton\nplaiceboarding the tops\nbanana harbour"
    assert screen(listing) == OFF_TASK
    assert screen("Be brief.") is None  # short: never judged
    assert (
        screen("Once upon a time a keeper found a lantern; read the sentence and decide.") is None
    )  # instruction words
    assert screen("Consider whether each team and match described could really happen in a season.") is None


def test_repeating_the_meta_prompt_is_detected() -> None:
    skeleton = (
        "Your task is to generate the instruction <INS>. Below are some previous instructions with their "
        "scores. Generate an instruction that is different from all the instructions <INS> above."
    )
    assert repeats_prompt("Generate an instruction that is different from all the instructions above.", skeleton)
    assert repeats_prompt("Your task is to generate the instruction. Below are some previous instructions", skeleton)
    assert not repeats_prompt("Generate an answer. Think step by step.", skeleton)
    assert not repeats_prompt("Below are some previous instructions. Then answer plainly.", skeleton)
    assert not repeats_prompt("Generate", skeleton)  # too short to judge


def test_each_rejection_reason_is_counted_in_the_trajectory_and_the_report(fake_llm: FakeBrain, tmp_path) -> None:
    from pytest_opro.prompts.artifact import artifact_from_result

    task = sports_like()
    fake_llm.learn(task.examples)
    train = task.splits.train[0]
    replies = [
        f'<INS>Say "{train.input}" is {train.target}.</INS>',
        "<INS>The lighthouse keeper sailed home across the quiet bay. Gulls followed the boat. Night fell.</INS>",
        "<INS>Generate an instruction that is different from all the instructions <INS> above.</INS>",
        "<INS>Answer with care.</INS>",
    ]
    fake_llm.optimizer = replies
    result = optimize(task, settings=OptimizerSettings(max_steps=1, candidates=4, patience=0), cache=None)
    assert result.rejections == {LEAKAGE: 1, OFF_TASK: 1, REPEATS: 1}
    step1 = [c for c in result.trajectory if c.step == 1]
    assert [c.rejection for c in step1] == [LEAKAGE, OFF_TASK, REPEATS, None]
    assert all(c.train is None for c in step1[:3])  # rejected candidates cost no scoring
    artifact = artifact_from_result(result.to_dict(), "0", [c.to_dict() for c in result.top_candidates(3)])
    assert artifact["run"]["rejections"] == result.rejections
    assert artifact["run"]["proposals"] == {"opro": 4}
    json.dumps(artifact)


def test_compact_meta_prompt_shows_one_exemplar_and_the_last_five_instructions(fake_llm: FakeBrain) -> None:
    task = sports_like(meta_prompt="compact", description="Judge sport sentences.")
    fake_llm.learn(task.examples)
    fake_llm.optimizer = lambda meta, n: f"<INS>Answer carefully, variant {len(meta)}-{n}.</INS>"
    optimize(task, settings=OptimizerSettings(max_steps=3, candidates=4, patience=0), cache=None)
    prompts = optimizer_prompts(fake_llm)
    last = prompts[-1]
    assert last.startswith("Judge sport sentences.")
    assert last.count("Problem:") == 1 and last.count("Correct answer:") == 1
    assert last.count(" score: ") == 5 and last.rstrip().endswith("Start with <INS> and end with </INS>.")
    assert prompts[0].count(" score: ") == 1 and "<INS></INS> score:" in prompts[0]  # the empty baseline


def test_starting_points_count_in_the_estimate_and_the_checkpoint_key() -> None:
    from pytest_opro.prompts.optimization import estimate, run_key

    one = sports_like(initial_instruction="Answer.")
    three = sports_like(initial_instruction="Answer.", initial_instructions=["Be brief.", "Think."])
    settings = OptimizerSettings(max_steps=0)
    scorer, optimizer = one.scorer_config(), one.optimizer_config()
    n_search = len(one.splits.train) + len(one.splits.validation)
    assert (
        estimate(three, settings, scorer, optimizer).scorer_calls
        - estimate(one, settings, scorer, optimizer).scorer_calls
        == 2 * n_search
    )
    assert run_key(one, scorer, optimizer, settings) != run_key(three, scorer, optimizer, settings)


@pytest.mark.parametrize("example", ["sports", "counting", "navigate"])
def test_the_rules_keep_real_instructions_for_the_example_tasks(example: str) -> None:
    """Conservative: published and model-free instructions, and long plain ones, pass on the examples."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "bench"))
    try:
        from proposers_smollm2 import example_task
    finally:
        sys.path.pop(0)
    task = example_task(example)
    screen = Screen(task)
    kept = (
        list(CLASSIC)
        + format_proposals(task, ["Read the question carefully."])
        + [
            "Consider every detail of the situation described, then give the single best answer and nothing else.",
            "Work through it one piece at a time, keep a running tally, and state the result at the end.",
            "Read carefully. Think it through. Then reply.",
        ]
    )
    assert [t for t in kept if screen(t) is not None] == []
