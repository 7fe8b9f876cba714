"""`newsletter inbox --feedback`: the readers' own words, by issue, newest first."""

from __future__ import annotations

import json

import click

from newsletter.cli.context import AppContext
from newsletter.content.publication import load_publication
from newsletter.inbox.feedback import FeedbackGroup, feedback_by_issue
from newsletter.inbox.feedback import as_json as feedback_json
from newsletter.store.store import open_store, store_exists


def list_feedback(app: AppContext, *, as_json: bool) -> None:
    config = app.config
    groups: tuple[FeedbackGroup, ...] = ()
    if store_exists(config):  # looking never creates a store
        titles = {i.slug: i.title for i in load_publication(config, app.today()).issues}
        with open_store(config) as store:
            groups = feedback_by_issue(store.reports, titles)
    if as_json:
        click.echo(json.dumps(feedback_json(groups), indent=2, ensure_ascii=False))
        return
    if not groups:
        click.echo("no feedback yet")
        return
    for group in groups:
        number = f"#{group.number} " if group.number is not None else ""
        title = f"{group.title} ({group.slug})" if group.title else group.slug
        name = f"{number}{title}" if group.slug else "before the first issue"
        count = len(group.entries)
        replies = f"{count} repl{'y' if count == 1 else 'ies'}"
        click.echo(f"== {name}: {replies}")
        for entry in group.entries:
            click.echo(f"From:    {entry.sender}")
            click.echo(f"Date:    {entry.date or f'{entry.at:%Y-%m-%d %H:%M} UTC'}")
            click.echo(f"Subject: {entry.subject}")
            text = entry.text or "(no text of their own)"
            click.echo("\n".join("  " + line for line in text.splitlines()))
            click.echo("")
