"""An issue's Markdown body -> HTML fragment that works outside the repository.

Relative links and images become absolute URLs under `base_url` (the archive publishes
`content/` files there; a link to another issue's `.md` file becomes that issue's page).
Images get an explicit width and an `alt`, so the email reads well with images blocked.
"""

from __future__ import annotations

import posixpath
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from newsletter import links
from newsletter.content.issues import Issue
from newsletter.settings import Config

if TYPE_CHECKING:  # Markdown and lxml load when an issue is rendered (a fast `send` start)
    import lxml.html

CONTENT_WIDTH = 560  # 600 px container minus padding
EXTENSIONS = ["tables", "fenced_code", "footnotes", "smarty", "attr_list", "sane_lists"]


@dataclass(frozen=True)
class BodyLink:
    """A link or image in the body, as written and as published."""

    tag: str  # "a" or "img"
    written: str
    url: str
    local_path: Path | None  # the file a relative link points to (may not exist)
    alt: str | None  # images only; None when the attribute is missing

    @property
    def broken(self) -> bool:
        return self.local_path is not None and not self.local_path.exists()


@dataclass(frozen=True)
class Body:
    html: str
    links: tuple[BodyLink, ...]


def render_markdown(config: Config, issue: Issue, issues: list[Issue]) -> Body:
    import lxml.html
    import markdown

    converter = markdown.Markdown(extensions=EXTENSIONS, output_format="html")
    raw = converter.convert(issue.body)
    if not raw.strip():
        return Body("", ())
    root = lxml.html.fragment_fromstring(raw, create_parent="div")
    found: list[BodyLink] = []
    slugs = {i.path: i.slug for i in issues}  # load_issues resolved the paths
    for element in root.iter("a", "img"):
        attribute = "href" if element.tag == "a" else "src"
        written = element.get(attribute)
        if written is None:
            continue
        url, local = _publish(config, issue, written, slugs)
        element.set(attribute, url)
        alt = element.get("alt") if element.tag == "img" else None
        if element.tag == "img":
            _size_image(element, local)
        if element.tag == "img" or local is not None:
            found.append(BodyLink(str(element.tag), written, url, local, alt))
    inner = (root.text or "") + "".join(
        lxml.html.tostring(child, encoding="unicode") for child in root
    )
    return Body(inner, tuple(found))


def _publish(
    config: Config, issue: Issue, written: str, slugs: dict[Path, str]
) -> tuple[str, Path | None]:
    """(absolute URL, local file) for a link as written in the issue."""
    parts = urlsplit(written)
    if parts.scheme or parts.netloc or written.startswith("#") or not parts.path:
        return written, None
    local = (issue.path.parent / unquote(parts.path)).resolve()
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    if local in slugs:
        return links.issue_url(config, slugs[local]) + fragment, local
    relative = posixpath.normpath(posixpath.join(_relative_dir(config, issue), parts.path)).lstrip(
        "/"
    )
    query = f"?{parts.query}" if parts.query else ""
    return config.archive_url(relative) + query + fragment, local


def _relative_dir(config: Config, issue: Issue) -> str:
    try:
        return issue.path.parent.resolve().relative_to(config.content_dir.resolve()).as_posix()
    except ValueError:
        return ""


def _size_image(element: lxml.html.HtmlElement, local: Path | None) -> None:
    width = element.get("width")
    natural = image_size(local) if local is not None and local.is_file() else None
    if not (width and width.isdigit()):
        # Retina-sized images are shown at most at the content width.
        shown = min(natural[0], CONTENT_WIDTH) if natural else CONTENT_WIDTH
        element.set("width", str(shown))
        if natural and natural[0]:
            element.set("height", str(round(natural[1] * shown / natural[0])))
        width = element.get("width")
    # Fluid: as wide as the column and never wider than its own size, so neither a phone nor a
    # blocked image (whose box takes the width attribute) widens the layout. The width
    # attribute stays for Outlook, which ignores CSS widths on images.
    element.set("style", f"display:block;width:100%;max-width:{width}px;height:auto;border:0")


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF or JPEG header; None when unknown."""
    with path.open("rb") as handle:
        head = handle.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return int(width), int(height)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
            return int(width), int(height)
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(path)
    return None


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    data = path.read_bytes()
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # start of frame: height then width
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None
