"""`newsletter subscribers ...`: add, remove, list, stats, import, export."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from newsletter.cli.context import AppContext, pass_app
from newsletter.errors import StoreError
from newsletter.store.csvio import (
    STATUSES,
    CsvReader,
    ImportRejected,
    RowProblem,
    Status,
    write_csv,
)
from newsletter.store.records import Subscriber
from newsletter.store.store import Store, open_store

SHOWN_PROBLEMS = 20
STATUS_CHOICE = click.Choice([*STATUSES, "all"])


def _store(app: AppContext) -> Store:
    return open_store(app.config)


def _status(value: str) -> Status | None:
    return None if value == "all" else next(s for s in STATUSES if s == value)


@click.group()
def subscribers() -> None:
    """Manage the subscriber list (subscribers/subscribers.db).

    \b
    Example:
        newsletter subscribers import subscribers/sample.csv
        newsletter subscribers stats
    """


@subscribers.command()
@click.argument("email")
@click.option("--name", help="The reader's first name, used in the greeting.")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Re-activate an unsubscribed, bounced or forgotten address (needs --consent).",
)
@click.option("--consent", help="How and when the reader agreed (kept in the consent record).")
@pass_app
def add(
    app: AppContext, email: str, name: str | None, resubscribe: bool, consent: str | None
) -> None:
    """Add one reader. A suppressed address is refused unless --resubscribe --consent.

    \b
    Example:
        newsletter subscribers add jane@example.com --name Jane
        newsletter subscribers add jane@example.com --resubscribe \\
            --consent "asked again by email on 2026-05-02"
    """
    with _store(app) as store:
        result = store.subscribers.add(
            email, name, source="command", consent=consent, resubscribe=resubscribe
        )
    if result.outcome == "suppressed":
        raise StoreError(
            f"suppressed ({result.reason}); only --resubscribe --consent NOTE re-activates it",
            path=email,
        )
    assert result.subscriber is not None
    shown = result.subscriber.email
    messages = {
        "added": f"added {shown}",
        "existing": f"{shown} is already subscribed",
        "resubscribed": f"re-subscribed {shown} (was {result.reason})",
    }
    click.echo(messages[result.outcome])


@subscribers.command()
@click.argument("email")
@click.option("--forget", is_flag=True, help="Erase the reader's data, keep a hashed suppression.")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@pass_app
def remove(app: AppContext, email: str, forget: bool, reason: str | None) -> None:
    """Unsubscribe a reader (history kept), or with --forget erase them for good.

    \b
    Example:
        newsletter subscribers remove jane@example.com
        newsletter subscribers remove jane@example.com --forget --reason "GDPR request 2026-05-02"
    """
    with _store(app) as store:
        if forget:
            store.subscribers.forget(email, reason=reason or "erasure request (command)")
            click.echo(f"forgot {email.strip()}: data erased, address kept only as a hash")
            return
        subscriber = store.subscribers.get_by_email(email)
        if subscriber is None:
            raise StoreError(
                "not on the list (use --forget to suppress it without storing it)", path=email
            )
        if store.subscribers.unsubscribe(subscriber, source="command", detail=reason):
            click.echo(f"unsubscribed {subscriber.email}")
        else:
            click.echo(f"{subscriber.email} is already {subscriber.status}")


@subscribers.command(name="list")
@click.option("--status", type=STATUS_CHOICE, default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
@pass_app
def list_(app: AppContext, status: str, as_json: bool) -> None:
    """Print readers, one per line: email, status, first name (tab-separated, streamed).

    With --json each line is a JSON object (email, status, first_name, created_at,
    consent_at, consent_source): streamed like the text, for `jq` and scripts.

    \b
    Example:
        newsletter subscribers list --status active | wc -l
        newsletter subscribers list --json | jq -r 'select(.first_name == null) | .email'
    """
    with _store(app) as store:
        for reader in store.subscribers.iter_subscribers(_status(status)):
            if as_json:
                click.echo(json.dumps(reader_json(reader), ensure_ascii=False))
            else:
                click.echo(f"{reader.email}\t{reader.status}\t{reader.first_name or ''}")


@subscribers.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, events included.")
@pass_app
def show(app: AppContext, email: str, as_json: bool) -> None:
    """One reader: status, first name, consent (how, when, by whom) and every event.

    \b
    Example:
        newsletter subscribers show jane@example.com
        newsletter subscribers show jane@example.com --json
    """
    with _store(app) as store:
        reader = store.subscribers.get_by_email(email)
        if reader is None:
            forgotten = store.subscribers.is_forgotten(email)
            why = (
                "forgotten: erased on request, kept only as a hash"
                if forgotten
                else "not on the list"
            )
            raise StoreError(why, path=email.strip())
        events = store.events.events(reader)
    if as_json:
        record = reader_json(reader)
        record["events"] = [
            {"at": at.isoformat(), "kind": kind, "source": source, "detail": detail}
            for at, kind, source, detail in events
        ]
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    click.echo(f"email       {reader.email}")
    click.echo(f"status      {reader.status}")
    click.echo(f"first name  {reader.first_name or '(none)'}")
    when = f"{reader.consent_at:%Y-%m-%d %H:%M} UTC" if reader.consent_at else "unknown date"
    how = reader.consent_source or "unknown"
    note = f"; {reader.consent_note}" if reader.consent_note else ""
    by = f", recorded by {reader.consent_by}" if reader.consent_by else ""
    click.echo(f"consent     {how}, {when}{by}{note}")
    click.echo(f"added       {reader.created_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"events      {len(events)}")
    for at, kind, source, detail in events:
        extra = " ".join(part for part in (source and f"[{source}]", detail) if part)
        click.echo(f"  {at:%Y-%m-%d %H:%M}  {kind:<14}{extra}".rstrip())


def reader_json(reader: Subscriber) -> dict[str, Any]:
    """A reader as JSON-ready fields (never the token: it unsubscribes them)."""
    stamp = reader.consent_at.isoformat() if reader.consent_at else None
    return {
        "email": reader.email,
        "status": reader.status,
        "first_name": reader.first_name,
        "created_at": reader.created_at.isoformat(),
        "consent_at": stamp,
        "consent_source": reader.consent_source,
        "consent_note": reader.consent_note,
    }


@subscribers.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object of counts.")
@pass_app
def stats(app: AppContext, as_json: bool) -> None:
    """Count readers per status.

    \b
    Example:
        newsletter subscribers stats
        newsletter subscribers stats --json | jq .active
    """
    with _store(app) as store:
        counts = store.subscribers.counts()
    if as_json:
        total = sum(v for k, v in counts.items() if k != "forgotten")
        click.echo(json.dumps({**counts, "total": total}))
        return
    forgotten = counts.pop("forgotten")
    for status, count in counts.items():
        click.echo(f"{status:<13}{count:>9}")
    click.echo(f"{'total':<13}{sum(counts.values()):>9}")
    click.echo(f"{'forgotten':<13}{forgotten:>9}")


@subscribers.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows, report the others.")
@click.option("--consent", help="How these readers agreed (default: 'listed in FILE').")
@click.option(
    "--status",
    "force_status",
    type=click.Choice([s for s in STATUSES if s != "active"]),
    default=None,
    help="Import every row with this status: a whole file of suppressions.",
)
@click.option("--dry-run", is_flag=True, help="Read and classify the file; write nothing.")
@pass_app
def import_(
    app: AppContext,
    file: Path,
    skip_invalid: bool,
    consent: str | None,
    force_status: str | None,
    dry_run: bool,
) -> None:
    """Import a CSV export (one transaction: all rows or none).

    Header optional (email / e-mail / Email Address, name / first_name, status); UTF-8 with
    or without BOM; comma, semicolon or tab separated. Exports of Mailchimp (subscribed,
    unsubscribed, cleaned), Substack, Buttondown, listmonk, Ghost and Kit are recognised by
    their columns: their unsubscribed, cleaned/bounced, disabled and complained readers arrive
    suppressed, never-confirmed ones are left out. Unsubscribed, bounced and forgotten
    addresses stay suppressed and are reported.

    \b
    Example:
        newsletter subscribers import subscribers/sample.csv
        newsletter subscribers import old-list.csv --skip-invalid
        newsletter subscribers import unsubscribed_members_export.csv --dry-run
        newsletter subscribers import do-not-mail.csv --status unsubscribed
    """
    if not file.exists() or file.is_dir():  # a named pipe is fine: the file is streamed
        raise StoreError("no such file", path=file)
    forced = _status(force_status) if force_status else None
    reader = CsvReader(file, skip_invalid=skip_invalid, force_status=forced)
    if dry_run:
        try:
            rows = sum(1 for _ in reader)
        except ImportRejected as exc:
            _print_problems(exc.problems, exc.total, "error")
            click.echo(f"error: {file}: {exc.total} invalid rows", err=True)
            sys.exit(2)
        _print_problems(reader.problems, reader.invalid, "skipped")
        _print_outcomes(file, reader)
        click.echo(f"{file}: dry run: {rows} rows would be imported; nothing written")
        return
    with _store(app) as store:
        try:
            report = store.imports.import_subscribers(
                reader, source=f"import {file.name}", consent=consent or f"listed in {file.name}"
            )
        except ImportRejected as exc:
            _print_problems(exc.problems, exc.total, "error")
            click.echo(
                f"error: {file}: nothing imported: {exc.total} invalid rows"
                " (fix them, or use --skip-invalid)",
                err=True,
            )
            sys.exit(2)
    _print_problems(reader.problems, reader.invalid, "skipped")
    for line, email, why in report.suppressed_rows:
        click.echo(f"suppressed: {file}:{line}: {email} ({why})", err=True)
    if report.suppressed > len(report.suppressed_rows):
        click.echo(
            f"suppressed: ... and {report.suppressed - len(report.suppressed_rows)} more", err=True
        )
    parts = [
        f"{report.added} added",
        f"{report.existing} already on the list",
        f"{report.suppressed} suppressed",
        f"{report.duplicates} duplicate rows",
    ]
    if report.status_applied:
        parts.append(f"{report.status_applied} marked as the file says")
    if reader.invalid:
        parts.append(f"{reader.invalid} invalid rows skipped")
    _print_outcomes(file, reader)
    click.echo(f"{file}: " + ", ".join(parts))


def _print_outcomes(file: Path, reader: CsvReader) -> None:
    """Per status in the file, what it became: `Mailchimp export: 3 cleaned -> bounced`."""
    if reader.service is None and reader.force_status is None:
        return
    kind = f"{reader.service} export" if reader.service else "file"
    for (word, became), count in sorted(reader.outcomes.items()):
        click.echo(f"{file}: {kind}: {count} {word} -> {became}")


def _print_problems(problems: list[RowProblem], total: int, prefix: str) -> None:
    for problem in problems[:SHOWN_PROBLEMS]:
        click.echo(f"{prefix}: {problem}", err=True)
    if total > SHOWN_PROBLEMS:
        click.echo(f"{prefix}: ... and {total - SHOWN_PROBLEMS} more invalid rows", err=True)


@subscribers.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--status", type=STATUS_CHOICE, default="all", show_default=True)
@pass_app
def export(app: AppContext, file: Path, status: str) -> None:
    """Write readers to CSV (UTF-8, streamed); `-` for standard output.

    All statuses by default, so importing the file elsewhere keeps the suppressions.

    \b
    Example:
        newsletter subscribers export backup.csv
        newsletter subscribers export - --status active
    """
    with _store(app) as store:
        rows = (
            (
                r.email,
                r.first_name,
                r.status,
                _iso(r.created_at),
                _iso(r.consent_at),
                r.consent_source,
            )
            for r in store.subscribers.iter_subscribers(_status(status))
        )
        if str(file) == "-":
            write_csv(sys.stdout, rows)
            return
        count = _write_atomically(file, rows)
    click.echo(f"exported {count} readers to {file}")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomically(path: Path, rows: Iterable[tuple[object, ...]]) -> int:
    """A temp file in the same directory, renamed into place: never a half-written export."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise StoreError(f"cannot write: {exc.strerror}", path=path) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            count = write_csv(out, rows)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise StoreError(f"cannot write: {exc.strerror}", path=path) from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return count
