"""The `newsletter` command line: one click group, one function per command.

Domain errors (NewsletterError) become a one-line message and exit 2 here and only here.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from newsletter.errors import NewsletterError
from newsletter.startup import loading

# Each area keeps its commands in its own module, imported only when its command runs: the
# modules pull in premailer, lxml, rich, dnspython, waitress..., ~0.7 s that `--help` or
# `status` need not pay. name: (module, attribute, the short help `--help` lists), the help
# kept here so listing the commands imports none of them (tests/test_cli_start.py checks it
# against the command's own). Keep this block sorted.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "archive": (
        "newsletter.cli.archive",
        "archive",
        "Write the static web archive: a page per sent issue, index by year, topics, Atom feed,"
        " sitemap, search, subscribe and privacy pages.",
    ),
    "build": (
        "newsletter.cli.issues",
        "build",
        "Render every issue to build/: <slug>.html, <slug>.txt and a complete <slug>.eml.",
    ),
    "check": (
        "newsletter.cli.issues",
        "check",
        "Validate issues and templates before anything is sent.",
    ),
    "init": (
        "newsletter.cli.init",
        "init",
        "Start a new publication in DIRECTORY.",
    ),
    "inbox": (
        "newsletter.cli.inbox",
        "inbox",
        "Process incoming mail: unsubscribe requests, bounces, complaints, auto-replies.",
    ),
    "new": (
        "newsletter.cli.issues",
        "new",
        "Scaffold a new draft issue in content/ on the next free date.",
    ),
    "preview": (
        "newsletter.cli.issues",
        "preview",
        "Serve an issue's email on 127.0.0.1 at desktop and phone widths, plus its text part.",
    ),
    "report": (
        "newsletter.cli.report",
        "report",
        "Figures per issue and over time, from the send log and the inbox: no opens, no clicks.",
    ),
    "schedule": (
        "newsletter.cli.schedule",
        "schedule_command",
        "Run the publication's schedule: send each issue on its day, once.",
    ),
    "send": (
        "newsletter.cli.send",
        "send",
        "Send ISSUE (a slug or path) to every active subscriber, or resume its send.",
    ),
    "serve": (
        "newsletter.cli.web",
        "serve",
        "Serve one-click unsubscribe (RFC 8058), confirmed sign-up and the archive.",
    ),
    "status": (
        "newsletter.cli.status",
        "status",
        "Delivery counts per state; with ISSUE, each failure with the server's reply.",
    ),
    "store": (
        "newsletter.cli.store",
        "store",
        "The subscriber store as a whole: copy it between SQLite and PostgreSQL.",
    ),
    "subscribers": (
        "newsletter.cli.subscribers",
        "subscribers",
        "Manage the subscriber list (subscribers/subscribers.db).",
    ),
}


class NewsletterGroup(click.Group):
    """Turns user errors into `error: path:line: field: message` and exit code 2, and loads
    each command of LAZY_COMMANDS when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute, _ = LAZY_COMMANDS[cmd_name]
        if module in sys.modules:
            command = getattr(sys.modules[module], attribute)
        else:
            with loading():
                command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), (module, attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, from LAZY_COMMANDS' help: no command is imported."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                help_text = LAZY_COMMANDS[name][2]  # shortened as click shortens a command's
                text = click.Command(name, help=help_text).get_short_help_str(limit)
            else:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NewsletterError as exc:  # from an option's check (--now) while parsing
            _fail(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            _fail(exc)


def _fail(exc: NewsletterError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _check_now(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A bad --now or $NEWSLETTER_NOW: one line naming it and exit 2, before any command runs
    (not click's usage block, and not "Missing command" for `newsletter --now x`)."""
    if value is not None:
        from newsletter.cli.context import check_now

        source = ctx.get_parameter_source(str(param.name))
        check_now(value, "$NEWSLETTER_NOW" if source is ParameterSource.ENVIRONMENT else "--now")
    return value


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="NEWSLETTER_ROOT",
    help="Publication directory (newsletter.yaml, content/, templates/, subscribers/). "
    "Default: the current directory.",
)
@click.option(
    "--now",
    "now_text",
    metavar="ISO-DATETIME",
    default=None,
    envvar="NEWSLETTER_NOW",
    callback=_check_now,
    help="Act as if it were this moment (local time unless it has an offset): rehearse a "
    "send day, or pin the clock in tests. Also $NEWSLETTER_NOW. Default: the system clock.",
)
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, root: Path | None, now_text: str | None) -> None:
    """Publish a Markdown newsletter: check, build, send, archive.

    \b
    Example:
        newsletter check
        newsletter --root ~/my-letter build
        newsletter --now 2027-01-05T09:30 schedule --list 3
    """
    from newsletter.cli.context import AppContext  # config, YAML, dateutil: not for `--help`

    root = (root or Path(os.getcwd())).resolve()
    if not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory", param_hint="--root")
    ctx.obj = AppContext(root=root, now_text=now_text)
