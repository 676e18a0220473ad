"""Trust scopes of the Redis cache against a real redis-server started with the README's ACL users:
the key layout, the read order, hits counted per scope, a write Redis refuses, scope names that
cannot leave their prefix, and whole pytest runs in which a branch tries to poison the default
branch's gate."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from pytest_opro.errors import ConfigError
from pytest_opro.models.cache_format import SCOPE_FIELD, cache_key
from pytest_opro.models.redis_cache import ACL_SETUP, KEY_PREFIX, PASSWORD_ENV, USERNAME_ENV, RedisCache
from tests.support.loop_brain import WRONG, run_pytest, write_project
from tests.support.loopback import LoopbackServer
from tests.support.redis_server import TRUSTED_USER, UNTRUSTED_USER, USER_SECRETS, RedisServer

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Is 7 prime?"}]
VALUE = {"text": "yes", "prompt_tokens": 4, "completion_tokens": 1, "cost_usd": 0.0}


def trusted_url(server: RedisServer) -> str:
    return server.user_url(*TRUSTED_USER)


def untrusted_url(server: RedisServer) -> str:
    return server.user_url(*UNTRUSTED_USER)


def redis_keys(server: RedisServer) -> list[str]:
    return sorted(k.decode() for k in server.client().scan_iter(match=KEY_PREFIX + "*", count=1000))


def test_the_readme_shows_the_acl_setup_and_the_default_user_is_off(acl_server):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for line in ACL_SETUP:
        assert line in readme
    import redis

    with pytest.raises(redis.exceptions.AuthenticationError):  # no anonymous access at all
        redis.Redis(host="127.0.0.1", port=acl_server.port).ping()


def test_key_layout_unscoped_as_before_and_scoped_under_a_prefix(redis_server):
    sha = cache_key("openai/m", MESSAGES, {"temperature": 0}, 0)
    with RedisCache(redis_server.url) as plain:
        plain.put(sha, VALUE)
    with RedisCache(redis_server.url, scope="main") as main:
        main.put(sha, VALUE)
    with RedisCache(redis_server.url, scope="pr-42") as branch:
        assert branch.key("openai/m", MESSAGES, {"temperature": 0}, 0) == sha  # the content hash is unchanged
        branch.put(sha, VALUE)
    assert redis_keys(redis_server) == sorted(
        [
            f"opro:resp:v1:{sha}",  # no scope: the layout of every earlier version
            f"opro:resp:v1:trusted:main:{sha}",
            f"opro:resp:v1:untrusted:pr-42:{sha}",
        ]
    )


def test_a_branch_reads_its_own_scope_then_the_trusted_one_and_counts_hits_per_scope(redis_server):
    with RedisCache(redis_server.url, scope="main") as main:
        main.put("a", {**VALUE, "text": "main-a"})
        main.put("b", {**VALUE, "text": "main-b"})
    with RedisCache(redis_server.url, scope="pr-42", trust=["main"]) as branch:
        branch.put("b", {**VALUE, "text": "pr-b"})
        branch.put("c", {**VALUE, "text": "pr-c"})
        got = branch.get_many(["a", "b", "c", "d"])
        assert [g and g["text"] for g in got] == ["main-a", "pr-b", "pr-c", None]  # its own scope first
        assert [g and g[SCOPE_FIELD] for g in got] == ["main", "pr-42", "pr-42", None]
        assert branch.hits_by_scope == {"main": 1, "pr-42": 2} and (branch.hits, branch.misses) == (3, 1)
    with RedisCache(redis_server.url, scope="main") as main:  # a default-branch run trusts only itself
        assert main.get("c") is None and main.get("a")[SCOPE_FIELD] == "main"
    with RedisCache(redis_server.url) as plain:  # an unscoped run sees none of the scoped entries
        assert plain.get_many(["a", "b", "c"]) == [None, None, None]
    with RedisCache(redis_server.url, scope="pr-43", trust="none") as alone:
        assert alone.get("a") is None


def test_an_untrusted_user_cannot_write_the_default_branch_scope(acl_server):
    with RedisCache(trusted_url(acl_server), scope="main") as gate:
        gate.put("honest", {**VALUE, "text": "honest"})
        assert gate.writes == 1
    forged = RedisCache(untrusted_url(acl_server), scope="main")  # a branch claiming to be main
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key in ("poison-1", "poison-2", "honest"):
            forged.put(key, {**VALUE, "text": "wrong"})
        assert forged.get("poison-1") is None  # nothing was stored, nowhere else either
    refused = [str(w.message) for w in caught]
    assert len(refused) == 1, refused  # one warning, however many writes were refused
    assert "refused to store answers in cache scope 'main'" in refused[0] and "NOPERM" in refused[0]
    assert forged.denied_writes == 3 and forged.writes == 0 and forged.available  # it goes on
    assert redis_keys(acl_server) == ["opro:resp:v1:trusted:main:honest"]  # no fallback to another scope
    forged.close()
    with RedisCache(untrusted_url(acl_server), scope="pr-42") as branch:  # its own scope: allowed
        branch.put("mine", VALUE)
        assert branch.writes == 1 and branch.get("honest")["text"] == "honest"
        assert branch.hits_by_scope == {"main": 1}
    with RedisCache(trusted_url(acl_server), scope="pr-42", trust=["main"]) as wrong_user:
        # the trusted user may not even read a branch's entries: Redis keeps main's runs to main
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert wrong_user.get("mine") is None
        assert len(caught) == 1 and "failed" in str(caught[0].message)


@pytest.mark.parametrize(
    "name",
    ["../main", "main/../x", "*", "ma*n", "a?b", "[main]", "{main}", "ma{in", "main\n", "a\nb", "a b", "a:b", "", "-x"]
    + ["x" * 65, "é", "\x00"],
)
def test_scope_names_cannot_escape_their_prefix(name):
    with pytest.raises(ConfigError) as info:
        RedisCache("redis://127.0.0.1:1/0", scope=name)
    text = str(info.value)
    assert "is not a valid scope name" in text and "letters, digits" in text and "\n" not in text
    assert len(text) < 400  # a very long name is shown cut short
    with pytest.raises(ConfigError):
        RedisCache("redis://127.0.0.1:1/0", scope="pr-1", trust=["main", name])


def test_the_options_reject_a_bad_scope_with_a_usage_error(pytester):
    from pytest_opro.plugin.options import SPECS

    parse = {spec.name: spec.parse for spec in SPECS}
    assert parse["cache-scope"]("pr-42") == "pr-42" and parse["cache-trust"]("main, release") == ("main", "release")
    assert parse["cache-trust"]("none") == ()
    for name, value in (("cache-scope", "../main"), ("cache-scope", "a\nb"), ("cache-trust", "main,{x}")):
        with pytest.raises(ValueError, match="scope name"):
            parse[name](value)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--opro-cache-url=redis://127.0.0.1:1/0", "--opro-cache-scope=" + "y" * 5000, "-p", "no:randomly"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--opro-cache-scope='yyyy" in err and "(5000 characters)" in err and "must be a scope name" in err
    assert "y" * 200 not in err


def test_user_names_and_passwords_never_show(acl_server, monkeypatch):
    url = untrusted_url(acl_server)
    with RedisCache(url, scope="main") as cache:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cache.put("k", VALUE)
        shown = repr(cache) + str(cache.stats()) + cache.location + "".join(str(w.message) for w in caught)
    assert caught and not any(secret in shown for secret in USER_SECRETS), shown
    # from the environment: the URL names neither
    monkeypatch.setenv(USERNAME_ENV, TRUSTED_USER[0])
    monkeypatch.setenv(PASSWORD_ENV, TRUSTED_USER[1])
    with RedisCache(acl_server.url, scope="main") as cache:
        cache.put("k", VALUE)
        assert cache.writes == 1
        shown = repr(cache) + str(cache.stats())
    assert not any(secret in shown for secret in USER_SECRETS)
    monkeypatch.setenv(PASSWORD_ENV, "a-wrong-password-4242")
    with pytest.raises(ConfigError) as info:
        RedisCache(acl_server.url, scope="main")
    assert "unreachable" in str(info.value)
    assert not any(secret in str(info.value) for secret in (*USER_SECRETS, "a-wrong-password-4242"))


# -- whole pytest runs ------------------------------------------------------------------------------
def run(project: Path, provider: LoopbackServer, *args: str, env: dict[str, str] | None = None):
    return run_pytest(project, provider.url, *args, "-W", "always::RuntimeWarning", extra_env=env)


def test_a_branch_cannot_poison_the_default_branch_gate(tmp_path, acl_server):
    project = tmp_path / "project"
    brain = write_project(project, settings={"max_steps": 1, "candidates": 2, "patience": 0})
    with LoopbackServer(answer=brain) as honest:
        made = run(project, honest, "--opro-optimize", "--opro-cache=off")
        assert made.returncode == 0, made.stdout + made.stderr
    artifact = (project / "__opro__" / "alpha.yaml").read_text(encoding="utf-8")
    url = acl_server.url  # credentials come from the URL (branches) or the environment (the default branch)
    outputs: list[str] = []

    # 1. a branch whose provider answers everything wrongly claims the default branch's scope
    with LoopbackServer(answer=lambda messages: WRONG) as liar:
        attack = run(project, liar, f"--opro-cache-url={untrusted_url(acl_server)}", "--opro-cache-scope=main")
        outputs.append(attack.stdout + attack.stderr)
        assert attack.returncode == 1 and "1 failed" in attack.stdout, outputs[-1]  # its own gate fails
        assert outputs[-1].count("refused to store answers in cache scope 'main'") == 1, outputs[-1]
        test_calls = liar.requests
    assert test_calls > 0
    assert not [k for k in redis_keys(acl_server) if ":trusted:" in k]  # Redis stored none of it

    # 2. the default branch's gate, trusted credentials from the environment: it makes its own calls
    trusted_env = {USERNAME_ENV: TRUSTED_USER[0], PASSWORD_ENV: TRUSTED_USER[1]}
    with LoopbackServer(answer=brain) as provider:
        gate = run(project, provider, f"--opro-cache-url={url}", "--opro-cache-scope=main", env=trusted_env)
        outputs.append(gate.stdout + gate.stderr)
        assert gate.returncode == 0 and "1 passed" in gate.stdout, outputs[-1]
        assert provider.requests == test_calls
    stored = [k for k in redis_keys(acl_server) if k.startswith("opro:resp:v1:trusted:main:")]
    assert len(stored) == test_calls

    # 3. a pull request replays the default branch's answers: zero calls (a call would get a wrong answer)
    report = tmp_path / "pr.json"
    with LoopbackServer(answer=lambda messages: WRONG) as liar:
        branch = run(
            project,
            liar,
            f"--opro-cache-url={untrusted_url(acl_server)}",
            "--opro-cache-scope=pr-8",
            f"--opro-report={report}",
            "-n",
            "2",  # the hits per scope travel from the xdist worker to the report
        )
        outputs.append(branch.stdout + branch.stderr)
        assert branch.returncode == 0 and "1 passed" in branch.stdout, outputs[-1]
        assert liar.requests == 0
    assert f"opro: cache hits {test_calls} (main {test_calls})" in branch.stdout
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["tasks"][0]["usage"]["cache_hits_by_scope"] == {"main": test_calls}
    assert data["summary"]["cache_hits_by_scope"] == {"main": test_calls}

    # user names and passwords reached no output, report or artifact
    written = "".join(outputs) + report.read_text(encoding="utf-8") + artifact
    written += (project / "__opro__" / "alpha.yaml").read_text(encoding="utf-8")
    assert not any(secret in written for secret in USER_SECRETS)
