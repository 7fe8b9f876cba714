"""The `newsletter` command line: one click group, one function per command.

Domain errors (NewsletterError) become a one-line message and exit 2 here and only here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from newsletter.cli import issues as cli_issues
from newsletter.cli.archive import archive
from newsletter.cli.context import AppContext
from newsletter.cli.inbox import inbox
from newsletter.cli.init import init
from newsletter.cli.report import report
from newsletter.cli.schedule import schedule_command
from newsletter.cli.send import send, status
from newsletter.cli.subscribers import subscribers
from newsletter.cli.web import serve
from newsletter.errors import NewsletterError


class NewsletterGroup(click.Group):
    """Turns user errors into `error: path:line: field: message` and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


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
    root = (root or Path(os.getcwd())).resolve()
    if not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory", param_hint="--root")
    ctx.obj = AppContext(root=root, now_text=now_text)


# Each area keeps its commands in its own module; registering them here gives one `--help`.
# (One line per module: keep this block sorted.)
for command in (cli_issues.new, cli_issues.check, cli_issues.build, cli_issues.preview):
    main.add_command(command)
main.add_command(archive)
main.add_command(inbox)
main.add_command(report)
main.add_command(init)
main.add_command(schedule_command)
main.add_command(send)
main.add_command(status)
main.add_command(serve)
main.add_command(subscribers)
