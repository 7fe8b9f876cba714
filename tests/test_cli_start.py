"""A fast start: `newsletter --help` imports none of the heavy libraries, and the lazily
loaded commands' listed help is their own (never wall-clock time: bench/startup.py times it)."""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
from conftest import PINNED_NOW, SAMPLE_TODAY

from newsletter.cli.main import LAZY_COMMANDS, main
from newsletter.startup import loading

HEAVY = (
    "premailer",
    "lxml",
    "rich",
    "markdown",
    "jinja2",
    "dkim",
    "dns",
    "cryptography",
    "waitress",
    "email_validator",
    "lunr",
    "nh3",
    "sqlite3",
    "newsletter.store",
    "newsletter.content.render",
    "newsletter.delivery",
)

PROBE = """
import json, sys
from newsletter.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


# A real `send`, stopped where it would render the issue: what it loaded until then.
BEFORE_RENDERING = """
import json, os, sys
import newsletter.content.render

def stop(*args, **kwargs):
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
    sys.stderr.flush()
    os._exit(0)

newsletter.content.render.render_issue = stop
from newsletter.cli import main
main(sys.argv[1:])
"""
SLUG = "2026-07-your-first-customer-sits-next-to-you"


def imported_by(*args: str, probe: str = PROBE) -> set[str]:
    """The modules a fresh interpreter has loaded after `newsletter ARGS`."""
    env = {**os.environ, "NEWSLETTER_DELIVERY__TRANSPORT": "file"}
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stderr.strip().splitlines()[-1])
    return {name.split(".")[0] if not name.startswith("newsletter") else name for name in modules}


def test_help_imports_no_heavy_library() -> None:
    modules = imported_by("--help")
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert "newsletter.cli.send" not in modules  # no command module at all


def test_a_command_loads_only_when_asked_for() -> None:
    modules = imported_by("status", "--help")
    assert "newsletter.cli.status" in modules
    assert "newsletter.cli.web" not in modules and "waitress" not in modules


def test_send_loads_no_renderer_archive_or_worker_library_before_it_renders() -> None:
    """`send`'s own start (what bench/startup.py times besides rendering): Jinja2, premailer
    and Markdown load when the issue is rendered, the archive only when archive.out is set,
    multiprocessing only for several SMTP connections."""
    modules = imported_by("send", "--help")
    assert "newsletter.cli.send" in modules and "newsletter.content.render" in modules
    late = {"jinja2", "premailer", "markdown", "lxml", "multiprocessing", "rich", "dkim"}
    assert not modules & late, sorted(modules & late)
    assert not {name for name in modules if name.startswith("newsletter.archive")}
    assert "newsletter.delivery.workers" not in modules and "newsletter.cli.schedule" not in modules


def test_a_send_reaches_rendering_without_what_only_other_work_needs(publication: Path) -> None:
    """A real `send` up to rendering (config, issues, the send log, the engine): address
    validation (email-validator, the CSV module), python-slugify, dateutil's recurrence rules,
    the store's other repositories, the renderer's own modules, one-off mail (test copies),
    PostgreSQL's group commit and, with the file transport, SMTP and TLS load only where
    they are used."""
    args = ("--root", str(publication), "--now", PINNED_NOW, "send", SLUG, "--yes")
    modules = imported_by(*args, probe=BEFORE_RENDERING)
    assert "newsletter.delivery.send" in modules and "newsletter.store.sends" in modules
    late = {
        "email_validator", "idna", "slugify", "csv", "difflib", "getpass", "smtplib", "ssl",
        "logging", "jinja2", "premailer", "markdown", "lxml", "multiprocessing", "rich", "dkim",
        "dateutil",  # every sample issue has its date: no schedule is computed before the check
    }  # fmt: skip
    assert not modules & late, sorted(modules & late)
    elsewhere = {
        "newsletter.store.csvio", "newsletter.store.imports", "newsletter.store.reports",
        "newsletter.store.signups", "newsletter.store.ratelimits", "newsletter.content.markup",
        "newsletter.content.plaintext", "newsletter.content.scaffold",
        "newsletter.content.sizecheck", "newsletter.content.templatesource",
        "newsletter.mail.smtp", "newsletter.mail.oneoff", "newsletter.delivery.groupcommit",
    }  # fmt: skip
    assert not modules & elsewhere, sorted(modules & elsewhere)
    assert "html.parser" not in modules  # the text part's, at rendering
    assert not {name for name in modules if name.startswith("newsletter.archive")}


def test_the_listed_help_is_each_commands_own() -> None:
    ctx = click.Context(main)
    for name, (module, attribute, short) in LAZY_COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.get_short_help_str(10**6) == short
        assert main.get_command(ctx, name) is command
    assert set(LAZY_COMMANDS) <= set(main.list_commands(ctx))  # with any added eagerly


# Counts the collector's runs while the command line loads (click, the group), inside a
# command's first load, inside the first render, and for allocations after them, in a fresh
# interpreter: what newsletter.startup spares a start.
COLLECTIONS = """
import datetime, gc, json, sys
from pathlib import Path
runs = [0]
gc.callbacks.append(lambda phase, info: phase == "stop" and runs.__setitem__(0, runs[0] + 1))
import newsletter.startup
counts = {}
gc.collect()  # from an empty young generation: the few allocations before a pause trigger none
before = runs[0]
from newsletter.cli import main as group  # as the `newsletter` script starts
counts["loading the command line"] = runs[0] - before
import click
gc.collect()
before = runs[0]
group.get_command(click.Context(group), "send")
counts["loading send"] = runs[0] - before
from newsletter.config import load_config
from newsletter.content.issues import load_issues
from newsletter.content.render import render_issue
config = load_config(Path(sys.argv[1]))
issues = load_issues(config, datetime.date.fromisoformat(sys.argv[2]))
gc.collect()
before = runs[0]
render_issue(config, issues[0], issues)
counts["first render"] = runs[0] - before
before = runs[0]
kept = [[number] for number in range(5_000)]  # 5,000 new containers: the collector runs
counts["after"] = runs[0] - before
print(json.dumps(counts))
"""


def test_a_commands_load_and_the_first_render_run_no_collection(publication: Path) -> None:
    """Loading allocates objects that live until exit: no collection walks them (nor again
    later), and the collector is back on for the work after."""
    result = subprocess.run(
        [sys.executable, "-c", COLLECTIONS, str(publication), SAMPLE_TODAY.isoformat()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["loading the command line"] == counts["loading send"] == 0, counts
    assert counts["first render"] == 0, counts
    assert counts["after"] > 0, counts  # and it runs again once loading is over


def test_loading_pauses_collection_and_freezes_what_it_loaded() -> None:
    runs = [0]

    def count(phase: str, info: dict[str, int]) -> None:
        runs[0] += phase == "stop"

    gc.callbacks.append(count)
    try:
        frozen = gc.get_freeze_count()
        with loading():
            kept = [[index] for index in range(20_000)]  # 20,000 containers: ~28 collections
            assert not gc.isenabled() and runs[0] == 0
        assert gc.isenabled() and runs[0] == 0
        assert gc.get_freeze_count() >= frozen + len(kept)
        gc.disable()  # a caller that had it off keeps it off
        try:
            with loading():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()  # the rest of this test process collects as before
