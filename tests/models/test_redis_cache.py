"""The Redis response cache against a real redis-server: the SQLite cache's semantics, shared by many
processes, a password that never shows, an unreachable server at start and a server lost mid-run."""

from __future__ import annotations

import multiprocessing
import warnings

import pytest

from pytest_opro.errors import ConfigError
from pytest_opro.models.cache import ResponseCache
from pytest_opro.models.redis_cache import KEY_PREFIX, PASSWORD_ENV, RedisCache, redact_url
from tests.support.redis_server import RedisServer, free_port

MESSAGES = [{"role": "user", "content": "Is 7 prime? ✓ 日本"}]
VALUE = {"text": "yes", "prompt_tokens": 4, "completion_tokens": 1, "cost_usd": 0.0}


def keys_in(server: RedisServer) -> list[bytes]:
    return list(server.client().scan_iter(match=KEY_PREFIX + "*", count=1000))


def test_roundtrip_with_the_sqlite_key(redis_server, tmp_path):
    with RedisCache(redis_server.url) as cache:
        key = cache.key("openai/m", MESSAGES, {"temperature": 0}, 2)
        assert key == ResponseCache.key("openai/m", MESSAGES, {"temperature": 0}, 2)
        assert cache.get(key) is None
        cache.put(key, {**VALUE, "text": "héllo ✓"})
        assert cache.get(key)["text"] == "héllo ✓"
        assert cache.stats()["entries"] == 1
    with RedisCache(redis_server.url) as again:  # another process, later
        assert again.get(key)["text"] == "héllo ✓"
    assert keys_in(redis_server) == [(KEY_PREFIX + key).encode()]


def test_first_writer_wins(redis_server):
    first, second = RedisCache(redis_server.url), RedisCache(redis_server.url)
    first.put("k", {**VALUE, "text": "first"})
    second.put("k", {**VALUE, "text": "second"})
    assert first.get("k")["text"] == second.get("k")["text"] == "first"
    assert (first.writes, second.writes, second.refused_writes) == (1, 0, 1)


def test_read_only_and_off_modes(redis_server):
    with RedisCache(redis_server.url) as rw:
        rw.put("a", VALUE)
    with RedisCache(redis_server.url, mode="ro") as ro:
        assert ro.get("a") == VALUE
        ro.put("b", VALUE)
        assert ro.get("b") is None
    off = RedisCache(redis_server.url, mode="off")
    off.put("c", VALUE)
    assert off.get("a") is None
    assert len(keys_in(redis_server)) == 1


def test_values_are_compressed_when_large_and_never_hold_secrets(redis_server):
    with RedisCache(redis_server.url) as cache:
        cache.put("small", {**VALUE, "api_key": "sk-very-secret"})
        cache.put("large", {**VALUE, "text": "a long answer " * 500})
        raw = redis_server.client()
        small, large = raw.get(KEY_PREFIX + "small"), raw.get(KEY_PREFIX + "large")
        assert small.startswith(b"j") and b"sk-very-secret" not in small and "api_key" not in cache.get("small")
        assert large.startswith(b"z") and len(large) < 1000 and cache.get("large")["text"].count("long") == 500


def test_ttl(redis_server):
    import time

    with RedisCache(redis_server.url, ttl=1) as cache:
        cache.put("k", VALUE)
        assert 0 < redis_server.client().ttl(KEY_PREFIX + "k") <= 1
        assert cache.get("k") == VALUE
        time.sleep(1.3)
        assert cache.get("k") is None
        cache.put("k", {**VALUE, "text": "again"})
        assert cache.get("k")["text"] == "again"


def _writer(url: str, worker: int, count: int, out: "multiprocessing.Queue") -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = RedisCache(url)
        for i in range(count):
            # half the keys are shared by every writer, half are its own
            key = f"shared-{i}" if i % 2 == 0 else f"w{worker}-{i}"
            cache.put(key, {"text": f"{worker}:{i}", "prompt_tokens": i, "completion_tokens": 0, "cost_usd": None})
            if i % 10 == 0:
                cache.get(f"shared-{i}")
        out.put((worker, cache.writes, cache.refused_writes))
        cache.close()


def test_concurrent_processes_lose_and_duplicate_nothing(redis_server):
    ctx = multiprocessing.get_context("spawn")
    workers, count = 4, 150
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(redis_server.url, w, count, out)) for w in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    shared, own = count // 2, workers * (count // 2)
    assert len(keys_in(redis_server)) == shared + own
    # every key was stored exactly once: one write won per key, the others found it taken
    assert sum(r[1] for r in results) == shared + own
    assert sum(r[2] for r in results) == shared * (workers - 1)
    with RedisCache(redis_server.url, mode="ro") as cache:
        assert all(cache.get(f"w{w}-{i}")["text"] == f"{w}:{i}" for w in range(workers) for i in range(1, count, 2))
        assert all(cache.get(f"shared-{i}")["text"].endswith(f":{i}") for i in range(0, count, 2))


def test_unreachable_at_start_is_one_error_naming_the_url_without_password():
    port = free_port()
    with pytest.raises(ConfigError) as info:
        RedisCache(f"redis://:s3cret-pw@127.0.0.1:{port}/2")
    text = str(info.value)
    assert f"redis://:***@127.0.0.1:{port}/2 unreachable" in text and "s3cret-pw" not in text
    assert "--opro-cache=off" in text and "\n" not in text


def test_password_from_the_environment(tmp_path, monkeypatch):
    with RedisServer(tmp_path, password="env-pass-1234") as server:
        with pytest.raises(ConfigError) as info:  # no password: refused, and said so without secrets
            RedisCache(server.url)
        assert "unreachable" in str(info.value)
        monkeypatch.setenv(PASSWORD_ENV, "env-pass-1234")
        with RedisCache(server.url) as cache:
            cache.put("k", VALUE)
            assert cache.get("k") == VALUE
            assert "env-pass-1234" not in repr(cache) + str(cache.stats())
        monkeypatch.setenv(PASSWORD_ENV, "wrong-pass-999")
        with pytest.raises(ConfigError) as info:
            RedisCache(server.url)
        assert "wrong-pass-999" not in str(info.value)
        # a password in the URL wins over the environment, and is never shown
        url = f"redis://:env-pass-1234@127.0.0.1:{server.port}/0"
        with RedisCache(url) as cache:
            assert cache.get("k") == VALUE and "env-pass-1234" not in cache.location


def test_tls_urls_are_accepted_and_redacted():
    from pytest_opro.models.redis_cache import connect

    client = connect("rediss://:tls-pass-777@cache.example:6380/1")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert redact_url("rediss://:tls-pass-777@cache.example:6380/1") == "rediss://:***@cache.example:6380/1"
    assert redact_url("redis://h:1/0?password=p4ss&db=1") == "redis://h:1/0?password=***&db=1"


def test_lost_mid_run_warns_once_and_goes_on_uncached(redis_server):
    cache = RedisCache(redis_server.url)
    cache.put("before", VALUE)
    redis_server.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.get("before") is None
        assert cache.get_many(["before", "x"]) == [None, None]
        cache.put("after", VALUE)
        assert cache.get("after") is None
    lost = [w for w in caught if "lost" in str(w.message)]
    assert len(lost) == 1 and "continuing without the cache" in str(lost[0].message)
    redis_server.start()  # what was written before the loss is still there (append-only file)
    with RedisCache(redis_server.url) as again:
        assert again.get("before") == VALUE and again.get("after") is None


def test_plugin_reports_an_unreachable_cache_url_at_start(pytester, inline_ready):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    port = free_port()
    result = pytester.runpytest_inprocess(f"--opro-cache-url=redis://:plug-secret-9@127.0.0.1:{port}/0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"redis://:***@127.0.0.1:{port}/0 unreachable" in err and "plug-secret-9" not in err + result.stdout.str()
    bad = pytester.runpytest_inprocess("--opro-cache-url=http://user:bad-secret-1@host/0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "must be a Redis URL" in bad.stderr.str() and "bad-secret-1" not in bad.stderr.str()
    off = pytester.runpytest_inprocess(f"--opro-cache-url=redis://127.0.0.1:{port}/0", "--opro-cache=off")
    assert off.ret == 0  # the cache is off: Redis is not needed
