"""`check`'s size warnings: the HTML for the longest possible reader, and heavy images."""

from __future__ import annotations

from pathlib import Path

from conftest import SAMPLE_TODAY, run_cli

from newsletter.config import load_config
from newsletter.content.issues import find_issue, load_issues
from newsletter.content.render import PreviewReader, RenderedIssue, render_issue
from newsletter.content.sizecheck import LONGEST_ADDRESS, LongestReader, size_warnings
from newsletter.store.subscribers import TOKEN_LENGTH

SLUG = "2031-01-big"
# the signature and IHDR of a 1120 x 560 PNG: what markup.image_size reads
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (1120).to_bytes(4) + (560).to_bytes(4)


def write_issue(root: Path, body: str) -> Path:
    path = root / "content" / f"{SLUG}.md"
    path.write_text(f"---\ntitle: Big\ndate: 2031-01-07\nsummary: S.\n---\n{body}\n", "utf-8")
    return path


def rendered_issue(root: Path) -> RenderedIssue:
    config = load_config(root, environ={})
    issues = load_issues(config, SAMPLE_TODAY)
    return render_issue(config, find_issue(config, issues, SLUG), issues)


def html_bytes(rendered: RenderedIssue, reader: object) -> int:
    return len(rendered.personalise(reader).html.encode("utf-8"))  # type: ignore[arg-type]


def test_the_longest_reader_is_as_long_as_any_can_be() -> None:
    reader = LongestReader()
    assert len(reader.email) == LONGEST_ADDRESS
    local, _, domain = reader.email.partition("@")
    assert len(local) == 64 and all(len(label) <= 63 for label in domain.split("."))
    assert len(reader.token) == TOKEN_LENGTH


def test_html_over_the_limit_only_for_the_longest_reader_warns(publication: Path) -> None:
    write_issue(publication, "Text.")
    rendered = rendered_issue(publication)
    preview = html_bytes(rendered, PreviewReader())
    longest = html_bytes(rendered, LongestReader())
    assert longest > preview  # the address appears twice, the token three times
    between = (preview + longest) // 2
    (warning,) = size_warnings(rendered, html_limit=between)
    message, where = warning
    assert message.startswith(f"HTML is {longest / 1024:.1f} KB for a reader with the longest")
    assert where is None
    assert size_warnings(rendered, html_limit=longest) == []
    # over the limit for the preview reader too: checks.py reports that as an error already
    assert size_warnings(rendered, html_limit=between, clipped=True) == []


def test_an_image_over_1_mb_is_a_warning_on_its_line(publication: Path) -> None:
    images = publication / "content" / "images"
    (images / "huge.png").write_bytes(PNG_HEADER + b"\0" * (1024 * 1024 + 1))
    (images / "fine.png").write_bytes(PNG_HEADER + b"\0" * 1000)
    path = write_issue(
        publication,
        "Intro.\n\n![A small chart](images/fine.png)\n\n![A huge photo](images/huge.png)\n\n"
        "![The huge photo again](images/huge.png)",
    )
    code, stdout, stderr = run_cli(publication, "check", SLUG)
    assert (code, stderr) == (0, "")  # warnings go to stdout; only errors to stderr
    assert stdout == (
        f"{path}:10: warning: image 'images/huge.png' is 1.0 MB; every reader downloads it "
        "on every open: keep images under 1 MB\n"
        "checked 1 issue(s): 0 error(s), 1 warning(s)\n"
    )
    assert run_cli(publication, "check", SLUG, "--strict").code == 1
