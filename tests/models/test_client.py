"""LLMClient against the fake provider and the loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_opro.errors import BudgetExhausted, ConfigError, FatalProviderError, ProviderError
from pytest_opro.models.cache import ResponseCache
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import Budget, ModelConfig
from pytest_opro.models.litellm_bridge import extract_text, supports_prefill
from pytest_opro.models.pricing import estimate_cost
from pytest_opro.models.retry import Retryable
from pytest_opro.models.transport import Sent
from pytest_opro.models.usage import Completion, Ledger, ModelUsage
from tests.support.loopback import FAULT_KINDS, FaultPlan, LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-DO-NOT-LEAK-1234"


def msgs(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def loop_config(server: LoopbackServer, **kw) -> ModelConfig:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("max_retries", 3)
    return ModelConfig("openai/gpt-4o-mini", {"temperature": 0}, api_base=server.url, api_key=SECRET, **kw)


def fast_client(**kw) -> LLMClient:
    kw.setdefault("retry_base", 0.01)
    return LLMClient(**kw)


def _run_py(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- lazy import ----------------------------------------------------------------------------------
def test_litellm_is_imported_only_at_first_call():
    out = _run_py("""
        import sys
        import pytest_opro.models.litellm_bridge as llm
        from pytest_opro.models.client import LLMClient
        from pytest_opro.models.config import ModelConfig
        from pytest_opro.models.litellm_bridge import register_provider, supports_prefill
        register_provider("dummy", object())
        LLMClient(); ModelConfig("openai/gpt-4o-mini")
        assert supports_prefill("local/smollm2") and supports_prefill("anthropic/claude-x")
        print("before", "litellm" in sys.modules)
        lit = llm.get_litellm()
        print("after", "litellm" in sys.modules)
        print("registered", any(i["provider"] == "dummy" for i in lit.custom_provider_map))
        import os; print("costmap", os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"))
    """)
    assert "before False" in out and "after True" in out
    assert "registered True" in out and "costmap True" in out
    assert "Give Feedback" not in out and "Provider List" not in out


def test_the_first_call_adds_no_warning_of_litellms_own_types():
    """litellm builds its pydantic models at import and at its first call; pydantic warns about
    their ReadOnly TypedDict items. Those warnings stay quiet, a warning of the caller's does not."""
    out = _run_py("""
        import warnings
        warnings.simplefilter("always")
        from pytest_opro.models.client import LLMClient, run_sync
        from pytest_opro.models.config import ModelConfig
        from tests.support.fake_provider import FakeBrain, install
        install(FakeBrain())
        with warnings.catch_warnings(record=True) as log:
            warnings.simplefilter("always")
            run_sync(LLMClient().complete(ModelConfig("fake/scorer"), [{"role": "user", "content": "x"}]))
            warnings.warn("the caller's own warning", UserWarning)
        print("warnings", [str(w.message) for w in log])
    """)
    assert 'warnings ["the caller\'s own warning"]' in out, out


# -- fake provider ------------------------------------------------------------------------------
def test_fake_provider_scores_by_keywords(fake_llm):
    examples = [{"input": f"question {i}", "target": f"t{i}"} for i in range(20)]
    fake_llm.learn(examples)
    client = LLMClient()
    config = ModelConfig("fake/scorer", {"temperature": 0})

    def accuracy(instruction: str) -> float:
        reqs = [(msgs(f"{e['input']}\n{instruction}"), 0) for e in examples]
        outs = run_sync(client.complete_many(config, reqs))
        return sum(o.text == e["target"] for o, e in zip(outs, examples)) / len(examples)

    low, high = accuracy("Answer."), accuracy("Think step by step, carefully, and double-check.")
    assert high == 1.0 and low < high
    assert fake_llm.calls["fake/scorer"] == 40
    assert client.ledger.by_model["fake/scorer"].calls == 40


def test_fake_optimizer_script_is_deterministic(fake_llm):
    fake_llm.optimizer = lambda text, n: f"<INS>{text[-4:]}-{n}</INS>"
    client = LLMClient()
    config = ModelConfig("fake/optimizer", {"temperature": 1.0})
    outs = [run_sync(client.complete(config, msgs("meta"), sample_index=i)).text for i in range(3)]
    assert outs == ["<INS>meta-0</INS>", "<INS>meta-1</INS>", "<INS>meta-2</INS>"]
    fake_llm.optimizer = ["a", "b"]
    assert [run_sync(client.complete(config, msgs(f"m{i}"))).text for i in range(3)] == ["a", "b", "a"]


def test_cache_hit_makes_no_call_and_is_free(fake_llm, tmp_path):
    cache = ResponseCache(tmp_path)
    client = LLMClient(cache=cache, budget=Budget(max_calls=1))
    config = ModelConfig("fake/optimizer", {"temperature": 1.0})
    first = run_sync(client.complete(config, msgs("meta"), sample_index=0))
    again = run_sync(client.complete(config, msgs("meta"), sample_index=0))
    assert not first.cached and again.cached and again.text == first.text
    assert fake_llm.calls["fake/optimizer"] == 1
    usage = client.ledger.by_model["fake/optimizer"]
    assert (usage.calls, usage.cache_hits) == (1, 1)
    with pytest.raises(BudgetExhausted, match="max_calls=1"):  # another sample index is a new call
        run_sync(client.complete(config, msgs("meta"), sample_index=1))
    # a fresh process-like client replays from the same cache without calls
    replay = LLMClient(cache=ResponseCache(tmp_path, mode="ro"), budget=Budget(max_calls=0))
    assert run_sync(replay.complete(config, msgs("meta"), sample_index=0)).text == first.text


def test_budget_stops_complete_many(fake_llm):
    client = LLMClient(budget=Budget(max_calls=3), concurrency=2)
    config = ModelConfig("fake/scorer")
    with pytest.raises(BudgetExhausted, match="max_calls=3 reached"):
        run_sync(client.complete_many(config, [(msgs(f"q{i}"), 0) for i in range(10)]))
    assert client.ledger.total().calls == 3
    assert fake_llm.calls["fake/scorer"] == 3


def test_token_and_cost_budgets():
    ledger = Ledger({"a": ModelUsage(calls=2, prompt_tokens=60, completion_tokens=50, cost_usd=0.5)})
    assert Budget().check(ledger) is None
    assert "max_tokens=100" in Budget(max_tokens=100).check(ledger)
    assert "max_cost_usd=0.5" in Budget(max_cost_usd=0.5).check(ledger)
    assert Budget(max_calls=3, max_tokens=1000, max_cost_usd=1).check(ledger) is None


def test_unknown_cost_is_counted_not_fatal(fake_llm):
    fake_llm.cost_per_call = None
    client = LLMClient()
    out = run_sync(client.complete(ModelConfig("fake/scorer"), msgs("x")))
    assert out.cost_usd is None
    assert client.ledger.by_model["fake/scorer"].cost_unknown_calls == 1


def test_non_retryable_error_fails_fast(fake_llm):
    import litellm

    fake_llm.fail = lambda model, messages: litellm.BadRequestError(
        message="bad request", model="x", llm_provider="fake"
    )
    client = fast_client()
    with pytest.raises(ProviderError, match=r"^model fake/scorer: .*bad request") as info:
        run_sync(client.complete(ModelConfig("fake/scorer"), msgs("x")))
    assert "\n" not in str(info.value)
    assert fake_llm.calls["fake/scorer"] == 1
    assert client.ledger.by_model["fake/scorer"].failures == 1


def test_complete_many_returns_errors_in_place(fake_llm):
    import litellm

    fake_llm.fail = lambda model, messages: (
        litellm.RateLimitError(message="slow down", model="x", llm_provider="fake")
        if "bad" in messages[-1]["content"]
        else None
    )
    client = fast_client()
    outs = run_sync(
        client.complete_many(
            ModelConfig("fake/scorer", max_retries=1), [(msgs("good 1"), 0), (msgs("bad"), 0), (msgs("good 2"), 0)]
        )
    )
    assert isinstance(outs[0], Completion) and isinstance(outs[2], Completion)
    assert isinstance(outs[1], ProviderError) and "gave up after 2 attempts" in str(outs[1])
    usage = client.ledger.by_model["fake/scorer"]
    assert (usage.calls, usage.retries, usage.failures) == (3, 1, 1)


def test_unknown_provider_names_the_model():
    with pytest.raises(ProviderError, match=r"model gpt-nonsense-xyz: .*openai/gpt-4o-mini"):
        run_sync(LLMClient().complete(ModelConfig("gpt-nonsense-xyz"), msgs("x")))


def test_missing_key_names_the_env_var(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LoopbackServer() as server:
        config = ModelConfig("openai/gpt-4o-mini", api_base=server.url, max_retries=3)
        with pytest.raises(ProviderError, match="OPENAI_API_KEY"):
            run_sync(fast_client().complete(config, msgs("x")))
        assert server.requests == 0


# -- loopback server: faults, retries, concurrency ----------------------------------------------
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried(kind, tmp_path):
    plan = FaultPlan(on_requests={1: kind, 2: kind}, retry_after=0)
    with LoopbackServer(faults=plan, timeout_sleep=3) as server:
        client = fast_client(cache=ResponseCache(tmp_path))
        timeout = 0.5 if kind == "timeout" else 2.0
        out = run_sync(client.complete(loop_config(server, timeout=timeout), msgs("hello")))
        assert out.text.startswith("answer-") and out.retries == 2
        assert server.requests == 3 and server.fault_counts[kind] == 2
        usage = client.ledger.by_model["openai/gpt-4o-mini"]
        assert (usage.calls, usage.retries, usage.failures) == (1, 2, 0)
        assert usage.prompt_tokens == 1 and usage.completion_tokens == 1
        assert usage.cost_usd > 0 and usage.cost_unknown_calls == 0
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()


def test_retry_after_is_honoured():
    with LoopbackServer(faults=FaultPlan(on_requests={1: "429"}, retry_after=1)) as server:
        client = fast_client()
        start = time.monotonic()
        out = run_sync(client.complete(loop_config(server), msgs("hello")))
        assert time.monotonic() - start >= 0.9
        assert out.retries == 1


def test_permanent_failure_gives_provider_error_after_max_retries():
    with LoopbackServer(faults=FaultPlan(rate=1.0, kinds=["503"])) as server:
        client = fast_client()
        outs = run_sync(client.complete_many(loop_config(server, max_retries=2), [(msgs("a"), 0), (msgs("b"), 0)]))
        assert all(isinstance(o, ProviderError) for o in outs)
        assert server.requests == 6
        message = str(outs[0])
        assert message.startswith("model openai/gpt-4o-mini: ") and "3 attempts" in message
        assert "\n" not in message and SECRET not in message
        usage = client.ledger.by_model["openai/gpt-4o-mini"]
        assert (usage.calls, usage.retries, usage.failures) == (2, 4, 2)


def test_concurrency_overlaps_calls():
    # the server stops (and lets held requests go) after 60 s: a client that never overlaps fails then
    with LoopbackServer(latency=0.1, max_seconds=60) as server:
        client = LLMClient(concurrency=32)
        config = loop_config(server, timeout=60)
        run_sync(client.complete(config, msgs("warm-up")))
        server.hold_until_in_flight(32)  # not a timing: the requests wait until 32 are in flight at once
        outs = run_sync(client.complete_many(config, [(msgs(f"q{i}"), 0) for i in range(64)]))
        assert all(isinstance(o, Completion) for o in outs)
        assert server.held.is_set() and server.max_in_flight == 32


def test_params_reach_the_server_and_key_does_not_reach_the_ledger():
    with LoopbackServer() as server:
        client = LLMClient()
        config = ModelConfig(
            "openai/gpt-4o-mini", {"temperature": 0, "max_tokens": 7, "seed": 3}, api_base=server.url, api_key=SECRET
        )
        run_sync(client.complete(config, msgs("x")))
        body = server.bodies[-1]
        assert (body["temperature"], body["max_tokens"], body["seed"]) == (0, 7, 3)
    assert SECRET not in repr(config) and SECRET not in str(config.public_dict())
    assert SECRET not in str(client.ledger.to_dict())
    assert config.public_dict() == {
        "model": "openai/gpt-4o-mini",
        "params": {"max_tokens": 7, "seed": 3, "temperature": 0},
    }


# -- small pieces ---------------------------------------------------------------------------------
def test_model_config_validation():
    with pytest.raises(ConfigError, match="api_key"):
        ModelConfig("openai/gpt-4o-mini", {"api_key": "x"})
    with pytest.raises(ConfigError, match="timeout"):
        ModelConfig("openai/gpt-4o-mini", timeout=0)
    assert ModelConfig.coerce("local/smollm2").model == "local/smollm2"
    a = ModelConfig("m/x", {"temperature": 0}, api_key="k1")
    assert a == ModelConfig("m/x", {"temperature": 0}, api_key="k2") and hash(a) == hash(
        ModelConfig("m/x", {"temperature": 0})
    )
    assert a.with_params(temperature=1).params == {"temperature": 1}


def test_ledger_roundtrip():
    ledger = Ledger()
    ledger.usage("a").calls = 2
    ledger.usage("b").cost_usd = 0.25
    again = Ledger.from_dict(ledger.to_dict())
    assert again == ledger and again.total().calls == 2 and again.total().cost_usd == 0.25


def test_extract_text():
    assert extract_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"
    assert extract_text({"choices": [{"message": {"content": None}}]}) == ""
    assert (
        extract_text(
            {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}
        )
        == "ab"
    )
    assert extract_text({"choices": []}) is None
    assert extract_text(object()) is None


def test_estimate_cost_and_prefill():
    assert estimate_cost("openai/gpt-4o-mini", 1000, 1000) > 0
    assert estimate_cost("nonsense-provider/zzz", 10, 10) is None
    assert supports_prefill("local/smollm2") and supports_prefill("anthropic/claude-3-5-haiku-latest")
    assert supports_prefill("openai/gpt-4o-mini") is False


def test_run_sync_inside_a_running_loop():
    async def outer():
        return run_sync(asyncio.sleep(0, result=42))

    assert asyncio.run(outer()) == 42


# -- the common path with a fake transport -----------------------------------------------------------
class ScriptedTransport:
    """A Transport that replays a script of outcomes: a Sent, or an exception to raise from send()."""

    def __init__(self, script: list, *, local: bool = False, fatal: str | None = None) -> None:
        self.script = list(script)
        self.local = local
        self.fatal = fatal
        self.sent: list[ModelConfig] = []

    def prepare(self, config: ModelConfig) -> bool:
        if self.fatal:
            raise FatalProviderError(self.fatal)
        return self.local

    async def send(self, config: ModelConfig, messages: list[dict]) -> Sent:
        self.sent.append(config)
        outcome = self.script.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def failure(self, config: ModelConfig, exc: BaseException) -> Retryable | ProviderError:
        return exc if isinstance(exc, Retryable) else ProviderError(f"model {config.model}: {exc}")


class ClientWith(LLMClient):
    """An LLMClient whose every call goes through one given transport."""

    def __init__(self, transport: ScriptedTransport, **kw) -> None:
        kw.setdefault("retry_base", 0.001)
        super().__init__(**kw)
        self.fake = transport

    def transport(self, config: ModelConfig) -> ScriptedTransport:  # type: ignore[override]
        return self.fake


def test_the_common_path_retries_counts_and_caches_whatever_the_transport(tmp_path: Path) -> None:
    fake = ScriptedTransport([Retryable("HTTP 503"), Sent(""), Sent(None), Sent("four", 7, 2, 0.25)])
    client = ClientWith(fake, cache=ResponseCache(tmp_path / "cache"))
    config = ModelConfig("fake/m", max_retries=3)
    out = run_sync(client.complete(config, msgs("2+2?"), role="scorer"))
    # a 503, a remote empty answer and a malformed one are retried; the fourth attempt answers
    assert (out.text, out.prompt_tokens, out.completion_tokens, out.cost_usd, out.retries) == ("four", 7, 2, 0.25, 3)
    for usage in (client.ledger.by_model["fake/m"], client.ledger.by_role["scorer"]):
        assert (usage.calls, usage.retries, usage.failures, usage.cost_usd, usage.prompt_tokens) == (1, 3, 0, 0.25, 7)
    again = run_sync(client.complete(config, msgs("2+2?"), role="scorer"))
    assert again.cached and again.text == "four" and len(fake.sent) == 4
    assert client.ledger.by_model["fake/m"].cache_hits == 1 and client.ledger.by_role["scorer"].cache_hits == 1


def test_the_common_path_gives_up_raises_the_transports_error_and_counts_a_fatal_one() -> None:
    config = ModelConfig("fake/m", max_retries=1)
    gave_up = ClientWith(ScriptedTransport([Retryable("HTTP 503"), Retryable("HTTP 503")]))
    with pytest.raises(ProviderError, match=r"^model fake/m: HTTP 503 \(gave up after 2 attempts\)$"):
        run_sync(gave_up.complete(config, msgs("x")))
    refused = ClientWith(ScriptedTransport([ValueError("bad request")]))
    with pytest.raises(ProviderError, match=r"^model fake/m: bad request$"):
        run_sync(refused.complete(config, msgs("x")))
    unknown = ClientWith(ScriptedTransport([], fatal="model fake/m is unknown"))
    with pytest.raises(FatalProviderError):
        run_sync(unknown.complete_many(config, [(msgs("a"), 0), (msgs("b"), 1)]))
    for client, calls in ((gave_up, 1), (refused, 1), (unknown, 0)):
        usage = client.ledger.by_model["fake/m"]
        assert usage.failures >= 1 and usage.calls == calls


def test_the_embedded_model_answers_empty_and_samples_from_the_sample_index() -> None:
    fake = ScriptedTransport([Sent(""), Sent("b")], local=True)
    client = ClientWith(fake)
    config = ModelConfig("local/x", {"temperature": 0.7})
    assert run_sync(client.complete(config, msgs("x"), sample_index=5)).text == ""  # an answer, not retried
    run_sync(client.complete(ModelConfig("local/x", {"temperature": 0.7, "seed": 1}), msgs("y"), sample_index=6))
    assert [c.params.get("seed") for c in fake.sent] == [5, 1]


def test_a_batch_reports_its_progress_cache_hits_first(tmp_path: Path) -> None:
    from pytest_opro.models.client import BatchProgress

    seen: list[BatchProgress] = []
    cache = ResponseCache(tmp_path / "cache")
    config = ModelConfig("fake/m")
    warm = ClientWith(ScriptedTransport([Sent("a")]), cache=cache)
    run_sync(warm.complete(config, msgs("q0")))
    client = ClientWith(ScriptedTransport([Sent("b"), Sent("c")]), cache=cache, on_progress=seen.append)
    run_sync(client.complete_many(config, [(msgs(f"q{i}"), 0) for i in range(3)], role="scorer"))
    assert [(p.role, p.done, p.total) for p in seen] == [("scorer", 1, 3), ("scorer", 2, 3), ("scorer", 3, 3)]
    assert all(p.elapsed >= 0 for p in seen)
