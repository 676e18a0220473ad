"""Metrics and answer extraction, against realistic model outputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_opro import metrics
from pytest_opro.errors import MetricError
from pytest_opro.prompts.examples import Example, load_examples
from pytest_opro.prompts.metrics import extract_choice, extract_number, normalize

EXAMPLE_SUITES = Path(__file__).resolve().parents[2] / "examples"
SPORTS = ("plausible", "implausible")


def ex(target: str, *, choices=(), aliases=(), id="x") -> Example:
    return Example(id=id, input="q", target=target, choices=tuple(choices), aliases=tuple(aliases))


# ------------------------------------------------------------------------------- simple text metrics


def test_names_and_versions_are_stable():
    assert [
        (m.name, m.version)
        for m in (metrics.exact, metrics.normalized, metrics.contains, metrics.numeric, metrics.choice)
    ] == [("exact", "1"), ("normalized", "1"), ("contains", "1"), ("numeric", "1"), ("choice", "1")]
    assert metrics.regex(r"(\d+)").name == r"regex:(\d+)"
    assert metrics.regex("x", 2).version != metrics.regex("x").version
    assert metrics.Normalized(articles=True).name == "normalized:no-articles"


@pytest.mark.parametrize(
    "output, target, aliases, expected",
    [
        ("  Paris\n", "Paris", (), 1.0),
        ("paris", "Paris", (), 0.0),
        ("Paris.", "Paris", (), 0.0),
        ("12", "twelve", ("12",), 1.0),
    ],
)
def test_exact(output, target, aliases, expected):
    assert metrics.exact(output, ex(target, aliases=aliases)) == expected


@pytest.mark.parametrize(
    "output, target, expected",
    [
        ("  PARIS!! ", "Paris", 1.0),
        ("New   York.", "new york", 1.0),
        ("U.S.", "US", 1.0),
        ("The Beatles", "Beatles", 0.0),  # articles count unless asked otherwise
        ("Paris, France", "Paris", 0.0),
    ],
)
def test_normalized(output, target, expected):
    assert metrics.normalized(output, ex(target)) == expected


def test_normalized_without_articles():
    assert metrics.Normalized(articles=True)("The Beatles", ex("Beatles")) == 1.0
    assert metrics.Normalized(articles=True)("Theatre", ex("atre")) == 0.0


@pytest.mark.parametrize(
    "output, target, aliases, expected",
    [
        ("The capital is Paris.", "paris", (), 1.0),
        ("It was in NEW YORK, I think", "New York", (), 1.0),
        ("There are 18 apples", "8", (), 0.0),  # whole words only
        ("There are eight apples", "8", ("eight",), 1.0),
        ("No idea", "Paris", (), 0.0),
        ("allotted fate figural", "allotted fate figural", (), 1.0),
    ],
)
def test_contains(output, target, aliases, expected):
    assert metrics.contains(output, ex(target, aliases=aliases)) == expected


def test_normalize_helper():
    assert normalize("  Hello,   WORLD!\n") == "hello world"
    assert normalize("The cat and a dog", articles=True) == "cat and dog"
    assert normalize("Ｆｕｌｌ width") == "full width"


# ------------------------------------------------------------------------------------------- numbers

NUMBER_OUTPUTS = [
    ("The answer is: 42.", 42),
    ("I think there are 7 objects.\n\nSo the answer is 7", 7),
    ("There are seven items", 7),
    ("#### 1,234", 1234),
    ("Natalia sold 48 clips in April and 24 in May.\n#### 72", 72),
    ("$5", 5),
    ("It costs $12.50 in total.", 12.5),
    ("The temperature dropped to -3 degrees.", -3),
    ("The change is −4.", -4),  # unicode minus
    ("About 50% of them.", 50),
    ("You have twenty-one marbles.", 21),
    ("one hundred", 100),
    ("one hundred and five people came", 105),
    ("two thousand five hundred", 2500),
    ("Let me count: a bed (1), a car (2), four tables (6). The answer is 12 objects, since 12 > 6.", 12),
    ("The answer is:\n\n  19", 19),
    ("Final answer: \\boxed{3.5}", 3.5),
    ("I have 3 chairs, a couch and a lamp. In total you have ten objects.", 10),
    ("Step 1: 3 apples. Step 2: 4 pears. Total: 7.", 7),
    ("The answer is 1,234,567.", 1234567),
    ("Counting carefully, that makes 12.", 12),
    ("Answer: twelve", 12),
    ("x-5 is a model name; the count is 4", 4),
    ("0", 0),
    ("zero", 0),
]


@pytest.mark.parametrize("output, expected", NUMBER_OUTPUTS)
def test_extract_number(output, expected):
    assert extract_number(output) == pytest.approx(expected)


@pytest.mark.parametrize("output", ["", "I don't know.", "Plausible", "a few of them"])
def test_extract_number_none(output):
    assert extract_number(output) is None


@pytest.mark.parametrize(
    "output, target, aliases, expected",
    [
        ("So the answer is 12.", "12", (), 1.0),
        ("So the answer is 12.", "12.0", (), 1.0),
        ("So the answer is 12.0000001", "12", (), 1.0),  # within 1e-6
        ("So the answer is 12.01", "12", (), 0.0),
        ("There are twelve objects.", "12", ("twelve", "12"), 1.0),
        ("#### 1,234", "1234", (), 1.0),
        ("The total is $5.", "5", (), 1.0),
        ("I count 3, then 4, so the answer is 13", "3", (), 0.0),
        ("No number here.", "3", (), 0.0),
    ],
)
def test_numeric(output, target, aliases, expected):
    assert metrics.numeric(output, ex(target, aliases=aliases)) == expected


def test_numeric_rejects_a_non_numeric_target():
    with pytest.raises(MetricError, match=r"metric 'numeric': target 'Paris' of example 'x' is not a number"):
        metrics.numeric("42", ex("Paris"))


@settings(max_examples=150, deadline=None, database=None)
@given(
    value=st.one_of(st.integers(-(10**9), 10**9), st.decimals(-(10**6), 10**6, places=2, allow_nan=False)),
    style=st.sampled_from(["The answer is {}.", "#### {}", "So there are {} in total", "{}", "Answer: {}\n"]),
    commas=st.booleans(),
    dollars=st.booleans(),
)
def test_extract_number_round_trip(value, style, commas, dollars):
    text = f"{value:,}" if commas else f"{value}"
    if dollars:
        text = "-$" + text[1:] if text.startswith("-") else "$" + text
    assert extract_number("I reasoned about 3 things first. " + style.format(text)) == pytest.approx(float(value))


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()
)
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + _words(rest))
    rest = n % 1000
    return _words(n // 1000) + " thousand" + ("" if rest == 0 else " " + _words(rest))


@settings(max_examples=150, deadline=None, database=None)
@given(n=st.integers(0, 999_999))
def test_number_words_round_trip(n):
    assert extract_number(f"I believe there are {_words(n)} of them.") == n
    assert metrics.numeric(f"There are {_words(n)}.", ex(str(n))) == 1.0


def test_number_words_do_not_run_together():
    assert extract_number("one two three") == 3  # a count-up is three numbers; the last wins
    assert extract_number("twenty one") == 21


# ------------------------------------------------------------------------------------------- choices

SPORTS_OUTPUTS = [
    ("plausible", "plausible"),
    ("Implausible", "implausible"),
    ("**Plausible**", "plausible"),
    ("A: implausible", "implausible"),
    ("The sentence is not plausible.", "implausible"),  # negation counts as the opposite
    ("This isn't plausible at all.", "implausible"),
    ("It is not implausible.", "plausible"),
    ("Plausible. Luka Doncic is a basketball player and hitting nothing but net is a basketball term.", "plausible"),
    (
        "Joao Moutinho is a soccer player. Catching a screen pass is from American football, "
        "so the sentence is implausible.",
        "implausible",
    ),
    (
        "To judge whether the answer is plausible we need the sport.\nTrae Young plays basketball.\n"
        "So the answer is plausible",
        "plausible",
    ),
    (
        "Let's think step by step. It might seem plausible at first, but hockey has no touchdowns.\n"
        "The answer is: implausible.",
        "implausible",
    ),
    ("Yes, that could happen in a game.", "plausible"),
    ("No.", "implausible"),
    ("The statement is true.", "plausible"),
    ("The sentence is completely plausible - implausible would be wrong.", "plausible"),
]


@pytest.mark.parametrize("output, picked", SPORTS_OUTPUTS)
def test_choice_sports(output, picked):
    for target in SPORTS:
        example = ex(target, choices=SPORTS)
        assert extract_choice(output, example) == picked
        assert metrics.choice(output, example) == (1.0 if target == picked else 0.0)


@pytest.mark.parametrize("output", ["", "I am not sure.", "It depends on the player.", "Sports are fun!"])
def test_choice_undecided_scores_zero(output):
    assert extract_choice(output, ex("plausible", choices=SPORTS)) is None
    assert metrics.choice(output, ex("implausible", choices=SPORTS)) == 0.0


def test_choice_implausible_never_counts_as_plausible():
    assert metrics.choice("implausible", ex("plausible", choices=SPORTS)) == 0.0
    assert metrics.choice("IMPLAUSIBLE!!!", ex("plausible")) == 0.0  # no choices: the natural pair is used
    assert metrics.choice("IMPLAUSIBLE!!!", ex("implausible")) == 1.0


@pytest.mark.parametrize(
    "output, picked",
    [
        ("True", "true"),
        ("False. You end up 3 steps away.", "false"),
        ("Yes, you return to the starting point.", "true"),
        ("No", "false"),
        ("The statement is not true.", "false"),
        ("After all the steps you are back where you started, so the answer is True.", "true"),
    ],
)
def test_choice_navigate(output, picked):
    assert extract_choice(output, ex("True", choices=("True", "False"))) == picked


MC = ("Sweden", "Norway", "Finland")


@pytest.mark.parametrize(
    "output, picked",
    [
        ("(B) Norway", "norway"),
        ("(b)", "norway"),
        ("B) Norway is correct", "norway"),
        ("Answer: B", "norway"),
        ("The answer is C.", "finland"),
        ("I'd go with option A.", "sweden"),
        ("B", "norway"),
        ("It is not Sweden; it is Norway.", "norway"),
        ("Finland", "finland"),
        ("(D)", None),  # no fourth choice
        ("a country in Europe", None),  # the article "a" is not option A
    ],
)
def test_choice_letters_and_texts(output, picked):
    assert extract_choice(output, ex("Norway", choices=MC)) == picked


def test_choice_single_letter_options():
    example = ex("B", choices=("A", "B", "C"))
    assert metrics.choice("The answer is (B).", example) == 1.0
    assert metrics.choice("a b c", example) == 0.0


def test_choice_matches_whole_words_only():
    example = ex("art", choices=("art", "science"))
    assert extract_choice("I love science and cartography.", example) == "science"
    assert metrics.choice("Smart people pick science.", example) == 0.0


def test_choice_aliases_and_longest_option():
    assert (
        metrics.choice("It is Big Apple", ex("New York", choices=("New York", "Boston"), aliases=("Big Apple",))) == 1.0
    )
    shades = ex("red", choices=("red", "dark red"))
    assert extract_choice("dark red", shades) == "dark red"
    assert metrics.choice("dark red", shades) == 0.0


# ---------------------------------------------------------------------------------------- regex, custom


def test_regex():
    m = metrics.regex(r"ANSWER:\s*(\w+)")
    assert m("blah ANSWER: Paris. ANSWER: Rome", ex("paris")) == 1.0  # first match, normalised compare
    assert m("no tag", ex("paris")) == 0.0
    whole = metrics.regex(r"\d+")
    assert whole("I got 42 and 7", ex("42")) == 1.0
    with pytest.raises(MetricError, match=r"invalid pattern"):
        metrics.regex("(unclosed")


def score_len(output: str, example: Example) -> float:
    return min(1.0, len(output) / 10)


def test_custom_and_resolve_callable():
    m = metrics.resolve(score_len)
    assert m.name == "score_len" and m.version == "1"
    assert m("hello", ex("x")) == 0.5
    assert metrics.custom(lambda o, e: o == e.target, name="eq", version="3")("x", ex("x")) == 1.0


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan"), "1", None, [1]])
def test_custom_bad_return_names_the_metric(value):
    def bad_metric(output, example):
        return value

    with pytest.raises(
        MetricError, match=r"metric '.*bad_metric' returned .*a metric must return a number in \[0, 1\]"
    ):
        metrics.resolve(bad_metric)("out", ex("t"))


def test_custom_raising_names_the_metric():
    def broken(output, example):
        raise KeyError("field")

    with pytest.raises(MetricError, match=r"metric '.*broken' raised KeyError"):
        metrics.custom(broken)("o", ex("t"))


def test_resolve():
    assert metrics.resolve("exact") is metrics.exact
    assert metrics.resolve(" Numeric ") is metrics.numeric
    assert metrics.resolve(metrics.choice) is metrics.choice
    assert metrics.resolve("regex:(\\d+)")("7", ex("7")) == 1.0
    with pytest.raises(
        MetricError,
        match=r"unknown metric 'bleu'; known metrics: choice, contains, exact, "
        r"normalized, numeric, token_f1, regex:<pattern>",
    ):
        metrics.resolve("bleu")
    with pytest.raises(MetricError, match="must be a name, a Metric or a callable"):
        metrics.resolve(3)


def test_resolve_checks_a_user_metric_object():
    class Half:
        name = "half"
        version = "2"

        def __call__(self, output, example):
            return 2.0 if output == "boom" else 0.5

    m = metrics.resolve(Half())
    assert (m.name, m.version, m("x", ex("t"))) == ("half", "2", 0.5)
    with pytest.raises(MetricError, match="metric 'half' returned 2.0"):
        m("boom", ex("t"))


# ------------------------------------------------------------------------------------------ properties

BUILTINS = [
    metrics.exact,
    metrics.normalized,
    metrics.contains,
    metrics.numeric,
    metrics.choice,
    metrics.Normalized(articles=True),
    metrics.regex(r"answer:\s*(\S+)", 2),
]
EXAMPLES = [
    ex("12", aliases=("twelve",)),
    ex("plausible", choices=SPORTS),
    ex("True", choices=("True", "False")),
    ex("-3.5"),
    ex("B", choices=("A", "B", "C")),
    ex("Norway", choices=MC),
    ex("1,000"),
]


@settings(max_examples=200, deadline=None, database=None)
@given(
    output=st.text(max_size=200) | st.from_regex(r"[\w\s.,$%()*#:-]{0,80}", fullmatch=True),
    which=st.integers(0, len(EXAMPLES) - 1),
)
def test_builtin_metrics_never_raise_and_stay_in_range(output, which):
    example = EXAMPLES[which]
    for metric in BUILTINS:
        if metric is metrics.numeric and extract_number(example.target) is None:
            continue  # numeric rejects a non-numeric target by design (tested above)
        value = metric(output, example)
        assert isinstance(value, float) and value in (0.0, 1.0)


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(max_size=300))
def test_extract_number_total(text):
    value = extract_number(text)
    assert value is None or not math.isnan(value)


# ------------------------------------------------------------------------------------------- real data


def test_real_rows_score_their_own_answers():
    sports = load_examples(EXAMPLE_SUITES / "sports" / "sports.jsonl")
    for e in sports:
        other = "implausible" if e.target == "plausible" else "plausible"
        assert metrics.choice(f"The answer is {e.target}.", e) == 1.0
        assert metrics.choice(f"**{other.title()}**", e) == 0.0
    counting = load_examples(EXAMPLE_SUITES / "counting" / "object_counting.jsonl")
    for e in counting:
        for answer in e.aliases:
            assert metrics.numeric(f"Let me count them all.\nSo the answer is {answer}.", e) == 1.0
        assert metrics.numeric(f"So the answer is {int(e.target) + 1}.", e) == 0.0
    navigate = load_examples(EXAMPLE_SUITES / "navigate" / "navigate.jsonl")
    assert sum(metrics.choice(e.target, e) for e in navigate) == len(navigate)
