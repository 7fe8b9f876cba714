"""Shared fixtures: a private copy of the sample publication and a CLI runner.

Keep this file small and general; fixtures for one area live in that area's test module.
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import os
import shutil
import signal
import socketserver
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest
from browser import browser  # noqa: F401  (Chromium for the *_browser.py modules)
from click.testing import CliRunner
from pgserver import postgres_server  # noqa: F401  (the session's PostgreSQL: store_url)

from newsletter.cli.main import main

REPO = Path(__file__).resolve().parent.parent
# Tests never read the real clock: CLI calls run at this moment (`newsletter --now`) unless a
# test says otherwise, and library calls get this day. Between the sample's October issue and
# its December draft, so nothing is due.
PINNED_NOW = "2026-11-20T12:00"
SAMPLE_TODAY = dt.date(2026, 11, 20)
SAMPLE_PARTS = ("newsletter.yaml", "content", "templates")


def copy_sample(root: Path) -> Path:
    """Copy the sample publication (newsletter.yaml, content/, templates/) to a new `root`."""
    root.mkdir(parents=True)
    for part in SAMPLE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part)
        else:
            shutil.copy2(source, root / part)
    return root


@contextmanager
def serving(httpd: socketserver.BaseServer) -> Iterator[str]:
    """`httpd` (bound to 127.0.0.1) answering on a thread until the block ends; its base URL,
    `http://127.0.0.1:PORT`. Closed on the way out whatever happened in the block."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the commands the tests start. A shell starts a background job (`make
    test &`, some CI runners) with SIGINT ignored, every child inherits that, and Python then
    installs no KeyboardInterrupt: the tests that stop a send or the scheduler with SIGINT
    would see it finish instead. The default handler here resets to the default in children."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def missing(reason: str) -> NoReturn:
    """A server or browser a test needs is not here: skip on a developer's machine, fail in CI
    (`CI=true`), which installs everything the tests use, so a broken install never passes."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str | None]:
    """Run the test on each store backend: None for SQLite (the default), else the URL of a
    fresh PostgreSQL database on the session's throwaway server, dropped after the test.
    `NEWSLETTER_STORE` is set to it, so the publication's config, the CLI and its child
    processes all use that database."""
    if request.param == "sqlite":
        monkeypatch.delenv("NEWSLETTER_STORE", raising=False)
        yield None
        return
    server = request.getfixturevalue("postgres_server")
    name = f"t{next(_DATABASES)}"
    url: str = server.new_database(name)
    monkeypatch.setenv("NEWSLETTER_STORE", url)
    yield url
    server.drop_database(name)


_DATABASES = itertools.count(1)


# The modules whose tests take longest (a wheel built and installed, a year of cron runs,
# Chromium, real servers under load), longest first. They run first, so that under pytest-xdist
# (`make test` runs -n auto) no worker is left at the end with one of them while the others
# idle. Only the order changes: a module missing from here runs in its usual place.
SLOW_FIRST = (
    "test_standalone.py",
    "test_email_browser.py",
    "test_archive_browser.py",
    "test_year_of_publishing.py",
    "test_schedule_run.py",
    "test_web_load.py",
    "test_schedule_cli.py",
    "test_send_cli.py",
    "test_send_stop.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable


# Under `make test-faketime` libfaketime now and then crashes the process (SIGSEGV in getenv
# while a test sets an environment variable and a server thread waits in select()). In one
# process the Makefile runs the suite once more; under pytest-xdist a worker dies instead and
# its test is reported failed, so that test alone is run once more on a fresh worker. A second
# crash fails it, as it fails the run, and a failing test is never run again; without
# libfaketime a crash always fails.
_crashed_once: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    if "FAKETIME" not in os.environ or crashitem in _crashed_once:
        return
    _crashed_once.add(crashitem)
    try:
        sched.mark_test_pending(crashitem)
    except NotImplementedError:  # --dist other than load cannot reschedule one test
        return
    report.outcome = "rerun"  # type: ignore[assignment]
    print(f"\n== a worker crashed running {crashitem} (libfaketime): once more", flush=True)


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    return ("rerun", "R", "RERUN") if report.outcome == "rerun" else None


@pytest.fixture
def publication(tmp_path: Path) -> Path:
    """A private copy of the bundled sample publication; returns its root."""
    return copy_sample(tmp_path / "publication")


class CliResult(NamedTuple):
    code: int
    stdout: str
    stderr: str


def _runner() -> CliRunner:
    # click < 8.2 mixes stderr into stdout unless told not to; 8.2 removed the argument and
    # always keeps them apart.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


def run_cli(
    root: Path,
    *args: str,
    env: Mapping[str, str | None] | None = None,
    now: str | None = PINNED_NOW,
) -> CliResult:
    """`newsletter --root ROOT --now NOW ARGS...` in-process: (exit code, stdout, stderr).

    Exceptions other than SystemExit are not caught, so a traceback fails the test loudly.
    `env` sets (or, with a None value, unsets) environment variables for the call. `now`:
    the moment the command acts at (None: the system clock, for tests of that alone).
    """
    clock = ["--now", now] if now is not None else []
    result = _runner().invoke(
        main, ["--root", str(root), *clock, *args], env=dict(env or {}), catch_exceptions=False
    )
    return CliResult(result.exit_code, result.stdout, result.stderr)
