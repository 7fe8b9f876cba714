"""`newsletter init DIR`: asks on a terminal, takes every answer as a flag for scripts."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli.context import AppContext, pass_app
from newsletter.content.initpub import InitAnswers, create_publication
from newsletter.errors import ConfigError

# (option name, question, required): required answers have no default off a terminal.
_QUESTIONS = (
    ("name", "Publication name", True),
    ("sender", "From (e.g. 'My Letter <news@example.org>')", True),
    ("reply_to", "Reply address (empty: the From address)", False),
    ("base_url", "Web archive URL (e.g. https://example.org/letter/)", True),
    ("postal_address", "Postal address for the footer (the law wants one)", True),
    ("timezone", "Time zone", False),
    ("schedule", "Schedule: nth weekday of the month and time", False),
    ("dkim_selector", "DKIM selector (empty: none yet)", False),
    ("web_url", "Public URL of `newsletter serve` for one-click unsubscribe (empty: none)", False),
)
_DEFAULTS = {"timezone": "UTC", "schedule": "1 tuesday 09:00"}
_FLAGS = {
    "sender": "--from",
    "base_url": "--base-url",
    "postal_address": "--postal-address",
    "reply_to": "--reply-to",
}


def on_terminal() -> bool:
    """Ask questions only when a person can answer them (not cron, not a pipe)."""
    return sys.stdin.isatty()


def _parse_schedule(text: str) -> tuple[int, str, str]:
    parts = text.lower().split()
    try:
        nth, weekday, time = int(parts[0]), parts[1], parts[2]
    except (IndexError, ValueError):
        raise ConfigError(
            f"expected 'NTH WEEKDAY HH:MM' like '1 tuesday 09:00', got {text!r}", field="--schedule"
        ) from None
    return nth, weekday, time


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Publication name.")
@click.option("--from", "sender", default=None, help="From header: 'Name <address>'.")
@click.option("--reply-to", default=None, help="Reply address. Default: the From address.")
@click.option("--base-url", default=None, help="Where the web archive is published.")
@click.option("--postal-address", default=None, help="Postal address for the footer.")
@click.option("--timezone", default=None, help="IANA time zone. Default: UTC.")
@click.option(
    "--schedule",
    default=None,
    metavar="'NTH WEEKDAY HH:MM'",
    help="When issues go out. Default: '1 tuesday 09:00' (first Tuesday, 09:00).",
)
@click.option(
    "--dkim-selector", default=None, help="DKIM selector; the key's path: $NEWSLETTER_DKIM_KEY."
)
@click.option("--web-url", default=None, help="Public https URL of `newsletter serve` (one-click).")
@click.option("--templates", is_flag=True, help="Copy the default templates in, to customise.")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
@pass_app
def init(
    app: AppContext, /, directory: Path, templates: bool, force: bool, **given: str | None
) -> None:
    """Start a new publication in DIRECTORY.

    Writes a commented newsletter.yaml, content/ with a first draft on the next free date,
    subscribers/, a .gitignore and deploy/ (a cron line, systemd units for `send --due`,
    `inbox` and `serve`). On a terminal it asks for what no flag gave; off a terminal the
    optional answers take their defaults and a missing required one is an error.

    \b
    Example:
        newsletter init my-letter --name "My Letter" --from "My Letter <news@example.org>" \\
            --base-url https://example.org/letter/ --postal-address "1 High St, Town"
    """
    interactive = on_terminal()
    answers: dict[str, str | None] = {}
    for key, question, required in _QUESTIONS:
        value = given.get(key)
        if value is None and interactive:
            value = (
                click.prompt(
                    question,
                    default=_DEFAULTS.get(key, "" if not required else None),
                    show_default=key in _DEFAULTS,
                ).strip()
                or None
            )
        if value is None and required:
            flag = _FLAGS.get(key, f"--{key.replace('_', '-')}")
            raise ConfigError(
                f"required; pass {flag} (or run on a terminal to be asked)", field=flag
            )
        answers[key] = value if value is not None else _DEFAULTS.get(key)
    nth, weekday, time = _parse_schedule(answers.pop("schedule") or _DEFAULTS["schedule"])
    target = directory if directory.is_absolute() else Path.cwd() / directory
    new_app = AppContext(root=target.resolve(), now_text=app.now_text)
    written = create_publication(
        target.resolve(),
        InitAnswers(
            name=answers["name"] or "",
            sender=answers["sender"] or "",
            base_url=answers["base_url"] or "",
            postal_address=answers["postal_address"] or "",
            reply_to=answers["reply_to"],
            timezone=answers["timezone"] or "UTC",
            weekday=weekday,
            nth=nth,
            time=time,
            dkim_selector=answers["dkim_selector"],
            web_url=answers["web_url"],
        ),
        new_app.now,
        templates=templates,
        force=force,
    )
    for path in written:
        click.echo(f"wrote {path.relative_to(target.resolve())}")
    click.echo(
        f"next: cd {directory} && newsletter subscribers import FILE.csv && newsletter check"
    )
