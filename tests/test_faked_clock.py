"""`make test-faketime` runs the suite under libfaketime so that a test reading the real clock
fails. That proves nothing if the fake clock is not on where the tests run: an empty
LD_PRELOAD (the library not found) or a pytest-xdist worker started without it would pass
every test on the real date. This test fails then. Outside that run (no FAKETIME) there is
nothing to check and it reads no clock.
"""

from __future__ import annotations

import datetime as dt
import os


def test_the_faked_clock_is_on_where_the_tests_run() -> None:
    faketime = os.environ.get("FAKETIME")
    if faketime is None:
        return
    # "@YYYY-MM-DD hh:mm:ss": every process starts at that instant and its clock runs on.
    start = dt.datetime.strptime(faketime.removeprefix("@"), "%Y-%m-%d %H:%M:%S")
    now = dt.datetime.now()
    where = f"LD_PRELOAD={os.environ.get('LD_PRELOAD')!r}, {os.environ.get('PYTEST_XDIST_WORKER')}"
    # A day of slack covers the run itself; the real clock is never within it of both instants.
    assert start <= now < start + dt.timedelta(days=1), (
        f"FAKETIME={faketime!r} but the clock reads {now}: libfaketime is not loaded ({where})"
    )
