"""`newsletter archive`: the static web archive alone (also part of `newsletter build`)."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.archive.build import build_archive
from newsletter.cli.context import AppContext, pass_app
from newsletter.content.publication import load_publication
from newsletter.store.store import open_store


@click.command("archive")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder. Default: build/archive/ in the publication.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder no earlier build wrote (its files are kept).",
)
@pass_app
def archive(app: AppContext, out: Path | None, force: bool) -> None:
    """Write the static web archive: a page per sent issue, index by year, topics, Atom feed,
    sitemap, search, subscribe and privacy pages.

    The output folder must be new, empty or one an earlier build wrote (or --force); never
    /, the home folder or the publication itself, and files it did not write are never
    overwritten. Only what changed since the last build is rewritten. Issues appear once sent
    (per the send log); before anything was sent, `ready` issues dated today or earlier.
    Drafts never.
    Listing an issue fixes its number for good (the store records it).

    \b
    Example:
        newsletter archive
        newsletter --root ~/my-letter archive --out /var/www/newsletter
        rsync -a --delete --exclude '.archive-*' build/archive/ host:/var/www/newsletter/
    """
    config = app.config
    today = app.today()
    publication = load_publication(config, today)
    for warning in publication.warnings():
        click.echo(warning, err=True)
    # Publishing fixes the numbers of the issues listed, so the store is opened (made) here.
    with open_store(config) as store:
        sent = store.sends.sent_slugs()
        report = build_archive(
            config,
            publication.issues,
            out,
            today=today,
            sent=sent,
            numbers=store.numbers,
            force=force,
        )
    click.echo(f"archive: {report.summary()}")
