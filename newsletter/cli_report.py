"""`newsletter report`: how each issue did and how the list changes, without tracking anyone."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from newsletter.context import AppContext, pass_app
from newsletter.publication import load_publication
from newsletter.report import SOURCES, Report, as_json, build_report, only_issue
from newsletter.report_html import check_out_dir, write_html
from newsletter.store import DB_NAME, open_store

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
    if not (config.subscribers_dir / DB_NAME).exists():
        click.echo(NOTHING_YET)
        return
    with open_store(config) as store:
        figures = build_report(store, as_of=app.now(), titles=titles, detail=detail)
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


def _print(figures: Report, *, whole: bool) -> None:
    console = Console(highlight=False, soft_wrap=False)
    issues = Table(title="Per issue", title_justify="left")
    for name in ("issue", "date", "targeted", "sent", "deferred", "failed", "unknown"):
        issues.add_column(name, justify="left" if name in ("issue", "date") else "right")
    for name in ("hard b.", "soft b.", "compl.", *(f"uns. {s}" for s in SOURCES)):
        issues.add_column(name, justify="right")
    for name in ("churn", "feedback", "time", "rate"):
        issues.add_column(name, justify="right")
    for i in figures.issues:
        u = i.unsubscribes
        issues.add_row(
            f"#{i.number} {i.slug}" if i.number is not None else i.slug,
            f"{i.started_at:%Y-%m-%d}",
            *(str(n) for n in (i.targeted, i.sent, i.deferred, i.failed, i.unknown)),
            *(str(n) for n in (i.hard_bounces, i.soft_bounces, i.complaints)),
            *(str(getattr(u, s)) for s in SOURCES),
            "–" if i.churn is None else f"{i.churn:.2%}",
            str(i.feedback),
            "–" if i.duration_seconds is None else f"{i.duration_seconds:,.0f} s",
            "–" if i.rate_per_second is None else f"{i.rate_per_second:,.1f}/s",
        )
    console.print(issues)
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
