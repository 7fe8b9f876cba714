"""`newsletter report`: how each issue did and how the list changes, without tracking anyone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from newsletter.cli.context import AppContext, pass_app
from newsletter.content.publication import load_publication
from newsletter.report.figures import (
    SOURCES,
    IssueFigures,
    Report,
    as_json,
    build_report,
    only_issue,
)
from newsletter.report.html import check_out_dir, write_html
from newsletter.store.store import open_store, store_exists

NOTHING_YET = (
    "nothing to report yet: no issue has been sent (`newsletter send ISSUE` starts the send "
    "log this report reads)"
)


@click.command()
@click.argument("issue_ref", metavar="[ISSUE]", required=False)
@click.option("--json", "as_json_", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--html",
    "html_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write DIR/index.html with charts (never inside the public archive).",
)
@click.option("--detail", is_flag=True, help="Include the addresses behind the counts.")
@pass_app
def report(
    app: AppContext, issue_ref: str | None, as_json_: bool, html_dir: Path | None, detail: bool
) -> None:
    """Figures per issue and over time, from the send log and the inbox: no opens, no clicks.

    Per issue: readers targeted, sent, deferred, failed, bounces, complaints, unsubscribes
    by source, feedback replies, send duration and rate. Over time: readers at each send,
    sign-ups, imports and departures per month. Counts only, unless --detail.

    \b
    Example:
        newsletter report
        newsletter report 2026-10-customer-service-starts-inside --detail
        newsletter report --json > report.json
        newsletter report --html ~/reports/letter
    """
    config = app.config
    if html_dir is not None:
        check_out_dir(config, html_dir)  # refuse before any work
    publication = load_publication(config, app.today())
    titles = {issue.slug: issue.title for issue in publication.issues}
    if not store_exists(config):
        click.echo(NOTHING_YET)
        return
    with open_store(config) as store:
        figures = build_report(store.reports, as_of=app.now(), titles=titles, detail=detail)
    if figures.empty:
        click.echo(NOTHING_YET)
        return
    if issue_ref is not None:
        # A sent issue is in the send log even when its file was renamed or removed since.
        slug = Path(issue_ref).stem if issue_ref.endswith(".md") else issue_ref
        if slug not in {i.slug for i in figures.issues}:
            slug = publication.find(config, issue_ref).slug
        figures = only_issue(figures, slug)
        if figures.empty:
            click.echo(f"{slug}: not sent yet, nothing to report")
            return
    if html_dir is not None:
        path = write_html(config, figures, html_dir)
        click.echo(f"report written to {path}", err=as_json_)
    if as_json_:
        click.echo(json.dumps(as_json(figures), indent=2, ensure_ascii=False))
    else:
        _print(figures, whole=issue_ref is None)


def _rate(rate: float | None) -> str:
    if rate is None:
        return "–"
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.2f}/s"


def _key(issue: IssueFigures) -> str:
    return f"#{issue.number}" if issue.number is not None else f"{issue.started_at:%Y-%m}"


def _print(figures: Report, *, whole: bool) -> None:
    # Two narrow tables rather than one of 19 columns: each fits an 80-column terminal.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)
    sends = Table(title="Per issue: the send", title_justify="left")
    sends.add_column("issue", no_wrap=True)
    sends.add_column("date", no_wrap=True)
    sends.add_column("slug", no_wrap=True, overflow="ellipsis", max_width=24)
    for name in ("targeted", "sent", "deferred", "failed", "unknown", "time", "rate"):
        sends.add_column(name, justify="right")
    readers = Table(title="Per issue: what readers did", title_justify="left")
    readers.add_column("issue", no_wrap=True)
    for name in ("hard b.", "soft b.", "compl.", *(f"unsub {s}" for s in SOURCES[:3])):
        readers.add_column(name, justify="right")
    for name in ("unsub admin",):
        readers.add_column(name, justify="right")
    for name in ("churn", "feedback"):
        readers.add_column(name, justify="right")
    for i in figures.issues:
        u = i.unsubscribes
        sends.add_row(
            _key(i),
            f"{i.started_at:%Y-%m-%d}",
            i.slug,
            *(f"{n:,}" for n in (i.targeted, i.sent, i.deferred, i.failed, i.unknown)),
            "–" if i.duration_seconds is None else f"{i.duration_seconds:,.0f} s",
            _rate(i.rate_per_second),
        )
        readers.add_row(
            _key(i),
            *(f"{n:,}" for n in (i.hard_bounces, i.soft_bounces, i.complaints)),
            *(f"{getattr(u, s):,}" for s in SOURCES[:3]),
            f"{u.admin + u.other:,}",  # (`other`: sources a later version may add)
            "–" if i.churn is None else f"{i.churn:.2%}",
            f"{i.feedback:,}",
        )
    console.print(sends)
    console.print(readers)
    if whole:
        months = Table(title="Per month (UTC)", title_justify="left")
        for name in ("month", "sign-ups", "imported", "unsubscribes", "bounced", "complaints"):
            months.add_column(name, justify="left" if name == "month" else "right")
        for m in figures.months:
            months.add_row(
                m.month,
                *(str(n) for n in (m.signups, m.imports, m.unsubscribes, m.bounces, m.complaints)),
            )
        console.print(months)
        console.print(f"active readers now: {figures.active_now:,}")
        if figures.most_feedback:
            most = ", ".join(f"{slug} ({n})" for slug, n in figures.most_feedback)
            console.print(f"most feedback: {most}")
        if figures.before_first_issue:
            console.print(f"before the first issue: {figures.before_first_issue} change(s)")
    if figures.details:
        who = Table(title="Who (--detail)", title_justify="left")
        for name in ("issue", "what", "address"):
            who.add_column(name)
        for d in figures.details:
            who.add_row(d.slug or "(before the first issue)", d.what, d.email)
        console.print(who)
    console.print("Not counted, by design: opens and clicks (no pixels, no rewritten links).")
