"""One holder at a time, on any OS: the send lock and the scheduler lock.

POSIX: `fcntl.flock`, imported when a lock is taken, not at start-up (`import fcntl` at import
time kept the CLI from even starting on Windows). Its lock belongs to the open file, which
forked send workers inherit: after a SIGKILL to `newsletter send` alone, its workers keep the
issue locked until the last one has recorded its message and exited, so a second send cannot
start under them. (filelock 4 closes its descriptor in forked children on purpose, which would
lose exactly that, so it serves only where there is no fcntl, and no fork: Windows.)
Either way the OS drops a dead holder's lock: no stale locks. The holder writes who it is into
a sibling `.holder` file, so a second instance can say who holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path


def _holder_file(path: Path) -> Path:
    return path.with_name(path.name + ".holder")


def _holder(path: Path) -> str:
    try:
        return _holder_file(path).read_text(encoding="utf-8").strip() or "unknown holder"
    except OSError:
        return "unknown holder"


@contextlib.contextmanager
def _os_lock(path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None  # type: ignore[assignment]
    if fcntl is None:
        from filelock import FileLock, Timeout

        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise busy(_holder(path)) from None
        try:
            yield
        finally:
            lock.release()
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(_holder(path)) from None
        yield  # no explicit unlock: closing the parent's descriptor leaves forked holders theirs
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the lock at `path` or raise `busy(holder)` at once (never waits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _os_lock(path, busy):
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _holder_file(path).write_text(
            f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n", encoding="utf-8"
        )
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                _holder_file(path).write_text("", encoding="utf-8")
