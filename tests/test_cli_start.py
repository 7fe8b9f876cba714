"""A fast start: `newsletter --help` imports none of the heavy libraries, and the lazily
loaded commands' listed help is their own (never wall-clock time: bench/startup.py times it)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click

from newsletter.cli.main import LAZY_COMMANDS, main

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


def imported_by(*args: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `newsletter ARGS`."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
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


def test_the_listed_help_is_each_commands_own() -> None:
    ctx = click.Context(main)
    for name, (module, attribute, short) in LAZY_COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.get_short_help_str(10**6) == short
        assert main.get_command(ctx, name) is command
    assert set(LAZY_COMMANDS) <= set(main.list_commands(ctx))  # with any added eagerly
