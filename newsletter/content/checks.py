"""Pre-flight checks of a loaded, rendered issue: what would embarrass us once it is sent.

Loading errors (bad YAML, unknown key...) are IssueErrors raised before this runs; here the
issue is well-formed and we look for broken links, missing alt text, Gmail clipping, leftover
placeholders, a footer without its unsubscribe, and a date off the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from newsletter.cadence import first_scheduled_on_or_after, is_scheduled_day
from newsletter.content.issues import Issue
from newsletter.content.publication import Publication
from newsletter.content.render import PreviewReader, RenderedIssue, SlotTemplate
from newsletter.settings import WEEKDAYS, Config

Severity = Literal["error", "warning"]
GMAIL_CLIP_BYTES = 100 * 1024  # Gmail clips at about 102 KB; keep a margin
# Editors' marks are upper case ("TK" = to come); "lorem" in any case is filler text.
_PLACEHOLDER = re.compile(r"\b(?:TK|TODO|FIXME)\b|\b(?i:lorem)\b")


@dataclass(frozen=True)
class Problem:
    severity: Severity
    path: Path | str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.severity}: {self.message}"


def has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def check_rendered(config: Config, rendered: RenderedIssue) -> list[Problem]:
    """Every problem found in one rendered issue, in file order where there is a line."""
    # Imported when a check runs: `send` loads this module at its start, and checks only
    # what it has rendered (tests/test_cli_start.py).
    from newsletter.content.scaffold import SCAFFOLD_BODY, SCAFFOLD_SUMMARY
    from newsletter.content.sizecheck import size_warnings
    from newsletter.content.templatesource import template_file

    issue = rendered.issue
    problems: list[Problem] = []
    lines = _lines(issue)  # read once: every check below reports a line of this file

    def add(
        severity: Severity, message: str, line: int | None = None, path: Path | str = ""
    ) -> None:
        problems.append(Problem(severity, path or issue.path, line, message))

    content = config.content_dir.resolve()
    for link in rendered.body_links:
        line = _line_of(issue, lines, link.written)
        if link.broken:
            what = "image" if link.tag == "img" else "link"
            add("error", f"broken {what} {link.written!r}: no file {link.local_path}", line)
        elif link.local_path is not None and not link.local_path.is_relative_to(content):
            # The archive publishes files under content/ only: this URL would be a 404.
            what = "image" if link.tag == "img" else "link"
            add("error", f"{what} {link.written!r} points outside content/, which is not "
                "published; move the file into content/", line)  # fmt: skip
        if link.tag == "img" and not (link.alt or "").strip():
            add(
                "error",
                f"image {link.written!r} has no alt text; write ![what it shows](...)",
                line,
            )

    for number, text in lines:
        for match in _PLACEHOLDER.finditer(text):
            add("error", f"leftover placeholder {match.group(0)!r}", number)
    for needle in (SCAFFOLD_BODY, SCAFFOLD_SUMMARY):
        if (line := _line_of(issue, lines, needle, front_matter=True)) is not None:
            # A draft may still hold it; a ready issue would mail it to every reader.
            severity: Severity = "error" if issue.is_ready else "warning"
            add(severity, "still holds the text `newsletter new` wrote; write your own", line)

    html = rendered.personalise(PreviewReader())
    size = len(html.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        add("error", f"HTML is {size / 1024:.0f} KB; Gmail clips emails over about 100 KB")
    for message, written in size_warnings(rendered, clipped=size > GMAIL_CLIP_BYTES):
        add("warning", message, _line_of(issue, lines, written) if written else None)

    text_slots = set(rendered.text.slots)
    if not _slot_in_href(rendered.html, "unsubscribe_url"):
        add("error", "no unsubscribe link: expected href=\"{{ slot.unsubscribe_url }}\"",
            path=template_file(config, "email.html"))  # fmt: skip
    if "unsubscribe_address" not in rendered.html.slots:
        add("error", "no unsubscribe address: expected {{ slot.unsubscribe_address }}",
            path=template_file(config, "email.html"))  # fmt: skip
    if not {"unsubscribe_url", "unsubscribe_address"} & text_slots:
        add("error", "no unsubscribe address or link: expected {{ slot.unsubscribe_address }}",
            path=template_file(config, "email.txt"))  # fmt: skip

    for warning in rendered.inliner_warnings:
        add("warning", f"CSS: {warning}", path=template_file(config, "email.html"))

    if issue.is_ready and not is_scheduled_day(config, issue.date):
        weekday = WEEKDAYS[issue.date.weekday()]
        expected = first_scheduled_on_or_after(config, issue.date.replace(day=1))
        add(
            "warning",
            f"ready issue dated {issue.date} ({weekday}), but the schedule's day that month "
            f"is {expected}: it would never be sent by `send --due`",
            _line_of(issue, lines, "date:", front_matter=True),
        )
    return sorted(problems, key=lambda p: (str(p.path) != str(issue.path), p.line or 0))


def check_publication(config: Config, publication: Publication) -> list[Problem]:
    """What concerns several issues or the settings: two issues on one date, numbers that
    cannot be honoured, and example values left in newsletter.yaml. (Broken files are
    `publication.broken`, reported as the errors they are.)"""
    problems: list[Problem] = []
    for clash in publication.clashes:
        level: Severity = "error" if clash.holder_fixed else "warning"
        problems.append(Problem(level, clash.issue.path, clash.issue.number_line, clash.message))
    by_date: dict[object, list[Issue]] = {}
    for issue in publication.issues:
        by_date.setdefault(issue.date, []).append(issue)
    for date, same in by_date.items():
        ready = [i for i in same if i.is_ready]
        for issue in same:
            others = ", ".join(o.slug for o in same if o is not issue)
            if not others:
                continue
            if issue.is_ready and len(ready) > 1:
                message = f"two ready issues on {date} (also {others}): one issue per send date"
                problems.append(Problem("error", issue.path, None, message))
            elif not issue.is_ready and ready:
                message = (f"draft dated {date}, the day of ready issue {ready[0].slug}; "
                           "it blocks nothing, but move it before you set it ready")  # fmt: skip
                problems.append(Problem("warning", issue.path, None, message))
    if config.delivery.transport == "smtp":
        problems += _example_settings(config)
    return problems


_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")
SAMPLE_POSTAL_ADDRESS = "1 Example Street, Springfield"


def _example_settings(config: Config) -> list[Problem]:
    """The sample's example values, still in place for a real send (never blocks: test
    set-ups send to example domains on purpose)."""
    found = []
    for key, value in (("from", config.sender), ("base_url", config.base_url)):
        host = value.rpartition("@")[2] if key == "from" else urlsplit(value).hostname or ""
        host = host.strip(">").lower()
        if any(host == d or host.endswith("." + d) for d in _EXAMPLE_DOMAINS):
            found.append(f"{key} still uses the example domain {host}")
    if config.postal_address.strip() == SAMPLE_POSTAL_ADDRESS:
        found.append("postal_address is still the sample's")
    path = config.root / "newsletter.yaml"
    problems = [Problem("warning", path, None, f"{text}; set your own") for text in found]
    # Gmail, Yahoo and Microsoft's bulk-sender rules: signed mail and one-click unsubscribe.
    if config.dkim is None:
        problems.append(Problem("warning", path, None, "dkim: not configured; Gmail, Yahoo "
                                "and Microsoft junk or refuse unsigned bulk mail"))  # fmt: skip
    if config.web.public_url is None:
        problems.append(Problem("warning", path, None, "web.public_url: not configured; bulk "
                                "senders must offer one-click unsubscribe (`newsletter serve`, "
                                "RFC 8058)"))  # fmt: skip
    return problems


def _slot_in_href(template: SlotTemplate, slot: str) -> bool:
    parts = template.parts
    return any(
        parts[i] == slot and parts[i - 1].endswith('href="') for i in range(1, len(parts), 2)
    )


def _lines(issue: Issue) -> list[tuple[int, str]]:
    """(line number, text) of the front-matter and body, fenced code included."""
    text = issue.path.read_text(encoding="utf-8-sig")
    return list(enumerate(text.splitlines(), start=1))


def _line_of(
    issue: Issue, lines: list[tuple[int, str]], needle: str, *, front_matter: bool = False
) -> int | None:
    for number, text in lines:
        if not front_matter and number < issue.body_line:
            continue
        if needle in text:
            return number
    return None
