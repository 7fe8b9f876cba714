"""Size warnings for `check`: what works in a preview but not for every reader.

- The personalised HTML for the reader with the longest values any reader can have (an
  address of 254 characters, the SMTP limit; a token of the store's length) must stay under
  the clipping size too: Gmail cuts a message above ~102 KB and hides the rest, footer and
  unsubscribe included, behind "[Message clipped]".
- An image file over 1 MB costs every reader on a phone that much data per open, and some
  clients refuse to load such images at all.
Returns (message, text to find the line by) pairs; checks.py turns them into warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.content.render import RenderedIssue
from newsletter.store.subscribers import TOKEN_LENGTH

HTML_LIMIT_BYTES = 100 * 1024  # the limit checks.py applies to the preview reader
IMAGE_LIMIT_BYTES = 1024 * 1024
LONGEST_ADDRESS = 254  # RFC 5321: no reader's address is longer


@dataclass(frozen=True)
class LongestReader:
    """A reader whose personal values are as long as they can be."""

    email: str = "a" * 64 + "@" + ("b" * 62 + ".") * 2 + "c" * (LONGEST_ADDRESS - 64 - 1 - 126)
    first_name: str | None = "N" * 64
    token: str = "t" * TOKEN_LENGTH


def size_warnings(
    rendered: RenderedIssue,
    *,
    clipped: bool = False,
    html_limit: int = HTML_LIMIT_BYTES,
    image_limit: int = IMAGE_LIMIT_BYTES,
) -> list[tuple[str, str | None]]:
    """(message, the issue's text naming the file or None) for each size problem.

    `clipped`: the HTML is over the limit for the preview reader already (an error in
    checks.py), so the longest reader adds nothing to say."""
    warnings: list[tuple[str, str | None]] = []
    size = len(rendered.personalise(LongestReader()).html.encode("utf-8"))
    if size > html_limit and not clipped:
        warnings.append(
            (
                f"HTML is {size / 1024:.1f} KB for a reader with the longest possible address "
                f"and token; Gmail clips emails over about {html_limit // 1024} KB",
                None,
            )
        )
    seen: set[Path] = set()
    for link in rendered.body_links:
        path = link.local_path
        if link.tag != "img" or path is None or path in seen or not path.is_file():
            continue
        seen.add(path)
        bytes_ = path.stat().st_size
        if bytes_ > image_limit:
            warnings.append(
                (
                    f"image {link.written!r} is {bytes_ / 1024 / 1024:.1f} MB; every reader "
                    f"downloads it on every open: keep images under "
                    f"{image_limit // 1024 // 1024} MB",
                    link.written,
                )
            )
    return warnings
