"""What `newsletter build` writes for each issue: the HTML, the text and the complete message
a placeholder reader would get (no personal data), exactly as a subscriber gets them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from newsletter.content.render import PreviewReader, RenderedIssue
from newsletter.fsutil import write_atomic
from newsletter.mail.message import IssueMessage


def write_previews(rendered: RenderedIssue, out: Path) -> None:
    """`<slug>.html`, `<slug>.txt` and `<slug>.eml` in `out`, each written whole."""
    reader = PreviewReader()
    personal = rendered.personalise(reader)
    slug = rendered.issue.slug
    write_atomic(out / f"{slug}.html", personal.html)
    write_atomic(out / f"{slug}.txt", personal.text)
    write_atomic(out / f"{slug}.eml", preview_message(rendered))


def preview_message(rendered: RenderedIssue) -> bytes:
    """The complete RFC 5322 message a placeholder reader would get, dated 09:00 on the
    issue's day in the publication's zone (a preview must not depend on when it is built)."""
    config, issue = rendered.config, rendered.issue
    reader = PreviewReader()
    personal = rendered.personalise(reader)
    date = dt.datetime.combine(issue.date, dt.time(9), tzinfo=config.tz)
    message = IssueMessage(config, slug=issue.slug, subject=rendered.subject, date=date)
    return message.render(reader, html=personal.html, text=personal.text)
