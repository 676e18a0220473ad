"""ResponseCache: keys, modes, corruption recovery, concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import warnings

import pytest

from pytest_opro.models.cache import DB_NAME, ResponseCache

MESSAGES = [{"role": "user", "content": "Is 7 prime?"}]
VALUE = {"text": "yes", "prompt_tokens": 4, "completion_tokens": 1, "cost_usd": 0.0}


def test_key_is_stable_and_covers_what_changes_the_answer():
    base = ResponseCache.key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 5}, 0)
    assert base == ResponseCache.key("openai/gpt-4o-mini", MESSAGES, {"max_tokens": 5, "temperature": 0}, 0)
    assert len(base) == 64
    others = {
        ResponseCache.key("openai/gpt-4o", MESSAGES, {"temperature": 0, "max_tokens": 5}, 0),
        ResponseCache.key(
            "openai/gpt-4o-mini", [{"role": "user", "content": "Is 9 prime?"}], {"temperature": 0, "max_tokens": 5}, 0
        ),
        ResponseCache.key("openai/gpt-4o-mini", MESSAGES, {"temperature": 1, "max_tokens": 5}, 0),
        ResponseCache.key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 6}, 0),
        ResponseCache.key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 5, "seed": 1}, 0),
        ResponseCache.key("openai/gpt-4o-mini", MESSAGES, {"temperature": 0, "max_tokens": 5}, 1),
    }
    assert base not in others and len(others) == 6


def test_key_ignores_secrets_and_transport():
    plain = ResponseCache.key("m/x", MESSAGES, {"temperature": 0}, 0)
    noisy = ResponseCache.key(
        "m/x",
        MESSAGES,
        {"temperature": 0, "api_key": "sk-secret", "headers": {"a": "b"}, "extra_headers": {"c": "d"}, "timeout": 3},
        0,
    )
    assert plain == noisy


def test_key_handles_non_ascii():
    assert ResponseCache.key("m/x", [{"role": "user", "content": "Ünïcødé ✓ 日本"}], {}, 0) != ResponseCache.key(
        "m/x", [{"role": "user", "content": "Unicode"}], {}, 0
    )


def test_roundtrip_and_persistence(tmp_path):
    with ResponseCache(tmp_path) as cache:
        key = cache.key("m/x", MESSAGES, {}, 0)
        assert cache.get(key) is None
        cache.put(key, {**VALUE, "text": "héllo ✓"})
        assert cache.get(key)["text"] == "héllo ✓"
        stats = cache.stats()
        assert stats["entries"] == 1 and stats["size_bytes"] > 0
    with ResponseCache(tmp_path) as again:
        assert again.get(key)["text"] == "héllo ✓"
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_values_never_store_secrets(tmp_path):
    with ResponseCache(tmp_path) as cache:
        cache.put("k", {**VALUE, "api_key": "sk-very-secret"})
        assert "api_key" not in cache.get("k")
    assert b"sk-very-secret" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_read_only_mode_never_writes(tmp_path):
    with ResponseCache(tmp_path, mode="rw") as cache:
        cache.put("a", VALUE)
    with ResponseCache(tmp_path, mode="ro") as ro:
        assert ro.get("a") == VALUE
        ro.put("b", VALUE)
        assert ro.get("b") is None
    empty = tmp_path / "nothing"
    with ResponseCache(empty, mode="ro") as ro:
        assert ro.get("a") is None
        ro.put("a", VALUE)
    assert not empty.exists()


def test_off_mode_is_inert(tmp_path):
    with ResponseCache(tmp_path / "c", mode="off") as cache:
        cache.put("a", VALUE)
        assert cache.get("a") is None
    assert not (tmp_path / "c").exists()


def test_bad_mode_is_a_config_error(tmp_path):
    from pytest_opro.errors import ConfigError

    with pytest.raises(ConfigError, match="cache mode"):
        ResponseCache(tmp_path, mode="sometimes")  # type: ignore[arg-type]


def _corrupt(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / DB_NAME).write_bytes(b"this is not a database at all \x00\xff" * 100)


def test_corrupt_file_is_moved_aside_in_rw(tmp_path):
    _corrupt(tmp_path)
    with pytest.warns(RuntimeWarning, match="corrupt") as record:
        cache = ResponseCache(tmp_path)
        assert cache.get("a") is None
        cache.put("a", VALUE)
        assert cache.get("a") == VALUE
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert (tmp_path / (DB_NAME + ".corrupt")).exists()
    cache.close()
    with ResponseCache(tmp_path) as again:
        assert again.get("a") == VALUE


def test_corrupt_file_is_bypassed_in_ro(tmp_path):
    _corrupt(tmp_path)
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        with ResponseCache(tmp_path, mode="ro") as cache:
            assert cache.get("a") is None
            assert cache.get("b") is None
    assert (tmp_path / DB_NAME).read_bytes() == before


def _writer(directory: str, worker: int, count: int) -> None:
    with warnings.catch_warnings():
        # a cache that gives up under contention says so with this warning: make it fail the worker
        warnings.filterwarnings("error", "pytest-opro: response cache", RuntimeWarning)
        cache = ResponseCache(directory)
        for i in range(count):
            cache.put(
                f"w{worker}-{i}",
                {"text": f"{worker}:{i}", "prompt_tokens": i, "completion_tokens": 0, "cost_usd": None},
            )
            if i % 10 == 0:
                cache.get(f"w{(worker + 1) % 4}-{i}")
        cache.close()


def test_concurrent_processes_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn" if multiprocessing.get_start_method(True) == "spawn" else "fork")
    workers, count = 4, 150
    ResponseCache(tmp_path).close()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with ResponseCache(tmp_path, mode="ro") as cache:
        assert cache.stats()["entries"] == workers * count
        assert all(cache.get(f"w{w}-{i}")["text"] == f"{w}:{i}" for w in range(workers) for i in range(count))


def test_first_writer_wins(tmp_path):
    with ResponseCache(tmp_path) as cache:
        cache.put("k", {**VALUE, "text": "first"})
        cache.put("k", {**VALUE, "text": "second"})
        assert cache.get("k")["text"] == "first"
        assert cache.writes == 1
    with ResponseCache(tmp_path) as other:  # another process: still the first answer
        other.put("k", {**VALUE, "text": "third"})
        assert other.get("k")["text"] == "first"


def test_ttl_expires_entries_and_lets_them_be_rewritten(tmp_path, monkeypatch):
    import time as time_module

    now = [1_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    with ResponseCache(tmp_path, ttl=60) as cache:
        cache.put("k", {**VALUE, "text": "old"})
        now[0] += 30
        assert cache.get("k")["text"] == "old"
        cache.put("k", {**VALUE, "text": "not yet"})  # live: the first writer still wins
        assert cache.get("k")["text"] == "old"
        now[0] += 31
        assert cache.get("k") is None  # expired: a miss
        cache.put("k", {**VALUE, "text": "new"})
        assert cache.get("k")["text"] == "new"
    with ResponseCache(tmp_path) as no_ttl:  # without a TTL nothing expires
        assert no_ttl.get("k")["text"] == "new"


def test_bad_ttl_is_a_config_error(tmp_path):
    from pytest_opro.errors import ConfigError

    with pytest.raises(ConfigError, match="TTL"):
        ResponseCache(tmp_path, ttl=0)


def test_get_many_answers_in_order_with_one_query(tmp_path):
    with ResponseCache(tmp_path) as cache:
        for i in range(3):
            cache.put(f"k{i}", {**VALUE, "text": str(i)})
        got = cache.get_many(["k2", "missing", "k0", "k2"])
        assert [g and g["text"] for g in got] == ["2", None, "0", "2"]
        assert (cache.hits, cache.misses) == (3, 1)
        many = [f"x{i}" for i in range(1200)]  # more keys than one IN (...) takes
        assert cache.get_many(many) == [None] * 1200


def test_both_backends_implement_the_interface(tmp_path):
    from pytest_opro.models.cache import Cache, cache_key
    from pytest_opro.models.redis_cache import RedisCache

    with ResponseCache(tmp_path) as cache:
        assert isinstance(cache, Cache)
    assert ResponseCache.key is cache_key or ResponseCache.key("m", MESSAGES, {}, 0) == cache_key("m", MESSAGES, {}, 0)
    assert RedisCache.key("m", MESSAGES, {"temperature": 0}, 3) == ResponseCache.key(
        "m", MESSAGES, {"temperature": 0}, 3
    )
    off = RedisCache("redis://127.0.0.1:1/0", mode="off")  # off: never connects
    assert isinstance(off, Cache) and off.get("k") is None
    off.put("k", VALUE)


def test_value_codec_compresses_large_values_only():
    from pytest_opro.models.cache import COMPRESS_OVER, decode_value, encode_value

    small = encode_value(VALUE)
    assert small[:1] == b"j" and decode_value(small) == VALUE
    big_value = {**VALUE, "text": "word " * 2000}
    big = encode_value(big_value)
    assert big[:1] == b"z" and len(big) < len(big_value["text"]) // 10 and decode_value(big) == big_value
    assert decode_value(encode_value({"text": "x" * (COMPRESS_OVER + 10), "api_key": "sk-no"})) == {
        "text": "x" * (COMPRESS_OVER + 10)
    }
    assert decode_value(b"zgarbage") is None and decode_value(b"j[1, 2]") is None
    assert decode_value('{"text": "legacy"}') == {"text": "legacy"}  # SQLite's text rows


def test_open_cache_picks_the_backend(tmp_path):
    from pytest_opro.errors import ConfigError
    from pytest_opro.models.cache import open_cache

    assert isinstance(open_cache(tmp_path, "rw"), ResponseCache)
    assert open_cache(tmp_path, "off") is None and open_cache(None, "rw") is None
    with pytest.raises(ConfigError, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0 unreachable") as info:
        open_cache("redis://:hunter2secret@127.0.0.1:1/0", "rw")
    assert "hunter2secret" not in str(info.value)
