"""Editor commands: `new`, `check`, `build`, `preview`."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from newsletter import preview as preview_server
from newsletter.archive import build_archive
from newsletter.checks import Problem, check_rendered, has_errors
from newsletter.config import Config
from newsletter.context import AppContext, pass_app
from newsletter.errors import IssueError
from newsletter.fsutil import write_atomic
from newsletter.issues import Issue, find_issue, load_issues, next_scheduled_day
from newsletter.links import slugify
from newsletter.message import IssueMessage
from newsletter.render import PreviewReader, RenderedIssue, render_issue

ISSUE_TEMPLATE = """\
---
title: {title}
date: {date}
summary: One sentence for the inbox preview and the archive.
tags: []
status: draft
---

Start writing here. Use `##` for section headings (the title is the page's only `#`).
"""


def _select(config: Config, refs: tuple[str, ...]) -> tuple[list[Issue], list[Issue]]:
    """(all issues, the ones named on the command line or all of them)."""
    issues = load_issues(config)
    if not refs:
        return issues, issues
    return issues, [find_issue(config, issues, ref) for ref in refs]


@click.command()
@click.argument("title")
@click.option(
    "--date", "date_text", metavar="YYYY-MM-DD", help="Send date (default: next scheduled day)."
)
@pass_app
def new(app: AppContext, title: str, date_text: str | None) -> None:
    """Scaffold a new draft issue in content/.

    The file is content/<YYYY-MM>-<slug>.md with the front-matter filled in; the date
    defaults to the next scheduled day (the first Tuesday of a month by default).

    \b
    Example:
        newsletter new "Feedback that travels upstream"
        newsletter new "Year in review" --date 2026-12-01
    """
    config = app.config
    if date_text is None:
        date = next_scheduled_day(config, dt.datetime.now(config.tz).date())
    else:
        try:
            date = dt.date.fromisoformat(date_text)
        except ValueError:
            raise IssueError(f"expected YYYY-MM-DD, got {date_text!r}", field="--date") from None
    slug = slugify(title)
    if not slug:
        raise IssueError("the title needs letters or digits (it becomes the file name)",
                         field="TITLE")  # fmt: skip
    path = config.content_dir / f"{date:%Y-%m}-{slug}.md"
    if path.exists():
        raise IssueError("already exists; choose another title or edit it", path=path)
    quoted = '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'
    write_atomic(path, ISSUE_TEMPLATE.format(title=quoted, date=date.isoformat()))
    click.echo(f"created {path.relative_to(app.root)} (draft, to send on {date})")


@click.command()
@click.argument("issue_refs", nargs=-1, metavar="[ISSUE]...")
@click.option("--strict", is_flag=True, help="Treat warnings as problems (exit 1).")
@pass_app
def check(app: AppContext, issue_refs: tuple[str, ...], strict: bool) -> None:
    """Validate issues and templates before anything is sent.

    Checks every issue (or the ones named by slug or path): front-matter, broken relative
    links and images, images without alt text, emails over 100 KB (Gmail clips them),
    leftover placeholders (TK, TODO, FIXME, lorem), the unsubscribe link and address in both
    templates, CSS warnings, and ready issues dated off the schedule (warning).
    Exit 0: clean; 1: problems found; 2: unusable input.

    \b
    Example:
        newsletter check
        newsletter check 2026-10-listening-rounds --strict
    """
    config = app.config
    issues, selected = _select(config, issue_refs)
    problems: list[Problem] = []
    for issue in selected:
        problems += check_rendered(config, render_issue(config, issue, issues))
    for problem in problems:
        click.echo(str(problem), err=problem.severity == "error")
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo(f"checked {len(selected)} issue(s): {errors} error(s), {warnings} warning(s)")
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
    a subscriber would get them. The web archive is written to build/archive/.

    \b
    Example:
        newsletter build
        newsletter build --out /tmp/preview
    """
    config = app.config
    out = (out or app.root / "build").resolve()
    issues = load_issues(config)
    renders: dict[str, RenderedIssue] = {}
    for issue in issues:
        renders[issue.slug] = rendered = render_issue(config, issue, issues)
        write_previews(rendered, out)
        click.echo(f"built {issue.slug} ({issue.status})")
    click.echo(f"wrote {len(issues)} issue preview(s) to {out}")
    # The archive reuses the renders: no issue goes through Markdown twice.
    report = build_archive(config, issues, out / "archive", rendered=renders)
    click.echo(report.summary())


def write_previews(rendered: RenderedIssue, out: Path) -> None:
    reader = PreviewReader()
    personal = rendered.personalise(reader)
    slug = rendered.issue.slug
    write_atomic(out / f"{slug}.html", personal.html)
    write_atomic(out / f"{slug}.txt", personal.text)
    write_atomic(out / f"{slug}.eml", preview_message(rendered))


def preview_message(rendered: RenderedIssue) -> bytes:
    """The complete RFC 5322 message a placeholder reader would get."""
    config, issue = rendered.config, rendered.issue
    reader = PreviewReader()
    personal = rendered.personalise(reader)
    date = dt.datetime.combine(issue.date, dt.time(9), tzinfo=config.tz)
    message = IssueMessage(config, slug=issue.slug, subject=rendered.subject, date=date)
    return message.render(reader, html=personal.html, text=personal.text)


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
    find_issue(config, load_issues(config), issue_ref)  # fail now, not on first request
    server = preview_server.make_server(config, issue_ref, port)
    click.echo(f"previewing at http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
