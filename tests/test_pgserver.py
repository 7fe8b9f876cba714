"""The throwaway PostgreSQL cluster of tests/pgserver.py: it starts, psycopg connects, fresh
databases are independent, it listens on 127.0.0.1 only, and its folder goes away."""

from __future__ import annotations

import errno
import os
import pwd
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import missing
from pgserver import (
    PostgresServer,
    PostgresStartError,
    find_bin_dir,
    reap_orphans,
    running_postgres,
    wait_until,
)

pytestmark = pytest.mark.real_clock  # starts PostgreSQL, which a faked clock would stall


@pytest.fixture
def bin_dir() -> Path:
    found = find_bin_dir()
    if found is None:
        missing("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
    assert found is not None
    return found


@pytest.fixture
def made_folders(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The temporary folders running_postgres makes, to check they are gone afterwards."""
    made: list[Path] = []
    real = tempfile.mkdtemp

    def recording(*args: str, **kwargs: str) -> str:
        path = real(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr("pgserver.tempfile.mkdtemp", recording)
    yield made


def _refused(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.socket(family)
    except OSError:
        return True  # no IPv6 here: nothing can listen on it either
    with probe:
        probe.settimeout(10)
        try:
            probe.connect((host, port))
        except OSError as exc:
            return exc.errno in (errno.ECONNREFUSED, errno.EADDRNOTAVAIL, errno.ENETUNREACH)
        return False


def test_the_server_starts_and_psycopg_connects(postgres_server: PostgresServer) -> None:
    assert postgres_server.url == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    with psycopg.connect(postgres_server.url) as conn:
        user, version, encoding, collate = conn.execute(
            "SELECT current_user, current_setting('server_version_num')::int,"
            " pg_encoding_to_char(encoding), datcollate FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert user == "postgres"
    assert version >= 150000
    assert (encoding, collate) == ("UTF8", "C")


def test_fresh_databases_are_independent(postgres_server: PostgresServer) -> None:
    first = postgres_server.new_database("pgserver_first")
    second = postgres_server.new_database("pgserver_second")
    assert first.endswith("/pgserver_first")
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE readers (email TEXT)")
        conn.execute("INSERT INTO readers VALUES ('a@example.com')")
    with psycopg.connect(first) as conn:
        assert conn.execute("SELECT email FROM readers").fetchall() == [("a@example.com",)]
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT to_regclass('readers')").fetchone() == (None,)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        postgres_server.new_database("pgserver_first")
    with pytest.raises(ValueError, match="plain database name"):
        postgres_server.new_database('x"; DROP DATABASE postgres; --')


def test_it_listens_on_127_0_0_1_only(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        listen, sockets, address = conn.execute(
            "SELECT current_setting('listen_addresses'),"
            " current_setting('unix_socket_directories'), host(inet_server_addr())"
        ).fetchone()
    assert (listen, address) == ("127.0.0.1", "127.0.0.1")
    assert Path(sockets) == postgres_server.socket_dir
    assert (postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}").is_socket()
    # All of 127/8 is this machine: a server bound to any address would answer on 127.0.0.2.
    assert _refused("127.0.0.2", postgres_server.port)
    assert _refused("::1", postgres_server.port)


def test_as_root_the_cluster_belongs_to_nobody(postgres_server: PostgresServer) -> None:
    owner = postgres_server.socket_dir.stat().st_uid
    assert owner == (pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid())


def test_the_folder_is_removed_after_a_stop(bin_dir: Path, made_folders: list[Path]) -> None:
    with running_postgres(bin_dir) as server:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert made_folders == [server.socket_dir]
        assert server.socket_dir.is_dir()
    assert not server.socket_dir.exists()
    assert _refused("127.0.0.1", server.port)


def test_a_start_that_fails_says_why_and_leaves_nothing(
    bin_dir: Path, made_folders: list[Path]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(PostgresStartError, match="Address already in use"),
            running_postgres(bin_dir, port=port),
        ):
            pytest.fail("started on a port that was taken")
    assert len(made_folders) == 1
    assert not made_folders[0].exists()


def test_a_cluster_whose_maker_was_killed_is_stopped_by_the_next_session(
    bin_dir: Path, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A test process killed before it could stop its cluster (a libfaketime crash) leaves
    the server running; `reap_orphans` (run before every new cluster) stops and removes it, and
    leaves a live maker's cluster alone."""
    import signal
    import subprocess
    import sys

    said = tmp_path / "started"
    code = (
        "import pathlib, sys, time\n"
        "from pgserver import find_bin_dir, running_postgres\n"
        "with running_postgres(find_bin_dir()) as server:\n"
        f"    pathlib.Path({str(said)!r}).write_text(f'{{server.socket_dir}} {{server.port}}')\n"
        "    time.sleep(600)\n"
    )
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": str(tests)}
    maker = subprocess.Popen([sys.executable, "-c", code], cwd=tests, env=env)
    try:
        wait_until(said.exists, time.monotonic() + 60, "the maker's cluster")
        folder_text, port_text = said.read_text().split()
        folder, port = Path(folder_text), int(port_text)
        assert not _refused("127.0.0.1", port)
    finally:
        maker.send_signal(signal.SIGKILL)
        maker.wait(timeout=30)
    assert folder.exists()  # nobody stopped it
    reaped = reap_orphans(bin_dir, folder.parent)
    assert folder in reaped and not folder.exists()
    wait_until(lambda: _refused("127.0.0.1", port), time.monotonic() + 30, "the orphan to stop")
    assert postgres_server.socket_dir not in reaped and postgres_server.socket_dir.exists()


def test_the_readiness_deadline_fires() -> None:
    probes: list[int] = []

    def never() -> bool:
        probes.append(1)
        return False

    with pytest.raises(PostgresStartError, match="not ready before the deadline"):
        wait_until(never, time.monotonic(), "a server that never answers")
    assert probes == [1]
