"""Clean an issue's HTML for the web archive with nh3 (the Rust `ammonia` sanitiser).

Python-Markdown passes raw HTML in an issue straight through, so an editor (or a pasted
snippet) could put `<script>`, `onerror=` or `javascript:` links into a page served from the
publication's own origin. Everything the issues legitimately use survives: tables (with their
alignment), footnotes, images with size and the markup module's inline style, code blocks with
their `language-*` class and classes or ids set through attr_list.
"""

from __future__ import annotations

import nh3

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
        "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
        "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary",
        "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "u", "ul", "var",
    }
)  # fmt: skip
_CELL = {"style", "align", "colspan", "rowspan", "scope"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"class", "id", "title", "lang", "dir"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height", "style", "loading"},
    "td": _CELL,
    "th": _CELL,
    "ol": {"start", "reversed", "type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "col": {"span"},
    "colgroup": {"span"},
    "time": {"datetime"},
}
# Only what markup.py and the tables extension write; no position, no url(), no expressions.
ALLOWED_STYLE = frozenset(
    {"display", "max-width", "width", "height", "border", "text-align", "vertical-align"}
)
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})


def sanitize_html(fragment: str) -> str:
    """The fragment with every script, event handler, unsafe URL and unknown tag removed."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style", "template", "noscript", "iframe", "object"},
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=set(URL_SCHEMES),
        filter_style_properties=set(ALLOWED_STYLE),
        strip_comments=True,
        # No target= is allowed, so rel=noopener is not needed; leaving rel off keeps
        # footnote and in-page links clean.
        link_rel=None,
    )
