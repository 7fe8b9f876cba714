"""Editor commands: `new`, `check`, `build`, `preview`."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from newsletter.archive.build import build_archive
from newsletter.cadence import is_scheduled_day
from newsletter.cli.context import AppContext, pass_app
from newsletter.content.checks import Problem, check_publication, check_rendered, has_errors
from newsletter.content.issues import Issue
from newsletter.content.publication import Publication, load_publication
from newsletter.content.render import RenderedIssue, render_issue
from newsletter.content.scaffold import plan_new_issue
from newsletter.errors import IssueError
from newsletter.fsutil import write_atomic
from newsletter.mail.preview import write_previews
from newsletter.web import preview as preview_server


def _select(app: AppContext, refs: tuple[str, ...]) -> tuple[Publication, list[Issue]]:
    """(the publication, the issues named on the command line or all of them)."""
    publication = load_publication(app.config, app.today())
    if not refs:
        return publication, publication.issues
    return publication, [publication.find(app.config, ref) for ref in refs]


def _warn_broken(publication: Publication) -> None:
    for warning in publication.warnings():
        click.echo(warning, err=True)


@click.command()
@click.argument("title")
@click.option(
    "--date",
    "date_text",
    metavar="YYYY-MM-DD",
    help="Send date (default: the next scheduled date still ahead that no issue holds).",
)
@click.option("--slug", help="The file name's part after YYYY-MM- (default: from the title).")
@pass_app
def new(app: AppContext, title: str, date_text: str | None, slug: str | None) -> None:
    """Scaffold a new draft issue in content/ on the next free date.

    The file is content/<YYYY-MM>-<slug>.md with the front-matter filled in. The date is the
    next scheduled date (the first Tuesday of a month by default) whose send time is still
    ahead and that no other issue, ready or draft, holds. A title in any script gets a
    readable ASCII file name. `check` refuses to send the scaffold text unedited.

    \b
    Example:
        newsletter new "Feedback that travels upstream"
        newsletter new "Year in review" --date 2027-12-07 --slug year-in-review
    """
    config = app.config
    date = None
    if date_text is not None:
        try:
            date = dt.date.fromisoformat(date_text)
        except ValueError:
            raise IssueError(f"expected YYYY-MM-DD, got {date_text!r}", field="--date") from None
    publication = load_publication(config, app.today())
    # A broken file may hold a date too, but it cannot say which: its own check says why.
    plan = plan_new_issue(config, publication.issues, title, app.now(), date=date, slug=slug)
    write_atomic(plan.path, plan.text)
    on_schedule = "" if is_scheduled_day(config, plan.date) else " (not a scheduled day)"
    click.echo(
        f"created {plan.path.relative_to(app.root)} (draft, to send on {plan.date}{on_schedule})"
    )


@click.command()
@click.argument("issue_refs", nargs=-1, metavar="[ISSUE]...")
@click.option("--strict", is_flag=True, help="Treat warnings as problems (exit 1).")
@pass_app
def check(app: AppContext, issue_refs: tuple[str, ...], strict: bool) -> None:
    """Validate issues and templates before anything is sent.

    Checks every issue (or the ones named by slug or path): front-matter, broken relative
    links and images, images without alt text, emails over 100 KB (Gmail clips them),
    leftover placeholders (TK, TODO, FIXME, lorem), the unsubscribe link and address in both
    templates, CSS warnings, ready issues dated off the schedule (warning), the text `new`
    scaffolds left in a ready issue, two ready issues on one date, a draft on a ready issue's
    date (warning), a `number:` that another issue's fixed number holds, and (for smtp
    delivery) the sample's example settings (warning).
    Exit 0: clean; 1: problems found; 2: a file that is not a usable issue.

    \b
    Example:
        newsletter check
        newsletter check 2026-10-listening-rounds --strict
    """
    config = app.config
    publication, selected = _select(app, issue_refs)
    problems: list[Problem] = []
    if not issue_refs:
        problems += check_publication(config, publication)
    for issue in selected:
        problems += check_rendered(config, render_issue(config, issue, publication.issues))
    for error in publication.broken if not issue_refs else []:
        click.echo(f"error: {error}", err=True)
    for problem in problems:
        click.echo(str(problem), err=problem.severity == "error")
    errors = sum(p.severity == "error" for p in problems) + len(publication.broken)
    warnings = len(problems) - errors
    checked = len(selected) + (0 if issue_refs else len(publication.broken))
    click.echo(f"checked {checked} issue(s): {errors} error(s), {warnings} warning(s)")
    if publication.broken and not issue_refs:
        sys.exit(2)
    if has_errors(problems) or (strict and warnings):
        sys.exit(1)


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: build/ in the publication).",
)
@pass_app
def build(app: AppContext, out: Path | None) -> None:
    """Render every issue to build/: <slug>.html, <slug>.txt and a complete <slug>.eml.

    The previews are personalised for a placeholder reader (no personal data), exactly as
    a subscriber would get them. The web archive is written to build/archive/. A file that
    is not a usable issue is skipped with a warning (exit 1); the others are built.

    \b
    Example:
        newsletter build
        newsletter build --out /tmp/preview
    """
    config = app.config
    out = (out or app.root / "build").resolve()
    publication = load_publication(config, app.today())
    _warn_broken(publication)
    issues = publication.issues
    renders: dict[str, RenderedIssue] = {}
    for issue in issues:
        renders[issue.slug] = rendered = render_issue(config, issue, issues)
        write_previews(rendered, out)
        click.echo(f"built {issue.slug} ({issue.status})")
    click.echo(f"wrote {len(issues)} issue preview(s) to {out}")
    # The archive reuses the renders: no issue goes through Markdown twice.
    report = build_archive(config, issues, out / "archive", today=app.today(), rendered=renders)
    click.echo(report.summary())
    if publication.broken:
        sys.exit(1)


@click.command()
@click.argument("issue_ref", metavar="ISSUE")
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free).")
@pass_app
def preview(app: AppContext, issue_ref: str, port: int) -> None:
    """Serve an issue's email on 127.0.0.1 at desktop and phone widths, plus its text part.

    The page re-renders on every reload, so edits to the Markdown or templates show at once.
    Stop with Ctrl-C.

    \b
    Example:
        newsletter preview 2026-10-listening-rounds
        newsletter preview content/2026-12-thanks-that-travel-upstream.md --port 8080
    """
    config = app.config
    today = app.today()
    load_publication(config, today).find(config, issue_ref)  # fail now, not on first request
    server = preview_server.make_server(config, issue_ref, port, today)
    click.echo(f"previewing at http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
