"""`newsletter status [ISSUE]`: delivery counts per state, each failure with its reply."""

from __future__ import annotations

import json
from typing import Any

import click

from newsletter.cli.context import AppContext, pass_app
from newsletter.content.issues import Issue
from newsletter.content.publication import load_publication
from newsletter.delivery import send as delivery
from newsletter.store.store import Store, open_store

SHOWN_FAILURES = 50


def status_json(store: Store, issues: list[Issue]) -> list[dict[str, Any]]:
    """One object per issue that has a send: state, recipients, counts, failures."""
    out = []
    for issue in issues:
        send = store.sends.get_send(issue.slug)
        if send is None:
            continue
        failures = store.sends.deliveries_in_state(send.id, delivery.TROUBLE)
        out.append({
            "issue": issue.slug,
            "state": "finished" if send.finished_at else "open",
            "started_at": send.started_at.isoformat(),
            "finished_at": send.finished_at.isoformat() if send.finished_at else None,
            "recipients": send.total,
            "counts": store.sends.delivery_counts(send.id),
            "failures": [{"email": r.email, "state": r.state, "reply": r.last_reply}
                         for r in failures[:SHOWN_FAILURES]],
            "senders": [{"id": s.id, "host": s.host, "pid": s.pid, "running": s.running,
                         "started_at": s.started_at.isoformat(), "counts": s.counts}
                        for s in store.sends.senders(send.id)],
        })  # fmt: skip
    return out


@click.command()
@click.argument("issue_ref", metavar="[ISSUE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="The sends as a JSON list, for scripts.")
@pass_app
def status(app: AppContext, issue_ref: str | None, as_json: bool) -> None:
    """Delivery counts per state; with ISSUE, each failure with the server's reply.

    \b
    Example:
        newsletter status
        newsletter status 2026-07-your-first-customer-sits-next-to-you
        newsletter status --json | jq '.[] | select(.state == "open") | .issue'
    """
    config = app.config
    publication = load_publication(config, app.today())
    issues = publication.issues
    for warning in publication.warnings():
        click.echo(warning, err=True)
    with open_store(config) as store:
        delivery.store_journals(config, store.sends, (issue.slug for issue in issues))
        if as_json:
            chosen = issues if issue_ref is None else [publication.find(config, issue_ref)]
            click.echo(json.dumps(status_json(store, chosen), indent=2))
            return
        if issue_ref is None:
            any_send = False
            for issue in issues:
                send = store.sends.get_send(issue.slug)
                if send is None:
                    continue
                any_send = True
                counts = store.sends.delivery_counts(send.id)
                state = "finished" if send.finished_at else "open"
                summary = ", ".join(f"{counts[s]} {s}" for s in counts if counts[s])
                click.echo(f"{issue.slug}: {state}, {send.total} recipients: {summary}")
            if not any_send:
                click.echo("no issue has been sent yet")
            return
        issue = publication.find(config, issue_ref)
        send = store.sends.get_send(issue.slug)
        if send is None:
            click.echo(f"{issue.slug}: not sent yet")
            return
        counts = store.sends.delivery_counts(send.id)
        finished = f", finished {send.finished_at:%Y-%m-%d %H:%M}" if send.finished_at else ""
        click.echo(f"{issue.slug}: started {send.started_at:%Y-%m-%d %H:%M} UTC{finished}")
        for state, count in counts.items():
            click.echo(f"  {state:<10}{count:>8}")
        for sender in store.sends.senders(send.id):  # several senders on PostgreSQL
            rows_text = ", ".join(f"{n} {state}" for state, n in sender.counts.items()) or "no rows"
            alive = "running" if sender.running else "gone"
            click.echo(
                f"  sender {sender.id} on {sender.host} (pid {sender.pid}, {alive},"
                f" since {sender.started_at:%H:%M} UTC): {rows_text}"
            )
        rows = store.sends.deliveries_in_state(send.id, delivery.TROUBLE)
        rows += store.sends.held_back(send.id, SHOWN_FAILURES + 1)  # a paused send's (issue 13)
        for row in rows[:SHOWN_FAILURES]:
            due = f" (retry after {row.next_attempt_at:%H:%M})" if row.next_attempt_at else ""
            click.echo(f"{row.state:<9} {row.email}: {row.last_reply or 'no reply'}{due}")
        if len(rows) > SHOWN_FAILURES:
            click.echo(f"... and {len(rows) - SHOWN_FAILURES} more")
