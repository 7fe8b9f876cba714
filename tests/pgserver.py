"""A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, `pg_ctl` on a free
127.0.0.1 port, stopped and removed afterwards (also when starting fails).

The session fixture `postgres_server` yields a `PostgresServer`; `new_database(name)` gives each
test its own empty database on it, so tests never see each other's rows and need no cleanup.
PostgreSQL refuses to run as root: as root the cluster belongs to `nobody`, the one user every
Debian machine has. Everything about the cluster favours speed over durability (it is thrown
away): no fsync, no synchronous commit, no full-page writes, and the cluster lives in memory
(/dev/shm) where there is one: each test's CREATE DATABASE copies ~9 MB, ~0.23 s on this
machine's disk and ~0.07 s in memory, and every query that writes is spared the disk too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

SUPERUSER = "postgres"
# Seconds for each step (initdb, start, stop) on a loaded 2-core machine; start takes 1-2 s.
STEP_TIMEOUT = 60.0
# Settings the cluster starts with. Listening on 127.0.0.1 only; the unix socket goes into the
# cluster's own folder, never /var/run/postgresql (root's, and shared with a system server).
_SETTINGS = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 32MB
"""


class PostgresStartError(RuntimeError):
    """The cluster could not be created or did not start; the message ends with its log."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: Path

    @property
    def url(self) -> str:
        """The maintenance database `postgres`, as the superuser (trust authentication)."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """CREATE an empty database `name` (letters, digits, underscores) and return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        # CREATE DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        """DROP the database `name`, closing what is still connected to it (a killed sender's
        server process): the cluster is in memory, so a session's databases must not pile up."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: the one on PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        folder = Path(on_path).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else -1,
        reverse=True,
    )
    for folder in debian:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _owner() -> tuple[int, int] | None:
    """Whom the server runs as: None for the current user; `nobody` when that is root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise PostgresStartError("running as root and there is no user `nobody`") from None
    return entry.pw_uid, entry.pw_gid


def _environment() -> dict[str, str]:
    """The caller's environment without what would change the server: libfaketime (a server
    with a frozen clock never times out), PG* variables (PGDATA, PGPORT redirect pg_ctl), and
    the locale (--no-locale sets the cluster's; LC_ALL=C spares warnings about missing ones)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PG", "FAKETIME", "LC_")) and name not in ("LD_PRELOAD", "LANG")
    }
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    return env


def _run(
    command: list[str], owner: tuple[int, int] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    as_owner: dict[str, Any] = {}
    if owner is not None:
        # extra_groups=[]: drop root's supplementary groups too, as `runuser` would.
        as_owner = {"user": owner[0], "group": owner[1], "extra_groups": []}
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        check=False,
        **as_owner,
    )


def _cluster_parent() -> str | None:
    """Where the cluster's folder goes: /dev/shm when it is a writable folder (tmpfs on Linux),
    else the usual temporary folder (None)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def wait_until(ready: Callable[[], bool], deadline: float, what: str) -> None:
    """Call `ready` until it returns True; raise PostgresStartError once the monotonic clock
    passes `deadline`. Probes are short, so the deadline fires within one probe of itself."""
    while not ready():
        if time.monotonic() >= deadline:
            raise PostgresStartError(f"{what}: not ready before the deadline")
        time.sleep(0.05)


def _accepts(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    return probe


def _stop(bin_dir: Path, data: Path, owner: tuple[int, int] | None) -> None:
    """`pg_ctl stop -m immediate`; should that fail, SIGKILL the postmaster it started (the
    pid in postmaster.pid), so no server outlives its removed folder."""
    if not (data / "postmaster.pid").exists():
        return
    try:
        stopped = _run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            owner,
            STEP_TIMEOUT,
        )
        if stopped.returncode == 0:
            return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        # A stale pid file may name a process that has since reused the pid: kill only the
        # postmaster of this folder (its command line holds `-D DATA`).
        if str(data) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)


def _start(bin_dir: Path, folder: Path, owner: tuple[int, int] | None, port: int) -> bool:
    """Start on `port`; False when the port was taken meanwhile (try another)."""
    data, log = folder / "data", folder / "server.log"
    started = _run(
        [
            *(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log)),
            *("-o", f"-p {port}", "-w", "-t", str(int(STEP_TIMEOUT)), "start"),
        ],
        owner,
        STEP_TIMEOUT + 15,
    )
    if started.returncode == 0:
        return True
    if "Address already in use" in _tail(log):
        return False
    raise PostgresStartError(
        f"pg_ctl start failed ({started.returncode}): {started.stderr.strip()}\n{_tail(log)}"
    )


# The pid of the test process that made a cluster's folder: a process killed before it could
# stop its cluster (libfaketime crashes an xdist worker now and then) leaves a server running,
# in /dev/shm holding memory; the next session stops it.
OWNER_FILE = "owner.pid"


def reap_orphans(bin_dir: Path, parent: Path) -> list[Path]:
    """Stop and remove the clusters under `parent` whose maker is gone; returns them. A folder
    without an owner file (being made, or not ours) is left alone, as is a live maker's."""
    reaped = []
    for folder in parent.glob("newsletter-pg-*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
            os.kill(pid, 0)
            continue  # its maker still runs
        except (OSError, ValueError) as exc:
            if not isinstance(exc, ProcessLookupError):
                continue  # no owner file, or a process we may not signal: not ours to judge
        _stop(bin_dir, folder / "data", _owner())
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped


@contextlib.contextmanager
def running_postgres(bin_dir: Path, port: int | None = None) -> Iterator[PostgresServer]:
    """A new cluster in a new temporary folder; stopped and removed on leaving, whatever
    happened. `port`: this one (failing if taken), else a free one (a few tries, since
    another process may take a free port before the server binds it)."""
    owner = _owner()
    reap_orphans(bin_dir, Path(_cluster_parent() or tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix="newsletter-pg-", dir=_cluster_parent()))
    (folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
    data = folder / "data"
    try:
        if owner is not None:
            os.chown(folder, *owner)
        made = _run(
            [
                *(str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"),
                *("--no-locale", "-E", "UTF8", "--no-sync", "--no-instructions"),
            ],
            owner,
            STEP_TIMEOUT,
        )
        if made.returncode != 0:
            raise PostgresStartError(f"initdb failed ({made.returncode}): {made.stderr.strip()}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(_SETTINGS.format(socket_dir=folder))
        for _attempt in range(3 if port is None else 1):
            chosen = port if port is not None else _free_port()
            if _start(bin_dir, folder, owner, chosen):
                break
        else:
            raise PostgresStartError(f"no free port to bind:\n{_tail(folder / 'server.log')}")
        server = PostgresServer("127.0.0.1", chosen, SUPERUSER, folder)
        try:
            wait_until(_accepts(server.url), time.monotonic() + STEP_TIMEOUT, "PostgreSQL")
        except PostgresStartError as exc:
            raise PostgresStartError(f"{exc}\n{_tail(folder / 'server.log')}") from None
        yield server
    finally:
        _stop(bin_dir, data, owner)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the whole session; each test makes its own database on it."""
    # Imported here, not at the top: conftest.py imports this module for the fixture.
    from conftest import missing

    bin_dir = find_bin_dir()
    if bin_dir is None:
        missing("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
        return
    with running_postgres(bin_dir) as server:
        yield server
