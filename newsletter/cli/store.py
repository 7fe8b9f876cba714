"""`newsletter store`: the store itself, whichever database holds it."""

from __future__ import annotations

import json

import click

from newsletter.cli.context import AppContext, pass_app
from newsletter.errors import StoreError
from newsletter.store.copy import copy_store
from newsletter.store.store import open_store, open_url, store_exists


@click.group()
def store() -> None:
    """The subscriber store as a whole: copy it between SQLite and PostgreSQL.

    \b
    Example:
        newsletter store copy --to postgresql://news@db.example.com/newsletter
    """


@store.command()
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The empty store to copy into: postgresql://user@host/db or sqlite:PATH.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows copied per table as JSON.")
@pass_app
def copy(app: AppContext, target: str, as_json: bool) -> None:
    """Copy this publication's store (`store:` in newsletter.yaml) into an empty one.

    Every table, in one transaction on the target, ids and the key of forgotten addresses
    kept; the row counts are compared afterwards and a difference undoes the copy. Then set
    `store:` to the new URL. The password of a PostgreSQL target comes from
    $NEWSLETTER_STORE_PASSWORD (or libpq's PGPASSWORD).

    \b
    Example:
        newsletter store copy --to postgresql://news@db.example.com/newsletter
        newsletter store copy --to sqlite:backup/subscribers.db --json
    """
    config = app.config
    if not store_exists(config):
        raise StoreError("there is no store to copy yet", path=config.subscribers_dir)
    with open_store(config) as source, open_url(target, config.root) as destination:
        if source.path == destination.path:
            raise StoreError("the target is this publication's own store", path=str(target))
        report = copy_store(source.db, destination.db)
    if as_json:
        summary = {"to": str(destination.path), "rows": report.rows, "total": report.total}
        click.echo(json.dumps(summary, indent=2))
        return
    for table, count in report.rows.items():
        click.echo(f"{table}: {count}")
    click.echo(f"copied {report.total} rows to {destination.path}")
