"""HTML fragment -> readable plain text for the email's text/plain part.

Not a tag stripper: paragraphs are wrapped at 72 columns, headings underlined, emphasis kept
as `_italic_` and `*bold*`, lists and quotes kept, tables laid out in columns, footnotes
moved under a "Notes" heading (markers are superscript digits, so they never look like the
`[n]` of a link) and every link listed at the end as `[n] URL`, the way classic text
newsletters read. `text_parts` keeps the three apart so the template can put the sign-off
between the notes and the links.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
           "pre", "table", "tr", "hr", "dl", "dt", "dd", "figure", "figcaption"}  # fmt: skip
_UNDERLINE = {"h1": "=", "h2": "-", "h3": "~"}
_SPACES = re.compile(r"\s+")
_FOOTNOTE_REF = "#footnote-ref"
_EMPHASIS = {"em": "_", "i": "_", "strong": "*", "b": "*"}
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
NOTES_HEADING = "Notes"
LINKS_HEADING = "Links"


@dataclass(frozen=True)
class TextParts:
    """The text of a body, its footnotes ("1. ..." blocks) and its links ("[1] URL" lines);
    notes and links are empty strings when there are none."""

    body: str
    notes: str
    links: str


@dataclass
class _List:
    ordered: bool
    number: int = 0  # the current item's number
    bullet_pending: bool = False  # only an item's first paragraph carries the bullet

    @property
    def bullet(self) -> str:
        return f"{self.number}. " if self.ordered else "- "


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # Finished blocks of text; True marks an item of a tight list (no blank line before).
        self.out: list[tuple[str, bool]] = []
        self.links: list[str] = []
        self.inline: list[str] = []
        self.quote_depth = 0
        self.lists: list[_List] = []
        self.pre = 0
        self.heading: str | None = None
        self.href_stack: list[tuple[str | None, int]] = []  # (href, where its text starts)
        self.table: list[list[str]] | None = None
        self.cell: list[str] | None = None
        self.skip = 0  # inside <style>/<script>/footnote back-references
        self.in_ref = False  # inside a footnote marker: its digits become superscripts
        self.notes_at: int | None = None  # index in `out` where the footnotes begin
        self.in_notes = 0  # depth of <div> inside the footnotes

    # -- helpers -------------------------------------------------------------------------
    def _flush(self, tight: bool = False) -> None:
        text = "".join(self.inline)
        self.inline = []
        if self.pre:
            body = text.strip("\n")
            if body:
                self._emit("\n".join("    " + line for line in body.split("\n")))
            return
        text = _SPACES.sub(" ", text).strip()
        if not text:
            return
        if self.heading:
            mark = _UNDERLINE.get(self.heading)
            self._emit(f"{text}\n{mark * min(len(text), WIDTH)}" if mark else text.upper())
            return
        indent = "  " * max(len(self.lists) - 1, 0)
        first = rest = indent
        if self.lists:
            current = self.lists[-1]
            rest = indent + " " * len(current.bullet)
            first = indent + current.bullet if current.bullet_pending else rest
            current.bullet_pending = False
        width = WIDTH - 2 * self.quote_depth
        wrapped = textwrap.fill(
            text, width=width, initial_indent=first, subsequent_indent=rest,
            break_long_words=False, break_on_hyphens=False,
        )  # fmt: skip
        self._emit(wrapped, tight and bool(self.lists))

    def _emit(self, block: str, tight: bool = False) -> None:
        if self.quote_depth:
            block = "\n".join(
                ("> " * self.quote_depth + line).rstrip() for line in block.split("\n")
            )
        self.out.append((block, tight))

    # -- parser events -------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in ("style", "script") or (
            tag == "a" and "footnote-backref" in (attr.get("class") or "")
        ):
            self.skip += 1
            return
        if tag == "a":
            href = attr.get("href")
            if "footnote-ref" in (attr.get("class") or ""):
                href = _FOOTNOTE_REF
                self.in_ref = True
            sink = self.cell if self.cell is not None else self.inline
            self.href_stack.append((href, len(sink)))
            return
        if tag in _EMPHASIS and not self.pre:
            (self.cell if self.cell is not None else self.inline).append(_EMPHASIS[tag])
            return
        if tag == "div" and (self.in_notes or "footnote" in (attr.get("class") or "")):
            if not self.in_notes:
                self._flush()
                self.notes_at = len(self.out)
            self.in_notes += 1
            return
        if tag == "hr" and self.in_notes:
            return  # the notes get a heading instead of a rule
        if self.cell is not None and tag not in ("td", "th", "tr"):
            if tag == "br":
                self.cell.append(" ")
            return
        if tag in _BLOCKS or tag == "br":
            if tag == "br":
                self.inline.append("\n" if self.pre else " ")
                return
            # Text directly in an <li> (no <p>) is a tight list: items go on adjacent lines.
            self._flush(tight=tag in ("li", "ul", "ol"))
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.heading = tag
        elif tag == "blockquote":
            self.quote_depth += 1
        elif tag in ("ul", "ol"):
            start = attr.get("start") or "1"
            first = int(start) if start.isdigit() else 1
            self.lists.append(_List(ordered=tag == "ol", number=first - 1))
        elif tag == "li" and self.lists:
            self.lists[-1].number += 1
            self.lists[-1].bullet_pending = True
        elif tag == "pre":
            self.pre += 1
        elif tag == "hr":
            self._emit("-" * 24)
        elif tag == "table":
            self.table = []
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img":
            alt = (attr.get("alt") or "").strip()
            if alt:
                self.inline.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script") or (tag == "a" and self.skip):
            self.skip = max(self.skip - 1, 0)
            return
        if tag in ("td", "th") and self.cell is not None and self.table is not None:
            self.table[-1].append(_SPACES.sub(" ", "".join(self.cell)).strip())
            self.cell = None
            return
        if tag == "table" and self.table is not None:
            self._emit(_layout_table(self.table))
            self.table = None
            return
        if tag in _EMPHASIS and not self.pre:
            (self.cell if self.cell is not None else self.inline).append(_EMPHASIS[tag])
            return
        if self.cell is not None:
            if tag == "a":
                self._close_link(self.cell)
            return
        if tag == "a":
            self._close_link(self.inline)
            return
        if tag == "div" and self.in_notes:
            self._flush()
            self.in_notes -= 1
            return
        if tag in _BLOCKS:
            self._flush(tight=tag in ("li", "ul", "ol"))
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.heading = None
        elif tag == "blockquote":
            self.quote_depth -= 1
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "pre":
            self.pre -= 1

    def _close_link(self, sink: list[str]) -> None:
        href, start = self.href_stack.pop() if self.href_stack else (None, len(sink))
        if href == _FOOTNOTE_REF:
            self.in_ref = False
            return
        if not href or href.startswith("#"):
            return
        text = "".join(sink[start:]).strip()  # the link's own text
        if href.startswith("mailto:") and text and text in href:
            return
        if href == text:
            return
        if href not in self.links:
            self.links.append(href)
        sink.append(f" [{self.links.index(href) + 1}]")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        target = self.cell if self.cell is not None else self.inline
        target.append(data.translate(_SUPERSCRIPT) if self.in_ref else data)


def _layout_table(rows: list[list[str]]) -> str:
    rows = [row for row in rows if row]
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    widths = [max((len(row[i]) if i < len(row) else 0) for row in rows) for i in range(columns)]
    if sum(widths) + 3 * (columns - 1) > WIDTH:
        return _layout_records(rows)
    lines = []
    for index, row in enumerate(rows):
        cells = [(row[i] if i < len(row) else "").ljust(widths[i]) for i in range(columns)]
        lines.append(" | ".join(cells).rstrip())
        if index == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _layout_records(rows: list[list[str]]) -> str:
    """A table too wide for 72 columns: one block per row, 'Header: value' lines."""
    header, *body = rows
    blocks = []
    for row in body:
        lines = [row[0]] if row else []
        for name, value in zip(header[1:], row[1:], strict=False):
            lines.append(
                textwrap.fill(
                    f"{name}: {value}",
                    width=WIDTH,
                    initial_indent="  ",
                    subsequent_indent="    ",
                    break_long_words=False,
                )
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _join(out: list[tuple[str, bool]]) -> str:
    blocks = [(block, tight) for block, tight in out if block.strip()]
    return "".join(
        ("" if index == 0 else "\n" if tight and blocks[index - 1][1] else "\n\n") + block
        for index, (block, tight) in enumerate(blocks)
    )


def text_parts(html: str) -> TextParts:
    """The plain text of an HTML fragment: body, footnotes and links, kept apart."""
    builder = _TextBuilder()
    builder.feed(html)
    builder.close()
    builder._flush()
    split = len(builder.out) if builder.notes_at is None else builder.notes_at
    links = "\n".join(f"[{n}] {url}" for n, url in enumerate(builder.links, 1))
    return TextParts(_join(builder.out[:split]), _join(builder.out[split:]), links)


def section(heading: str, text: str) -> str:
    """`text` under an underlined heading, or nothing when `text` is empty."""
    return f"{heading}\n{'-' * len(heading)}\n\n{text}" if text else ""


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: the body, then its Notes and its Links."""
    parts = text_parts(html)
    sections = [
        parts.body,
        section(NOTES_HEADING, parts.notes),
        section(LINKS_HEADING, parts.links),
    ]
    return "\n\n".join(s for s in sections if s)
