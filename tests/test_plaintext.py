"""The text/plain part: Markdown's HTML turned into text a person would write."""

from __future__ import annotations

import re

import markdown
import pytest

from newsletter.content.markup import EXTENSIONS
from newsletter.content.plaintext import WIDTH, TextParts, html_to_text, text_parts

HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")


def text_of(source: str) -> str:
    """Markdown -> HTML with the renderer's extensions -> plain text."""
    out = html_to_text(markdown.markdown(source, extensions=EXTENSIONS))
    assert not HTML_TAG.search(out), out
    return out


def test_paragraphs_are_wrapped_and_separated() -> None:
    words = " ".join(f"word{n}" for n in range(60))
    out = text_of(f"{words}\n\nSecond *paragraph* with **bold** & an ampersand.")
    first, second = out.split("\n\n")
    assert all(len(line) <= WIDTH for line in first.split("\n"))
    assert first.count("\n") >= 3
    assert _SPACES_RE.sub(" ", first) == words
    assert second == "Second _paragraph_ with *bold* & an ampersand."  # emphasis kept


_SPACES_RE = re.compile(r"\s+")


def test_headings_are_underlined() -> None:
    out = text_of("# Title\n\n## Section\n\n### Part\n\n#### Small")
    assert out == "Title\n=====\n\nSection\n-------\n\nPart\n~~~~\n\nSMALL"


def test_tight_list() -> None:
    assert text_of("Before:\n\n- one\n- two\n- three\n\nAfter.") == (
        "Before:\n\n- one\n- two\n- three\n\nAfter."
    )


def test_nested_list() -> None:
    out = text_of("- fruit\n    - apple\n    - pear\n        - conference\n- bread")
    assert out == "- fruit\n  - apple\n  - pear\n    - conference\n- bread"


def test_loose_list_keeps_its_paragraphs() -> None:
    out = text_of("1. First\n\n    More about first.\n\n2. Second\n")
    assert out == "1. First\n\n   More about first.\n\n2. Second"


def test_ordered_numbering_counts_up() -> None:
    # Markdown numbers the items itself; the source numbers do not matter.
    assert text_of("1. a\n1. b\n1. c") == "1. a\n2. b\n3. c"


def test_ordered_list_keeps_its_start_number() -> None:
    assert text_of("3. third\n4. fourth") == "3. third\n4. fourth"


def test_list_item_wraps_under_its_text() -> None:
    long_item = " ".join(["serve"] * 30)
    out = text_of(f"10. {long_item}")
    lines = out.split("\n")
    assert lines[0].startswith("10. serve")
    assert all(line.startswith("    serve") for line in lines[1:])
    assert len(lines) > 1


def test_blockquotes() -> None:
    out = text_of("> The report told us *how long*.\n>\n> > Nested.\n\nAfter.")
    assert out == "> The report told us _how long_.\n\n> > Nested.\n\nAfter."


def test_blockquote_lines_are_wrapped_inside_the_marker() -> None:
    out = text_of("> " + " ".join(["listen"] * 40))
    lines = out.split("\n")
    assert len(lines) > 1
    assert all(line.startswith("> listen") and len(line) <= WIDTH for line in lines)


def test_narrow_table_is_laid_out_in_columns() -> None:
    out = text_of(
        "| Team | Promise | Days |\n|---|---|---|\n| Finance | Answer | 2 |\n| IT | Fix | 10 |"
    )
    assert out == (
        "Team    | Promise | Days\n"
        "--------+---------+-----\n"
        "Finance | Answer  | 2\n"
        "IT      | Fix     | 10"
    )


def test_wide_table_becomes_records() -> None:
    long = "a description far too long to sit in a column next to the others"
    out = text_of(
        f"| Handoff | What goes wrong | What helps |\n|---|---|---|\n"
        f"| Request | {long} | An intake form |\n| Approval | Waits | A backup |"
    )
    assert all(len(line) <= WIDTH for line in out.split("\n"))
    first, second = out.split("\n\n")
    assert first.startswith("Request\n  What goes wrong: a description far too long")
    assert first.endswith("  What helps: An intake form")
    assert second == "Approval\n  What goes wrong: Waits\n  What helps: A backup"


def test_table_cell_links_are_listed() -> None:
    out = text_of("| Name | Where |\n|---|---|\n| Docs | [site](https://docs.example.org/) |")
    assert "Docs | site [1]" in out
    assert out.endswith("Links\n-----\n\n[1] https://docs.example.org/")


def test_code_block_is_indented_and_not_wrapped() -> None:
    long = "print('a long line that must not wrap at seventy-two columns')"
    code = f"x = 1  # keep  the   spaces\n    if x < 2 and y > 3: {long}"
    out = text_of(f"Run:\n\n```\n{code}\n```\n\nDone.")
    assert out == (
        f"Run:\n\n    x = 1  # keep  the   spaces\n        if x < 2 and y > 3: {long}\n\nDone."
    )


def test_footnotes() -> None:
    out = text_of(
        "Claim one[^a] and two[^b].\n\n[^a]: Source [here](https://a.example.org).\n"
        "[^b]: Another note."
    )
    # superscript markers: never mistaken for the [n] of a link
    assert out == (
        "Claim one¹ and two².\n\n"
        "Notes\n-----\n\n1. Source here [1].\n\n2. Another note.\n\n"
        "Links\n-----\n\n[1] https://a.example.org"
    )


def test_notes_and_links_are_kept_apart_for_the_template() -> None:
    source = "A *b*[^n] [c](https://c.example/).\n\n[^n]: **Note** [d](https://d.example/)."
    parts = text_parts(markdown.markdown(source, extensions=EXTENSIONS))
    assert parts == TextParts(
        body="A _b_¹ c [1].",
        notes="1. *Note* d [2].",
        links="[1] https://c.example/\n[2] https://d.example/",
    )
    assert text_parts("<p>Plain.</p>") == TextParts("Plain.", "", "")


def test_emphasis_is_not_added_inside_code() -> None:
    assert html_to_text("<pre><em>x</em> <b>y</b></pre>") == "    x y"


def test_links_are_numbered_once_each() -> None:
    out = text_of(
        "[Lean](https://en.wikipedia.org/wiki/Lean) and [gemba](https://gemba.example/) "
        "and [lean again](https://en.wikipedia.org/wiki/Lean) and [top](#top)."
    )
    assert out == (
        "Lean [1] and gemba [2] and lean again [1] and top.\n\n"
        "Links\n-----\n\n[1] https://en.wikipedia.org/wiki/Lean\n[2] https://gemba.example/"
    )


def test_a_bare_url_or_address_is_not_listed_twice() -> None:
    out = text_of("See [earlier](https://a.example/) then <https://b.example/> or <x@example.org>.")
    assert "https://b.example/ [" not in out
    assert "Links\n-----\n\n[1] https://a.example/" in out
    assert "[2]" not in out
    assert "x@example.org" in out


def test_images_become_their_alt_text() -> None:
    out = text_of(
        "![A chart of waiting times](https://x.example/c.png)\n\n![](https://x.example/d.png)"
    )
    assert out == "[A chart of waiting times]"


def test_entities_are_decoded() -> None:
    assert text_of('Fish &amp; chips &lt;3 &#8212; "quoted"') == "Fish & chips <3 — “quoted”"


@pytest.mark.parametrize("tag", ["style", "script"])
def test_style_and_script_are_dropped(tag: str) -> None:
    assert html_to_text(f"<p>Keep</p><{tag}>p {{ color: red }}</{tag}><p>this</p>") == (
        "Keep\n\nthis"
    )


def test_horizontal_rule() -> None:
    assert text_of("Above\n\n---\n\nBelow") == "Above\n\n" + "-" * 24 + "\n\nBelow"


def test_empty_input() -> None:
    assert html_to_text("") == ""
