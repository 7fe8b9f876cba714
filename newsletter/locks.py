"""One holder at a time, on any OS: the send lock and the scheduler lock.

`filelock` picks the OS's own primitive (flock on POSIX, msvcrt on Windows), which the OS
drops when the holder dies, so there are no stale locks; `import fcntl` at import time kept
the CLI from even starting on Windows. The holder writes who it is into a sibling `.holder`
file (filelock may truncate the lock file itself), so a second instance can say who holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout


def _holder_file(path: Path) -> Path:
    return path.with_name(path.name + ".holder")


@contextlib.contextmanager
def exclusive(path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the lock at `path` or raise `busy(holder)` at once (never waits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = _holder_file(path).read_text(encoding="utf-8").strip()
        except OSError:
            holder = ""
        raise busy(holder or "unknown holder") from None
    try:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _holder_file(path).write_text(
            f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n", encoding="utf-8"
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            _holder_file(path).write_text("", encoding="utf-8")
        lock.release()
