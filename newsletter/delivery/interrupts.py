"""Stopping a send on Ctrl-C or SIGTERM without leaving a message in flight.

The first SIGINT or SIGTERM only asks the send to stop: the message on the wire finishes and
its result is recorded, nothing new is claimed, and the send raises `Interrupted` (exit
130 or 143, as a shell expects of a process stopped by that signal). A second signal
interrupts at once, for an operator who cannot wait for a slow server (that row is then
`unknown` next run, as after a crash).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(Protocol):
    """A stop flag the connections watch: a threading.Event, or the worker processes' shared
    flag (SharedStop)."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class SharedStop:
    """A stop flag in shared memory. No lock: a killed process cannot leave it held. A worker
    also stops when its parent is gone (killed), after recording the message in flight."""

    def __init__(self) -> None:
        # Imported here: only sends with several SMTP connections fork (a plain start skips it).
        import multiprocessing

        self.flag = multiprocessing.get_context("fork").RawValue("b", 0)
        self.parent = os.getpid()

    def is_set(self) -> bool:
        return bool(self.flag.value) or os.getppid() != self.parent != os.getpid()

    def set(self) -> None:
        self.flag.value = 1

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


class Interrupted(KeyboardInterrupt):
    """The send stopped on `signum` (after recording the message on the wire)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """Within the block the first SIGINT/SIGTERM calls `stop()`; the list yielded names the
    signals received. Off the main thread (signals cannot be caught there) it does nothing,
    and a signal someone else already handles (the scheduler lets a send run to its end) is
    left to them."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:
            raise Interrupted(signum)
        received.append(signum)
        stop()

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    defaults = (signal.SIG_DFL, signal.default_int_handler)
    previous = {s: signal.getsignal(s) for s in SIGNALS if signal.getsignal(s) in defaults}
    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
