"""A loopback OpenAI-compatible chat server for benchmarks and fault tests.

It serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1 only, answers
deterministically, fills the ``usage`` fields, and can inject faults (rate limits, 5xx, timeouts,
dropped connections, malformed or empty bodies) on a seeded schedule. It stops by itself after
``max_seconds`` or ``max_requests``, so a forgotten server never outlives its test.

``hold(n, body)`` pauses the requests it is true for (before any reply) until ``release()``, so a
test can act on a client at a known point of its run: ``held`` is set when the first one arrives.
``hold_until_in_flight(k)`` holds requests until k are in flight at once.

    with LoopbackServer(latency=0.1, faults=FaultPlan(rate=0.2, seed=1)) as server:
        litellm.completion(model="openai/m", api_base=server.url, api_key="dummy", messages=...)

Run standalone with ``python -m tests.support.loopback --latency 0.1 --fault-rate 0.2``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Sequence

FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "malformed", "empty")


@dataclass
class FaultPlan:
    """Which requests fail and how.

    ``on_requests`` maps a 1-based request number to a fault kind and always wins. Other requests
    fail with probability ``rate``, the kind drawn from ``kinds``; the draw depends only on
    ``seed`` and the request number, so a plan replays identically.
    """

    rate: float = 0.0
    kinds: Sequence[str] = FAULT_KINDS
    seed: int = 0
    on_requests: Mapping[int, str] = field(default_factory=dict)
    retry_after: float | None = None  # Retry-After on 429; None: 0 or 1 drawn from the seed

    def __post_init__(self) -> None:
        for kind in list(self.kinds) + list(self.on_requests.values()):
            if kind not in FAULT_KINDS and kind != "ok":
                raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")

    def fault_for(self, n: int) -> str | None:
        if n in self.on_requests:
            kind = self.on_requests[n]
            return None if kind == "ok" else kind
        if self.rate <= 0 or not self.kinds:
            return None
        rng = random.Random(f"{self.seed}:{n}")
        if rng.random() < self.rate:
            return rng.choice(list(self.kinds))
        return None

    def retry_after_for(self, n: int) -> float:
        if self.retry_after is not None:
            return self.retry_after
        return float(random.Random(f"ra:{self.seed}:{n}").randint(0, 1))


def default_answer(messages: list[dict]) -> str:
    """A deterministic reply: echoes a short digest of the last user message."""
    last = ""
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            last = content if isinstance(content, str) else json.dumps(content, sort_keys=True)
    digest = hashlib.sha256(last.encode("utf-8")).hexdigest()[:8]
    return f"answer-{digest}"


def _count_tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    owner: "LoopbackServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux), which would add to every response's latency.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr access log
        pass

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self._send_raw(status, body, headers)

    def _send_raw(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": "loopback", "object": "model", "created": 0, "owned_by": "loopback"}],
                },
            )
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        n, kind = owner._admit(body)
        if n is None:
            self.close_connection = True
            self._send_json(503, {"error": {"message": "loopback server is shutting down", "type": "server_error"}})
            return
        try:
            owner._hold(n, body)
            owner._sleep(owner._latency())
            messages = body.get("messages") or []
            model = body.get("model", "loopback")
            if kind == "429":
                self._send_json(
                    429,
                    {
                        "error": {
                            "message": "rate limited (loopback)",
                            "type": "rate_limit_error",
                            "code": "rate_limit_exceeded",
                        }
                    },
                    {"Retry-After": f"{owner._retry_after(n):g}"},
                )
            elif kind in ("500", "503"):
                self._send_json(
                    int(kind), {"error": {"message": f"injected {kind} (loopback)", "type": "server_error"}}
                )
            elif kind == "timeout":
                owner._sleep(owner.timeout_sleep)
                self.close_connection = True
            elif kind == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
            elif kind == "malformed":
                self._send_raw(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ')
            else:
                text = "" if kind == "empty" else owner.answer(messages)
                prompt_tokens = sum(_count_tokens(str(m.get("content") or "")) for m in messages)
                completion_tokens = _count_tokens(text)
                self._send_json(
                    200,
                    {
                        "id": f"chatcmpl-loopback-{n}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )
        finally:  # also when the client went away mid-reply (BrokenPipeError)
            owner._done(n)


class LoopbackServer:
    """Context manager running the loopback server in a background thread.

    ``url`` is the OpenAI ``api_base`` ("http://127.0.0.1:PORT/v1"); ``requests`` counts chat
    requests received, ``fault_counts`` the faults served by kind, ``bodies`` keeps the last
    request bodies (bounded) for inspection, ``models`` counts requests per model name.
    ``rate_limit`` (requests per second, with a bucket of ``rate_burst``) makes it a rate-limited
    provider: requests beyond the limit get a 429 with the Retry-After of the next free token, and
    ``rate_limited`` counts them.
    """

    def __init__(
        self,
        answer: Callable[[list[dict]], str] | None = None,
        latency: float | Callable[[], float] = 0.0,
        faults: FaultPlan | None = None,
        max_requests: int | None = None,
        max_seconds: float = 600.0,
        timeout_sleep: float = 5.0,
        keep_bodies: int = 1000,
        hold: Callable[[int, dict], bool] | None = None,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
    ) -> None:
        self.answer = answer or default_answer
        self.latency = latency
        self.faults = faults or FaultPlan()
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout_sleep = timeout_sleep
        self.requests = 0
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fault_counts: collections.Counter[str] = collections.Counter()
        # A provider's rate limit: a token bucket of `rate_burst` requests refilled at `rate_limit` per
        # second, shared by every client; a request finding it empty gets a 429 (counted in `rate_limited`).
        self.rate_limit = rate_limit
        self.rate_burst = float(rate_burst) if rate_burst is not None else max(1.0, (rate_limit or 0) / 10)
        self._tokens = self.rate_burst
        self._refilled = time.monotonic()
        self.rate_limited = 0
        self.models: collections.Counter[str] = collections.Counter()  # requests per model name in the body
        self.bodies: collections.deque[dict] = collections.deque(maxlen=keep_bodies)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.hold = hold
        self.held = threading.Event()  # set when the first request is held
        self._released = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LoopbackServer":
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-llm", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.max_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent; safe from any thread, including handler threads)."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
        self._released.set()
        if self._timer is not None:
            self._timer.cancel()
        httpd = self._httpd
        if httpd is None:
            return
        if self._thread is not None and threading.current_thread() is not self._thread:
            stopper = threading.Thread(target=httpd.shutdown, daemon=True)
            stopper.start()
            stopper.join(5)
        httpd.server_close()
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def hold_until_in_flight(self, count: int) -> None:
        """Hold requests until `count` of them are in flight at once, then let all through.

        Shows that a client overlaps `count` calls however slowly a loaded machine sends them; a
        client that never does waits until the server stops (``max_seconds``).
        """

        def hold(n: int, body: dict) -> bool:
            if self.in_flight >= count:
                self.release()
                return False
            return True

        self.hold = hold

    def release(self) -> None:
        """Let the held requests (and all later ones) through; idempotent."""
        self._released.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------------
    def _admit(self, body: dict) -> tuple[int | None, str | None]:
        with self._lock:
            if self._stop.is_set() or (self.max_requests is not None and self.requests >= self.max_requests):
                return None, None
            self.requests += 1
            n = self.requests
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.bodies.append(body)
            kind = self.faults.fault_for(n)
            self.models[str(body.get("model"))] += 1
            if kind is None and self.rate_limit:
                now = time.monotonic()
                self._tokens = min(self.rate_burst, self._tokens + (now - self._refilled) * self.rate_limit)
                self._refilled = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                else:
                    kind = "429"
                    self.rate_limited += 1
            if kind:
                self.fault_counts[kind] += 1
            limit_reached = self.max_requests is not None and self.requests >= self.max_requests
        if limit_reached:
            # Let in-flight requests finish, then stop.
            timer = threading.Timer(max(self.timeout_sleep, 1.0), self.stop)
            timer.daemon = True
            timer.start()
        return n, kind

    def _hold(self, n: int, body: dict) -> None:
        if self.hold is None or self._released.is_set() or not self.hold(n, body):
            return
        self.held.set()
        self._released.wait()

    def _retry_after(self, n: int) -> float:
        if self.rate_limit and self.faults.fault_for(n) is None:
            return round(max(0.0, 1.0 - self._tokens) / self.rate_limit, 3)  # until the bucket holds a token
        return self.faults.retry_after_for(n)

    def _done(self, n: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.completed += 1

    def _latency(self) -> float:
        value = self.latency() if callable(self.latency) else self.latency
        return max(0.0, float(value))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback OpenAI-compatible chat server (127.0.0.1 only).")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default=",".join(FAULT_KINDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    plan = FaultPlan(rate=args.fault_rate, kinds=[k for k in args.fault_kinds.split(",") if k], seed=args.seed)
    server = LoopbackServer(
        latency=args.latency, faults=plan, max_requests=args.max_requests, max_seconds=args.max_seconds
    )
    with server:
        print(f"serving {server.url} (stops after {args.max_seconds:g}s)", flush=True)
        try:
            while not server.stopped:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        print(f"served {server.requests} requests; faults: {dict(server.fault_counts)}", flush=True)


if __name__ == "__main__":
    main()
