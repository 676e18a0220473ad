"""Loading example files and splitting them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_opro.errors import ConfigError, ExampleError
from pytest_opro.prompts.examples import Example, examples_fingerprint, examples_from_records, load_examples
from pytest_opro.prompts.splits import DEFAULT_FRACTIONS, split_examples

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIGBENCH = {
    "sports_understanding": EXAMPLES / "sports" / "sports.jsonl",
    "navigate": EXAMPLES / "navigate" / "navigate.jsonl",
    "object_counting": EXAMPLES / "counting" / "object_counting.jsonl",
}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def make(n: int, prefix: str = "ex") -> list[Example]:
    return [Example(id=f"{prefix}-{i}", input=f"q{i}", target=str(i)) for i in range(n)]


# ------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("task", sorted(BIGBENCH))
def test_loads_bigbench_rows(task):
    """The BIG-bench rows the example suites ship (80 of each task)."""
    examples = load_examples(BIGBENCH[task])
    assert len(examples) == 80
    assert len({e.id for e in examples}) == 80
    first = examples[0]
    assert first.id == f"{task}-000"
    assert isinstance(first.input, str) and first.input
    assert first.source.endswith(f"{BIGBENCH[task].name}:1")
    if task == "sports_understanding":
        assert first.choices == ("plausible", "implausible")
        assert {e.target for e in examples} == {"plausible", "implausible"}
    if task == "object_counting":
        assert first.target == "12" and first.aliases == ("twelve", "12")


def test_jsonl_fields_targets_and_metadata(tmp_path):
    path = write(
        tmp_path,
        "set.jsonl",
        jsonl(
            {"id": 1, "input": "two plus two", "target": 4, "metadata": {"topic": "math"}},
            {"id": "b", "input": "is water wet", "target": True, "difficulty": "easy"},
            {"id": "c", "input": "x", "target": 12.0, "choices": ["12", "13"]},
            {"id": "d", "input": "y", "target": ["three", "3"]},
        )
        + "\n   \n",  # blank lines are skipped
    )
    a, b, c, d = load_examples(path)
    assert (a.id, a.target, a.metadata) == ("1", "4", {"topic": "math"})
    assert a.source == f"{path}:1"
    assert b.target == "True"
    assert b.metadata == {"difficulty": "easy"}  # extra keys next to an input are kept as metadata
    assert c.target == "12.0" and c.choices == ("12", "13")
    assert d.target == "three" and d.aliases == ("3",)


def test_named_input_fields_when_no_input_key(tmp_path):
    path = write(
        tmp_path,
        "named.jsonl",
        jsonl(
            {
                "id": "a",
                "question": "Q?",
                "context": "C.",
                "target": "yes",
                "choices": ["yes", "no"],
                "metadata": {"k": 1},
            }
        ),
    )
    (ex,) = load_examples(path)
    assert ex.input == {"question": "Q?", "context": "C."}
    variables = ex.variables()
    assert variables["question"] == "Q?" and variables["context"] == "C."
    assert variables["choices"] == ["yes", "no"]
    assert variables["metadata"] == {"k": 1}
    assert "target" not in variables  # the answer never reaches the prompt
    assert ex.to_dict() == {
        "id": "a",
        "input": {"question": "Q?", "context": "C."},
        "target": "yes",
        "choices": ["yes", "no"],
        "aliases": [],
    }


def test_custom_field_names(tmp_path):
    path = write(tmp_path, "renamed.jsonl", jsonl({"key": "k1", "question": "Q", "answer": "A"}))
    (ex,) = load_examples(path, input_field="question", target_field="answer", id_field="key")
    assert (ex.id, ex.input, ex.target) == ("k1", "Q", "A")


def test_generated_ids_hash_the_input_only(tmp_path):
    one = load_examples(
        write(tmp_path, "a.jsonl", jsonl({"input": "q1", "target": "1"}, {"input": "q2", "target": "2"}))
    )
    two = load_examples(
        write(tmp_path, "b.jsonl", jsonl({"input": "q2", "target": "two"}, {"input": "q1", "target": "1"}))
    )
    assert one[0].id != one[1].id
    assert {e.input: e.id for e in one} == {e.input: e.id for e in two}  # order and target edits keep ids


def test_yaml_list_and_examples_key(tmp_path):
    plain = write(tmp_path, "a.yaml", "- id: a\n  input: hi\n  target: 3\n- id: b\n  input: yo\n  target: yes\n")
    a, b = load_examples(plain)
    assert (a.target, b.target) == ("3", "True")  # YAML 1.1 reads yes as a boolean
    assert a.source == f"{plain}:1" and b.source == f"{plain}:4"
    wrapped = write(tmp_path, "b.yml", "examples:\n  - input: hi\n    target: x\n    aliases: [y]\n")
    (c,) = load_examples(wrapped)
    assert c.aliases == ("y",) and c.source == f"{wrapped}:2"


def test_yaml_missing_target_names_the_item_line(tmp_path):
    path = write(tmp_path, "m.yaml", "- input: a\n  target: b\n\n- input: c\n  answer: d\n")
    with pytest.raises(ExampleError, match=rf"^{path}:4: example has no 'target'; add a 'target' field"):
        load_examples(path)


def test_yaml_is_loaded_safely_and_syntax_errors_name_the_line(tmp_path):
    evil = write(tmp_path, "evil.yaml", "- input: !!python/object/apply:os.system ['true']\n  target: x\n")
    with pytest.raises(ExampleError, match="YAML"):
        load_examples(evil)
    broken = write(tmp_path, "broken.yaml", "- input: a\n  target: b\n- input: [unclosed\n")
    with pytest.raises(ExampleError, match=rf"^{broken}:\d+: YAML syntax error"):
        load_examples(broken)
    scalar = write(tmp_path, "scalar.yaml", "just a string\n")
    with pytest.raises(ExampleError, match="expected a list of examples"):
        load_examples(scalar)


def test_csv_pipe_lists_metadata_and_line_numbers(tmp_path):
    path = write(
        tmp_path,
        "set.csv",
        "id,input,target,choices,aliases,metadata\n"
        'a,"Is it, really?",plausible,plausible|implausible,,"{""src"": ""x""}"\n'
        'b,"two\nlines",3,,three|3,\n',
    )
    a, b = load_examples(path)
    assert a.input == "Is it, really?" and a.choices == ("plausible", "implausible")
    assert a.metadata == {"src": "x"} and a.source == f"{path}:2"
    assert b.input == "two\nlines" and b.aliases == ("three", "3") and b.source == f"{path}:3"


def test_csv_named_fields_and_missing_target(tmp_path):
    ok = write(tmp_path, "named.csv", "question,context,target\nQ,C,A\n")
    (ex,) = load_examples(ok)
    assert ex.input == {"question": "Q", "context": "C"}
    bad = write(tmp_path, "bad.csv", "input,target\nq1,a1\nq2,\n")
    with pytest.raises(ExampleError, match=rf"^{bad}:3: example has no 'target'; fill the 'target' column"):
        load_examples(bad)
    extra = write(tmp_path, "extra.csv", "input,target\nq1,a1,oops\n")
    with pytest.raises(ExampleError, match=rf"^{extra}:2: row has 3 cells but the header has 2"):
        load_examples(extra)


def test_json_array(tmp_path):
    path = write(tmp_path, "set.json", json.dumps([{"input": "a", "target": "b"}, {"input": "c", "target": "d"}]))
    assert [e.target for e in load_examples(path)] == ["b", "d"]


# -------------------------------------------------------------------------------------------- errors


def test_malformed_jsonl_line(tmp_path):
    path = write(tmp_path, "bad.jsonl", jsonl({"input": "a", "target": "b"}) + '{"input": "c", "target": }\n')
    with pytest.raises(
        ExampleError, match=rf"^{path}:2: malformed JSON \(.*\); each line must hold one complete JSON object$"
    ):
        load_examples(path)


def test_jsonl_missing_target_and_non_object(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"input": "a", "target": "b"}, {"input": "c"}))
    with pytest.raises(ExampleError, match=rf"^{path}:2: example has no 'target'"):
        load_examples(path)
    path = write(tmp_path, "n.jsonl", '["input", "target"]\n')
    with pytest.raises(ExampleError, match=rf"^{path}:1: expected a mapping"):
        load_examples(path)
    path = write(tmp_path, "o.jsonl", jsonl({"id": "a", "target": "b"}))
    with pytest.raises(ExampleError, match=rf"^{path}:1: example has no 'input' and no named input fields"):
        load_examples(path)


def test_duplicate_ids_name_both_lines(tmp_path):
    path = write(
        tmp_path,
        "dup.jsonl",
        jsonl(
            {"id": "x", "input": "a", "target": "1"},
            {"id": "y", "input": "b", "target": "2"},
            {"id": "x", "input": "c", "target": "3"},
        ),
    )
    with pytest.raises(ExampleError, match=rf"^{path}:3: duplicate id 'x' \(first at {path}:1\)"):
        load_examples(path)
    same = write(tmp_path, "same.jsonl", jsonl({"input": "a", "target": "1"}, {"input": "a", "target": "2"}))
    with pytest.raises(ExampleError, match=rf"^{same}:2: same input as {same}:1"):
        load_examples(same)


@pytest.mark.parametrize(
    "name, content", [("e.jsonl", "\n\n"), ("e.yaml", ""), ("e.csv", "input,target\n"), ("e.yml", "examples: []\n")]
)
def test_empty_set(tmp_path, name, content):
    path = write(tmp_path, name, content)
    with pytest.raises(ExampleError, match=rf"^{path}: the file holds no examples"):
        load_examples(path)


def test_non_utf8_names_line_and_offset(tmp_path):
    data = jsonl({"input": "a", "target": "b"}).encode() + b'{"input": "caf\xe9", "target": "x"}\n'
    path = write(tmp_path, "latin.jsonl", data)
    offset = data.index(b"\xe9")
    with pytest.raises(
        ExampleError, match=rf"^{path}:2: byte 0xe9 at byte offset {offset} \(column 15\) is not UTF-8; re-save"
    ):
        load_examples(path)


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path, "bom.csv", "\ufeffinput,target\nq,a\n")
    assert load_examples(path)[0].input == "q"


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(ExampleError, match=r"unknown example file extension '\.txt'; use \.jsonl"):
        load_examples(write(tmp_path, "set.txt", "x"))
    with pytest.raises(ExampleError, match=r"nope\.jsonl: example file not found"):
        load_examples(tmp_path / "nope.jsonl")


def test_examples_from_records():
    exs = examples_from_records([{"input": "a", "target": 1}, Example(id="e", input="b", target="2")])
    assert [e.target for e in exs] == ["1", "2"]
    assert exs[0].source == "<memory>:item 1"
    with pytest.raises(ExampleError, match=r"^<memory>:item 2: duplicate id 'e'"):
        examples_from_records([Example(id="e", input="a", target="1"), {"id": "e", "input": "b", "target": "2"}])
    with pytest.raises(ExampleError, match="no examples"):
        examples_from_records([])


def test_examples_are_hashable_and_comparable():
    a = Example(id="a", input={"q": "x"}, target="1", metadata={"m": 1})
    b = Example(id="a", input={"q": "x"}, target="1", metadata={"m": 1})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


# -------------------------------------------------------------------------------------------- splits


def test_default_fractions_and_proportions():
    assert DEFAULT_FRACTIONS == (0.15, 0.35, 0.5) and sum(DEFAULT_FRACTIONS) == pytest.approx(1)
    examples = make(2000)
    splits = split_examples(examples)
    sizes = (len(splits.train), len(splits.validation), len(splits.test))
    assert sum(sizes) == 2000
    for size, frac in zip(sizes, DEFAULT_FRACTIONS):
        assert abs(size / 2000 - frac) < 0.05
    # each split keeps the original order and the splits are disjoint
    order = {e.id: i for i, e in enumerate(examples)}
    for name in ("train", "validation", "test"):
        idx = [order[e.id] for e in splits.get(name)]
        assert idx == sorted(idx)
    assert Counter(e.id for n in ("train", "validation", "test") for e in splits.get(n)).most_common(1)[0][1] == 1


def test_split_depends_on_seed_not_on_order():
    examples = make(200)

    def assignment(exs, seed):
        splits = split_examples(exs, seed=seed)
        return {e.id: n for n in ("train", "validation", "test") for e in splits.get(n)}

    assert assignment(examples, 3) == assignment(list(reversed(examples)), 3)
    assert assignment(examples, 0) != assignment(examples, 1)


ids = st.text(min_size=1, max_size=12)


def _assignment(examples, seed):
    try:
        splits = split_examples(examples, seed=seed, fractions=(0.4, 0.2, 0.4))
    except ExampleError:  # a tiny random set can leave a split empty
        return None
    return {e.id: n for n in ("train", "validation", "test") for e in splits.get(n)}


@settings(max_examples=60, deadline=None, database=None)
@given(
    base=st.lists(ids, min_size=20, max_size=50, unique=True),
    extra=st.lists(ids, min_size=1, max_size=20, unique=True),
    seed=st.integers(0, 10**6),
)
def test_adding_examples_never_moves_others(base, extra, seed):
    before_examples = [Example(id=i, input=i, target="t") for i in base]
    after_examples = before_examples + [Example(id=i, input=i, target="t") for i in extra if i not in base]
    before = _assignment(before_examples, seed)
    assume(before is not None)
    after = _assignment(after_examples, seed)
    assert after is not None  # adding examples never empties a split
    assert {i: after[i] for i in before} == before


@settings(max_examples=60, deadline=None, database=None)
@given(names=st.lists(ids, min_size=30, max_size=60, unique=True), seed=st.integers(0, 10**6))
def test_split_follows_cumulative_fractions_of_the_hash_position(names, seed):
    from pytest_opro.prompts.splits import split_position

    examples = [Example(id=i, input=i, target="t") for i in names]
    try:
        splits = split_examples(examples, seed=seed, fractions=(0.25, 0.25, 0.5))
    except ExampleError:
        assume(False)
    for e in splits.train:
        assert 0.0 <= split_position(e.id, seed) < 0.25
    for e in splits.validation:
        assert 0.25 <= split_position(e.id, seed) < 0.5
    for e in splits.test:
        assert 0.5 <= split_position(e.id, seed) < 1.0


def test_counts_mode_can_move_others_when_examples_are_added():
    base = make(20)
    before = split_examples(base, counts=(5, 5, 10))
    moved = False
    for k in range(50):
        after = split_examples(base + [Example(id=f"new-{k}", input="n", target="t")], counts=(5, 5, 10))
        moved = moved or {e.id for e in after.train} - {f"new-{k}"} != {e.id for e in before.train}
    assert moved  # documented: only fractions mode is stable under additions


def test_counts_mode_exact_sizes_and_errors():
    splits = split_examples(make(50), counts=(10, 5, 20))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (10, 5, 20)
    assert split_examples(make(50), counts=(10, 5, 20), fractions=(0.2, 0.2, 0.6)) == splits  # counts win
    with pytest.raises(ExampleError, match=r"need 60 examples but there are 50"):
        split_examples(make(50), counts=(10, 10, 40))
    with pytest.raises(ConfigError, match="three non-negative integers"):
        split_examples(make(50), counts=(10, -1, 5))


def test_empty_split_names_fractions_count_and_fix():
    with pytest.raises(ExampleError) as info:
        split_examples(make(2))
    msg = str(info.value)
    assert "fractions train=0.15, validation=0.35, test=0.5 over 2 examples" in msg
    assert "add examples or raise the" in msg and "\n" not in msg


def test_zero_share_gives_an_intentionally_empty_split():
    splits = split_examples(make(20), fractions=(0.5, 0.0, 0.5))
    assert splits.validation == () and len(splits.train) + len(splits.test) == 20


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.5, 0.6, 0.1), (-0.1, 0.6, 0.5), (0.3, float("nan"), 0.7)])
def test_bad_fractions(fractions):
    with pytest.raises(ConfigError, match="split fractions"):
        split_examples(make(20), fractions=fractions)


def test_splits_get_unknown_name():
    with pytest.raises(ConfigError, match="unknown split 'dev'; use one of train, validation, test"):
        split_examples(make(50)).get("dev")


# ------------------------------------------------------------------------------------- fingerprint


@settings(max_examples=40, deadline=None, database=None)
@given(st.permutations(range(12)))
def test_fingerprint_ignores_order(perm):
    examples = make(12)
    assert examples_fingerprint([examples[i] for i in perm]) == examples_fingerprint(examples)


def test_fingerprint_tracks_content_not_metadata():
    base = make(5)
    fp = examples_fingerprint(base)
    assert len(fp) == 64 and int(fp, 16) >= 0
    changed = base[:4] + [Example(id=base[4].id, input=base[4].input, target="other")]
    assert examples_fingerprint(changed) != fp
    with_alias = base[:4] + [Example(id=base[4].id, input=base[4].input, target=base[4].target, aliases=("x",))]
    assert examples_fingerprint(with_alias) != fp
    relabelled = base[:4] + [
        Example(id=base[4].id, input=base[4].input, target=base[4].target, metadata={"note": 1}, source="elsewhere:9")
    ]
    assert examples_fingerprint(relabelled) == fp
    assert examples_fingerprint(base[:4]) != fp
