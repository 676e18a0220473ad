"""A real redis-server for the tests: started on a free loopback port in a temporary directory, stopped after.

No mock: the tests talk to Debian's ``redis-server`` (``apt-get install redis-server``; ``.ci/run``
installs it). Without the binary the tests that need it skip, except under ``CI`` (the variable
set), where a missing Redis is a failure.

    with RedisServer(tmp_path) as server:          # or the ``redis_server`` fixture
        server.url                                  # redis://127.0.0.1:PORT/0
        server.kill()                               # kill -9, as a crash would
        server.start()                              # again, same port and data directory

The server persists every write at once (``appendonly yes``, ``appendfsync always``) so a killed
server comes back with everything it had acknowledged.

With ``acl=[...]`` (lines of a Redis ACL file, ``user NAME rules...``) the server starts with that
ACL file, plus an admin user of the fixture's own that :meth:`RedisServer.client` and the start-up
ping use, so a test can look at every key whatever the users it set up may do.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest

BINARY = "redis-server"


def binary() -> str | None:
    return shutil.which(BINARY) or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(p)), None
    )


def require_binary() -> str:
    """The redis-server path; skips the test without one, fails it under CI."""
    found = binary()
    if found is None:
        message = "redis-server is not installed (apt-get install redis-server; bash .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so a missing Redis is a failure", pytrace=False)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process bound to 127.0.0.1 with its data in `directory`."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        password: str | None = None,
        extra: Sequence[str] = (),
        acl: Sequence[str] = (),
    ) -> None:
        self.binary = require_binary()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.extra = list(extra)
        self.acl = list(acl)
        # with an ACL file: the fixture's own user, allowed everything
        self.admin: tuple[str, str] | None = ("opro-fixture-admin", secrets.token_hex(12)) if self.acl else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.admin is not None:
            cmd += ["--aclfile", str(self.acl_file())]
        return cmd + self.extra

    def acl_file(self) -> Path:
        """The ACL file the server starts with: the fixture's admin user, then the test's lines."""
        assert self.admin is not None
        path = self.directory / "users.acl"
        if not path.exists():  # a restarted server keeps what it has (ACL SAVE may have changed it)
            user, password = self.admin
            path.write_text("\n".join([f"user {user} on >{password} ~* &* +@all", *self.acl]) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.directory / "redis.log"
                raise RuntimeError(f"redis-server exited at start: {err} {log.read_text() if log.exists() else ''}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout:g}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.admin is not None:
                    sock.sendall(f"AUTH {self.admin[0]} {self.admin[1]}\r\n".encode())
                    sock.recv(64)
                elif self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self, **kwargs: object) -> object:
        import redis

        if self.admin is not None:
            user, password = self.admin
            return redis.Redis(host="127.0.0.1", port=self.port, username=user, password=password, **kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def user_url(self, user: str, password: str) -> str:
        """The URL an ACL user of this server connects with."""
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL, as `kill -9` would: no shutdown, no final save."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (skipped without the binary, failed under CI)."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


#: The README's two ACL users under distinctive names and passwords, so that a leak is found by
#: searching for them: (name, password).
TRUSTED_USER = ("gate-keeper-7q", "trusted-pw-5x81k")
UNTRUSTED_USER = ("branch-runner-3z", "untrusted-pw-9c27m")
USER_SECRETS = (*TRUSTED_USER, *UNTRUSTED_USER)


def acl_file_lines(trusted: tuple[str, str] = TRUSTED_USER, untrusted: tuple[str, str] = UNTRUSTED_USER) -> list[str]:
    """The README's ``ACL SETUSER`` lines (``redis_cache.ACL_SETUP``) as ACL file lines, with these users."""
    from pytest_opro.models.redis_cache import ACL_SETUP

    lines = []
    for line in ACL_SETUP:
        words = shlex.split(line)
        if words[:2] != ["ACL", "SETUSER"]:
            continue  # ACL SAVE: the file is already the saved form
        name, password = {"trusted": trusted, "untrusted": untrusted}.get(words[2], (words[2], ""))
        rules = [f">{password}" if rule.startswith(">") else rule for rule in words[3:]]
        lines.append(" ".join(["user", name, *rules]))
    return lines


@pytest.fixture
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with the README's ACL users (:data:`TRUSTED_USER`, :data:`UNTRUSTED_USER`) and
    its default user off."""
    with RedisServer(tmp_path_factory.mktemp("redis-acl"), acl=acl_file_lines()) as server:
        yield server
