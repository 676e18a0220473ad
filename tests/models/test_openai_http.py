"""The direct HTTP transport for OpenAI-compatible servers: routing, faults, errors, keys, pools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_opro.errors import ConfigError, FatalProviderError, ProviderError
from pytest_opro.models import openai_http
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import ModelConfig
from pytest_opro.models.retry import retry_after_seconds
from tests.support.loopback import FAULT_KINDS, FaultPlan, LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-http-DO-NOT-LEAK-5678"


def msgs(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def fast_client(**kw: Any) -> LLMClient:
    kw.setdefault("retry_base", 0.01)
    return LLMClient(**kw)


class ScriptedServer:
    """Answers chat requests from a script of (status, body, headers); records what it received."""

    def __init__(self, script: list[tuple[int, Any, dict[str, str]]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)})
                status, body, headers = owner.script.pop(0) if owner.script else owner.ok()
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    @staticmethod
    def ok(text: str = "fine") -> tuple[int, Any, dict[str, str]]:
        return (
            200,
            {
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
            {},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedServer":
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _run_py(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


# -- routing ---------------------------------------------------------------------------------------
def test_transport_choice():
    base = "http://127.0.0.1:1/v1"
    assert ModelConfig("openai/m", api_base=base).uses_http()
    assert ModelConfig("hosted_vllm/m", api_base=base).uses_http()
    assert not ModelConfig("openai/gpt-4o-mini").uses_http()  # the real OpenAI: litellm
    assert not ModelConfig("anthropic/claude-x", api_base=base).uses_http()
    assert not ModelConfig("openai/m", api_base=base, transport="litellm").uses_http()
    assert not ModelConfig("openai/m", {"mock_response": "x"}, api_base=base).uses_http()
    assert ModelConfig("openai/gpt-4o-mini", transport="http").uses_http()
    with pytest.raises(ConfigError, match="transport must be one of"):
        ModelConfig("openai/m", transport="fast")
    with pytest.raises(ConfigError, match="needs api_base"):
        ModelConfig("hosted_vllm/m", transport="http")
    config = ModelConfig("openai/m", {"temperature": 0}, api_base=base, transport="litellm")
    assert config.public_dict() == ModelConfig("openai/m", {"temperature": 0}).public_dict()
    assert config.with_params(seed=1).transport == "litellm"


def test_task_keeps_the_transport():
    from pytest_opro.models.config import model_config

    config = model_config(ModelConfig("openai/m", api_base="http://x/v1", transport="litellm"), {"temperature": 0})
    assert config.transport == "litellm" and config.params == {"temperature": 0}


# -- requests ----------------------------------------------------------------------------------------
def test_request_shape_key_header_and_usage():
    with ScriptedServer([]) as server:
        client = LLMClient()
        config = ModelConfig(
            "openai/my-model",
            {"temperature": 0, "max_tokens": 7, "seed": 3, "extra_body": {"top_k": 5}},
            api_base=server.url + "/",
            api_key=SECRET,
        )
        out = run_sync(client.complete(config, msgs("hi")))
        (request,) = server.requests
    assert out.text == "fine" and (out.prompt_tokens, out.completion_tokens) == (3, 1)
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["body"] == {
        "model": "my-model",
        "messages": msgs("hi"),
        "temperature": 0,
        "max_tokens": 7,
        "seed": 3,
        "top_k": 5,
    }
    usage = client.ledger.by_model["openai/my-model"]
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (1, 3, 1)
    assert usage.cost_unknown_calls == 1  # not in the price table: unknown, not an error


def test_env_keys_per_provider(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai-1234")
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
    with ScriptedServer([]) as server:
        client = LLMClient()
        run_sync(client.complete(ModelConfig("openai/m", api_base=server.url), msgs("a")))
        run_sync(client.complete(ModelConfig("hosted_vllm/m", api_base=server.url), msgs("b")))
        monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-key-5678")
        run_sync(client.complete(ModelConfig("hosted_vllm/m", api_base=server.url), msgs("c")))
        headers = [r["headers"].get("Authorization") for r in server.requests]
    assert headers == ["Bearer sk-env-openai-1234", None, "Bearer vllm-key-5678"]


def test_known_model_is_priced_without_litellm():
    with LoopbackServer() as server:
        client = LLMClient()
        out = run_sync(
            client.complete(ModelConfig("openai/gpt-4o-mini", api_base=server.url, api_key=SECRET), msgs("x"))
        )
    assert out.cost_usd is not None and out.cost_usd > 0


# -- faults ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["openai/bench", "hosted_vllm/bench"])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried(kind, model):
    plan = FaultPlan(on_requests={1: kind}, retry_after=0)
    with LoopbackServer(faults=plan, timeout_sleep=2) as server:
        client = fast_client()
        config = ModelConfig(
            model, api_base=server.url, api_key=SECRET, timeout=0.5 if kind == "timeout" else 2.0, max_retries=2
        )
        out = run_sync(client.complete(config, msgs("hello")))
        assert out.text.startswith("answer-") and out.retries == 1
        assert server.requests == 2 and server.fault_counts[kind] == 1
        usage = client.ledger.by_model[model]
        assert (usage.calls, usage.retries, usage.failures) == (1, 1, 0)


def test_malformed_shape_and_5xx_are_retried_then_give_up():
    script = [(200, {"object": "nothing"}, {}), (502, b"<html>bad gateway</html>", {}), (500, {}, {})]
    with ScriptedServer(script) as server:
        config = ModelConfig("openai/m", api_base=server.url, api_key=SECRET, max_retries=2)
        with pytest.raises(ProviderError, match=r"^model openai/m: HTTP 500 \(gave up after 3 attempts\)$"):
            run_sync(fast_client().complete(config, msgs("x")))
        assert len(server.requests) == 3


def test_retry_after_headers_are_read():
    assert retry_after_seconds(openai_http.RateLimitError("HTTP 429", 429, {"retry-after": "2"})) == 2.0
    assert retry_after_seconds(openai_http.RateLimitError("HTTP 429", 429, {"retry-after-ms": "1500"})) == 1.5
    script = [(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "600"})]
    with ScriptedServer(script) as server:
        import time

        start = time.monotonic()
        out = run_sync(fast_client().complete(ModelConfig("openai/m", api_base=server.url, api_key=SECRET), msgs("x")))
        assert time.monotonic() - start >= 0.55 and out.retries == 1


def test_connection_refused_is_retried_and_reported():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ModelConfig("openai/m", api_base=f"http://127.0.0.1:{port}/v1", api_key=SECRET, max_retries=1)
    client = fast_client()
    with pytest.raises(ProviderError, match=r"connection error.*gave up after 2 attempts") as info:
        run_sync(client.complete(config, msgs("x")))
    assert "\n" not in str(info.value) and SECRET not in str(info.value)
    assert client.ledger.by_model["openai/m"].retries == 1


# -- errors that are not retried -------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, var, fatal, expected",
    [
        (401, "OPENAI_API_KEY", True, "authentication failed; set OPENAI_API_KEY"),
        (403, "OPENAI_API_KEY", True, "permission denied (HTTP 403); set OPENAI_API_KEY"),
        (401, "HOSTED_VLLM_API_KEY", True, "authentication failed; set HOSTED_VLLM_API_KEY"),
        (404, None, True, "not found at the provider (HTTP 404: Incorrect API key provided: ***)"),
        (400, None, False, "HTTP 400: Incorrect API key provided: ***"),
        (422, None, False, "HTTP 422: Incorrect API key provided: ***"),
    ],
)
def test_client_errors_are_one_line_without_the_key(status, var, fatal, expected):
    model = "hosted_vllm/m" if var == "HOSTED_VLLM_API_KEY" else "openai/m"
    script = [(status, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}, {})]
    with ScriptedServer(script) as server:
        client = fast_client()
        with pytest.raises(ProviderError) as info:
            run_sync(client.complete(ModelConfig(model, api_base=server.url, api_key=SECRET), msgs("x")))
        assert len(server.requests) == 1  # not retried
    message = str(info.value)
    assert message == f"model {model}: {expected}" or message.startswith(f"model {model}: {expected}")
    assert SECRET not in message and "\n" not in message
    assert isinstance(info.value, FatalProviderError) is fatal
    assert client.ledger.by_model[model].failures == 1


def test_missing_openai_key_sends_nothing(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ScriptedServer([]) as server:
        with pytest.raises(ProviderError, match=r"^model openai/m: authentication failed; set OPENAI_API_KEY"):
            run_sync(fast_client().complete(ModelConfig("openai/m", api_base=server.url), msgs("x")))
        assert server.requests == []


def test_fatal_error_stops_complete_many():
    with ScriptedServer([(401, {"error": {"message": "bad key"}}, {})]) as server:
        client = fast_client(concurrency=1)
        with pytest.raises(ProviderError, match="authentication failed"):
            run_sync(
                client.complete_many(
                    ModelConfig("openai/m", api_base=server.url, api_key=SECRET),
                    [(msgs(f"q{i}"), 0) for i in range(20)],
                )
            )
        assert len(server.requests) < 20


# -- litellm stays available and stays unloaded ------------------------------------------------------
def test_transport_litellm_still_works():
    with LoopbackServer() as server:
        client = LLMClient()
        config = ModelConfig(
            "openai/gpt-4o-mini", {"temperature": 0}, api_base=server.url, api_key=SECRET, transport="litellm"
        )
        out = run_sync(client.complete(config, msgs("hello")))
        assert out.text.startswith("answer-") and out.cost_usd > 0
        assert "litellm" in sys.modules
        assert server.bodies[-1]["model"] == "gpt-4o-mini"


def test_fast_path_never_imports_litellm_and_closes_its_pool():
    proc = _run_py("""
        import sys
        from tests.support.loopback import FaultPlan, LoopbackServer
        from pytest_opro.models.client import LLMClient, run_sync
        from pytest_opro.models.config import ModelConfig
        from pytest_opro.prompts.optimization import optimize
        from tests.support.loop_brain import LoopBrain, loop_model, loop_task, make_records

        records = make_records(12, "s")
        with LoopbackServer(answer=LoopBrain(records), faults=FaultPlan(on_requests={3: "503", 5: "drop"},
                                                                         retry_after=0)) as server:
            task = loop_task("sub", records, loop_model(server.url, "gpt-4o-mini"), loop_model(server.url, "opt"),
                             settings={"max_steps": 1, "candidates": 2, "patience": 0})
            client = LLMClient(concurrency=4, retry_base=0.01)
            result = optimize(task, client=client)
            again = run_sync(client.complete(ModelConfig("hosted_vllm/x", api_base=server.url), [
                {"role": "user", "content": "hi"}]))
        total = client.ledger.total()
        print("steps", result.steps_run, "retries", total.retries, "cost", total.cost_usd > 0)
        print("litellm imported", "litellm" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "steps 1 retries 2 cost True" in proc.stdout
    assert "litellm imported False" in proc.stdout
    assert "Unclosed" not in proc.stderr and "Error" not in proc.stderr, proc.stderr


def test_one_pool_per_event_loop_sized_to_concurrency():
    import asyncio

    with LoopbackServer(latency=0.1, max_seconds=60) as server:
        server.hold_until_in_flight(8)  # the first batch's requests wait until 8 are in flight at once
        client = LLMClient(concurrency=8)
        config = ModelConfig("openai/m", api_base=server.url, api_key=SECRET)

        async def batch() -> tuple[int, int]:
            await client.complete_many(config, [(msgs(f"q{i}"), 0) for i in range(32)])
            pool = await client._http.http._pool()
            return len(client._http.http._pools), pool.session.connector.limit

        assert run_sync(batch()) == (1, 8)
        assert len(client._http.http._pools) == 0  # closed with its loop
        assert asyncio.run(batch()) == (1, 8)  # a new loop gets a new pool
        assert server.held.is_set() and server.max_in_flight == 8


def test_proxy_from_the_environment_is_used(monkeypatch):
    with ScriptedServer([]) as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url.rsplit("/", 1)[0])
        config = ModelConfig("openai/m", api_base="http://llm.example.invalid/v1", api_key=SECRET)
        assert run_sync(LLMClient().complete(config, msgs("x"))).text == "fine"
        assert proxy.requests[0]["path"] == "http://llm.example.invalid/v1/chat/completions"
