"""Rendering: `newsletter build` on the sample, slots that survive premailer, personalise."""

from __future__ import annotations

import email.policy
import html
import re
from collections import Counter
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

import lxml.html
import pytest
from conftest import SAMPLE_TODAY, copy_sample, run_cli

from newsletter import links
from newsletter.config import load_config
from newsletter.content import render
from newsletter.content.cssinline import clear_cache
from newsletter.content.issues import Issue, find_issue, load_issues
from newsletter.content.render import (
    SLOTS,
    PreviewReader,
    RenderedIssue,
    inline_css,
    render_issue,
    subject_for,
)
from newsletter.settings import Config

STYLED_TAGS = ("p", "a", "h1", "h2", "h3", "td", "th")
HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
HTML_ENTITY = re.compile(r"&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
HANDOFFS = "2026-08-handoffs-are-the-product"
FIRST = "2026-07-your-first-customer-sits-next-to-you"


@dataclass(frozen=True)
class Reader:
    email: str
    first_name: str | None
    token: str


# -- `newsletter build` on the sample publication -----------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(tmp_path_factory.mktemp("render") / "publication")


@pytest.fixture(scope="module")
def built(sample: Path) -> Path:
    code, stdout, stderr = run_cli(sample, "build")
    assert code == 0, stderr
    assert "wrote 5 issue preview(s)" in stdout
    return sample / "build"


@pytest.fixture(scope="module")
def config(sample: Path) -> Config:
    return load_config(sample, environ={})


@pytest.fixture(scope="module")
def issues(config: Config) -> list[Issue]:
    return load_issues(config, SAMPLE_TODAY)


@pytest.fixture(scope="module")
def rendered(config: Config, issues: list[Issue]) -> RenderedIssue:
    return render_issue(config, find_issue(config, issues, HANDOFFS), issues)


def slugs(built: Path) -> list[str]:
    found = sorted(p.stem for p in built.glob("*.html"))
    assert len(found) == 5
    return found


class _StyleAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()
        self.unstyled: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in STYLED_TAGS:
            self.seen[tag] += 1
            if not (dict(attrs).get("style") or "").strip():
                self.unstyled.append(f"<{tag} {attrs}> at line {self.getpos()[0]}")


def test_every_element_carries_an_inline_style(built: Path) -> None:
    totals: Counter[str] = Counter()
    for slug in slugs(built):
        audit = _StyleAudit()
        audit.feed((built / f"{slug}.html").read_text(encoding="utf-8"))
        assert audit.unstyled == [], slug
        totals += audit.seen
    # The sample exercises every styled tag (the table is in the August issue).
    assert all(totals[tag] > 0 for tag in STYLED_TAGS), totals


def test_no_style_block_left_for_clients_that_strip_it(built: Path) -> None:
    for slug in slugs(built):
        page = (built / f"{slug}.html").read_text(encoding="utf-8")
        # Only the @media rules (responsive, dark mode) and Outlook's own block may stay.
        page = re.sub(r"<!--\[if mso\]>.*?<!\[endif\]-->", "", page, flags=re.S)
        for block in re.findall(r"<style[^>]*>(.*?)</style>", page, re.S):
            outside_media = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", block)
            rules = [r for r in re.findall(r"([^{}]+)\{", outside_media) if r.strip()]
            assert all("[data-ogsc]" in r for r in rules), rules


def test_text_part_has_no_html(built: Path) -> None:
    for slug in slugs(built):
        text = (built / f"{slug}.txt").read_text(encoding="utf-8")
        assert not HTML_TAG.search(text), (slug, HTML_TAG.search(text))
        assert not HTML_ENTITY.search(text), (slug, HTML_ENTITY.search(text))
        assert "NLSLOT" not in text
        assert "Hi there," in text
        assert "Links\n-----\n\n[1] https://" in text or slug == "2026-10-listening-rounds"


def test_every_email_is_under_100_kb(built: Path) -> None:
    for slug in slugs(built):
        size = (built / f"{slug}.html").stat().st_size
        assert size < 100 * 1024, (slug, size)
        assert (built / f"{slug}.eml").stat().st_size < 200 * 1024


def test_eml_parses_back_into_text_and_html(
    built: Path, issues: list[Issue], config: Config
) -> None:
    for issue in issues:
        data = (built / f"{issue.slug}.eml").read_bytes()
        message = BytesParser(policy=email.policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        assert message.get_content_type() == "multipart/alternative"
        parts = list(message.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert message["Subject"] == subject_for(config, issue)
        number = f" #{issue.number}" if issue.number else ""  # drafts have no number
        assert message["Subject"] == f"Leader Notes{number}: {issue.title}"
        assert message.defects == []
        text, page = (str(p.get_content()).replace("\r\n", "\n") for p in parts)
        assert text.strip() == (built / f"{issue.slug}.txt").read_text(encoding="utf-8").strip()
        assert page.strip() == (built / f"{issue.slug}.html").read_text(encoding="utf-8").strip()


def _urls(page: str) -> list[tuple[str, str]]:
    root = lxml.html.document_fromstring(page)
    found = [("a", a.get("href")) for a in root.iter("a") if a.get("href") is not None]
    found += [("img", i.get("src")) for i in root.iter("img")]
    return found


def test_links_and_images_are_absolute(built: Path, config: Config) -> None:
    for slug in slugs(built):
        for tag, url in _urls((built / f"{slug}.html").read_text(encoding="utf-8")):
            assert url.startswith(("https://", "http://", "mailto:", "#")), (slug, tag, url)
            assert not url.endswith(".md"), (slug, url)
    page = (built / f"{FIRST}.html").read_text(encoding="utf-8")
    assert ("img", config.base_url + "images/service-chain.png") in _urls(page)


def test_link_to_another_issue_becomes_its_archive_url(built: Path, config: Config) -> None:
    page = (built / f"{HANDOFFS}.html").read_text(encoding="utf-8")
    root = lxml.html.document_fromstring(page)
    anchors = {a.text_content(): a.get("href") for a in root.iter("a")}
    assert anchors["last month’s issue"] == links.issue_url(config, FIRST)
    assert anchors["last month’s issue"] == f"https://example.com/newsletter/{FIRST}/"


def test_images_have_width_height_and_alt(built: Path) -> None:
    count = 0
    for slug in slugs(built):
        root = lxml.html.document_fromstring((built / f"{slug}.html").read_text(encoding="utf-8"))
        for image in root.iter("img"):
            count += 1
            assert (image.get("alt") or "").strip(), slug
            assert (image.get("width") or "").isdigit(), image.attrib
            assert int(image.get("width")) <= 600
            # Outlook ignores CSS sizes: a height attribute must be a number, never "auto".
            height = image.get("height")
            assert height is None or height.isdigit(), image.attrib
            # fluid: the column's width, never wider than the image itself
            style = image.get("style", "").replace(" ", "")
            assert f"width:100%;max-width:{image.get('width')}px" in style
    assert count >= 2


def test_image_height_follows_the_aspect_ratio(built: Path) -> None:
    root = lxml.html.document_fromstring((built / f"{FIRST}.html").read_text(encoding="utf-8"))
    (image,) = root.iter("img")
    # content/images/service-chain.png is 1120 x 600, shown at the 560 px content width.
    assert (image.get("width"), image.get("height")) == ("560", "300")


def test_preheader_holds_the_summary(built: Path, issues: list[Issue]) -> None:
    for issue in issues:
        root = lxml.html.document_fromstring(
            (built / f"{issue.slug}.html").read_text(encoding="utf-8")
        )
        (preheader,) = root.find_class("preheader")
        assert preheader.text_content().startswith(issue.summary)
        assert "display:none" in preheader.get("style", "").replace(" ", "")
        # The preheader is the first text in the body, so inboxes show it after the subject.
        body = root.find("body")
        assert body is not None
        assert body.text_content().strip().startswith(issue.summary)


def test_footer_has_the_classic_parts(built: Path) -> None:
    page = (built / f"{HANDOFFS}.html").read_text(encoding="utf-8")
    text = lxml.html.document_fromstring(page).text_content()
    assert "1 Example Street, Springfield" in text
    assert "Just reply to this email" in text
    assert "Forward it to a colleague" in text
    assert "“unsubscribe” in the subject" in text
    assert "© 2026 Jane Example" in text
    assert "You get this email because you subscribed" in text
    assert f'href="https://example.com/newsletter/{FIRST}/"' in page  # recent issues


def test_recent_issues_lists_at_most_twelve_ready_ones(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "many")
    for index in range(15):
        month = index % 12 + 1
        year = 2030 + index // 12
        (root / "content" / f"{year}-{month:02d}-old-{index}.md").write_text(
            f"---\ntitle: Old {index}\nstatus: ready\n---\nBody {index}\n", encoding="utf-8"
        )
    config = load_config(root, environ={})
    issues = load_issues(config, SAMPLE_TODAY)
    latest = max(issues, key=lambda i: i.date)
    page = render_issue(config, latest, issues).personalise(PreviewReader()).html
    listed = re.findall(r"No\.&nbsp;(\d+): Old (\d+)", page) or re.findall(
        r"No.\xa0(\d+): Old (\d+)", page
    )
    assert [int(old) for _, old in listed] == list(range(13, 1, -1))


def test_the_stylesheet_cache_changes_nothing_but_the_time(
    config: Config, issues: list[Issue], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `<style>` block is parsed once per process (content/cssinline.py): every email,
    and the CSS warnings `check` reports, are what premailer alone gives, on a miss and on
    every hit; an edited stylesheet is parsed again."""
    pages: list[str] = []

    def capture(page: str, *, cached: bool = True) -> tuple[str, tuple[str, ...]]:
        pages.append(page)
        return inline_css(page, cached=cached)

    monkeypatch.setattr(render, "inline_css", capture)
    for issue in issues:
        render_issue(config, issue, issues)
    monkeypatch.undo()
    assert len(pages) == len(issues) == 5
    # Mistakes in a plain rule, inside @media (kept in <style>) and in a pseudo-class rule.
    head, tail = pages[0].rsplit("</style>", 1)
    mistakes = ".oops { colr: red; }\n@media screen { .x { colr: blue } }\na:hover { colr: 0 }\n"
    faulty = f"{head}{mistakes}</style>{tail}"
    for page in [*pages, faulty]:
        alone = inline_css(page, cached=False)
        clear_cache()
        assert inline_css(page) == alone  # parsed here
        assert inline_css(page) == alone  # from the cache
    warnings = inline_css(faulty)[1]
    assert sum("colr" in w for w in warnings) == 3, warnings
    assert inline_css(pages[0])[1] == ()
    rule = ".container { max-width: 600px; background-color: #ffffff; }"
    edited = pages[0].replace(rule, rule.replace("#ffffff", "#fefefe"))
    assert edited != pages[0]
    inlined = inline_css(edited)
    assert inlined == inline_css(edited, cached=False) and "#fefefe" in inlined[0]


# -- slots and personalise ----------------------------------------------------------------------


def test_slot_tokens_survive_premailer(rendered: RenderedIssue) -> None:
    assert set(rendered.html.slots) == set(SLOTS)
    # the text part names the unsubscribe address; the web link only once there is one
    assert {"first_name", "unsubscribe_address"} <= set(rendered.text.slots)
    for part in rendered.html.parts[0::2] + rendered.text.parts[0::2]:
        assert "NLSLOT" not in part  # a token premailer changed would be left unsplit
    literal = "".join(rendered.html.parts[0::2])
    assert "%7B" not in literal and "{{" not in literal
    parts = rendered.html.parts
    before_unsubscribe = [parts[i - 1] for i, p in enumerate(parts) if p == "unsubscribe_url"]
    assert before_unsubscribe and all(p.endswith('href="') for p in before_unsubscribe)


def test_no_slot_left_after_personalise(rendered: RenderedIssue) -> None:
    personal = rendered.personalise(Reader("ann@example.org", "Ann", "tok-ann"))
    for body in (personal.html, personal.text):
        assert "NLSLOT" not in body
        assert "nlslot" not in body.lower()
        assert "%7B" not in body
        # a slot token lxml URL-encoded ({{%20unsubscribe_url%20}}); the forward link's own
        # %20s are intended
        assert not any(f"%20{name}" in body for name in SLOTS)


def test_personalise_escapes_a_hostile_first_name(rendered: RenderedIssue) -> None:
    hostile = "<script>alert(\"x\")</script> & 'Bob'"
    personal = rendered.personalise(Reader("bob@example.org", hostile, "tok-bob"))
    assert "<script>" not in personal.html
    assert f"Hi <bdi>{html.escape(hostile, quote=True)}</bdi>," in personal.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;Bob&#x27;" in (
        personal.html
    )
    # The text part is not HTML: the name is shown as written.
    assert f"Hi {hostile}," in personal.text


def test_personalise_escapes_a_hostile_address(rendered: RenderedIssue) -> None:
    address = '"><img src=x onerror=alert(1)>@example.org'
    personal = rendered.personalise(Reader(address, None, "tok"))
    assert "<img src=x" not in personal.html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;@example.org" in personal.html


@pytest.mark.parametrize("name", ["Eve\r\nBcc: evil@example.com", "Eve\nBcc: evil@example.com"])
def test_personalise_strips_cr_lf(rendered: RenderedIssue, name: str) -> None:
    personal = rendered.personalise(Reader("eve@example.org\r\nX: y", name, "tok-eve"))
    assert "Hi <bdi>Eve Bcc: evil@example.com</bdi>," in personal.html
    for body in (personal.html, personal.text):
        assert "Eve Bcc: evil@example.com" in body
        assert "Eve\r" not in body and "Eve\n" not in body
        assert "eve@example.orgX: y" in body  # controls dropped from the address


@pytest.mark.parametrize("name", [None, "", "   ", "\r\n"])
def test_personalise_uses_the_fallback(rendered: RenderedIssue, name: str | None) -> None:
    personal = rendered.personalise(Reader("x@example.org", name, "tok"))
    assert "Hi <bdi>there</bdi>," in personal.html
    assert "Hi there," in personal.text


def test_fallback_comes_from_the_config(config: Config, issues: list[Issue]) -> None:
    friendly = replace(config, greeting_fallback="friend")
    issue = find_issue(friendly, issues, HANDOFFS)
    personal = render_issue(friendly, issue, issues).personalise(Reader("x@y.org", None, "t"))
    assert "Hi <bdi>friend</bdi>," in personal.html and "Hi friend," in personal.text


def test_footer_has_the_readers_own_unsubscribe_mailto(rendered: RenderedIssue) -> None:
    personal = rendered.personalise(Reader("ann@example.org", "Ann", "tok123"))
    assert 'href="mailto:news+tok123@example.com?subject=unsubscribe"' in personal.html
    assert "email us to unsubscribe</a>" in personal.html  # a mailto: no "one click" promise
    assert ">news+tok123@example.com</span>" in personal.html  # printed in full, breakable
    assert "news+tok123@example.com" in personal.text
    assert ">ann@example.org</span>." in personal.html
    assert "ann@example.org" in personal.text


def test_footer_links_the_web_endpoint_when_configured(config: Config, issues: list[Issue]) -> None:
    web = replace(config, web=replace(config.web, public_url="https://news.example.com/"))
    issue = find_issue(web, issues, HANDOFFS)
    personal = render_issue(web, issue, issues).personalise(Reader("a@b.org", "A", "tok123"))
    assert 'href="https://news.example.com/unsubscribe/tok123"' in personal.html
    assert "mailto:news+tok123" not in personal.html
    # The reply-by-mail address stays, for readers who prefer it.
    assert "news+tok123@example.com" in personal.html
    assert "https://news.example.com/unsubscribe/tok123" in personal.text


def test_two_readers_never_see_each_others_values(rendered: RenderedIssue) -> None:
    alice = Reader("alice@example.org", "Alice", "tokalice")
    bob = Reader("bob@example.net", "Bob", "tokbob")
    first_alice = rendered.personalise(alice)
    for_bob = rendered.personalise(bob)
    again_alice = rendered.personalise(alice)
    assert first_alice == again_alice
    for body in (for_bob.html, for_bob.text):
        assert "Alice" not in body and "alice@" not in body and "tokalice" not in body
        assert "Bob" in body and "tokbob" in body
    for body in (first_alice.html, first_alice.text):
        assert "Bob" not in body and "bob@" not in body and "tokbob" not in body


# -- template errors ----------------------------------------------------------------------------


def _one_error_line(root: Path) -> str:
    code, stdout, stderr = run_cli(root, "check")
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _insert_line(path: Path, after: int, text: str) -> int:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines.insert(after, text)
    path.write_text("\n".join(lines), encoding="utf-8")
    return after + 1


def test_template_syntax_error_names_file_and_line(publication: Path) -> None:
    template = publication / "templates" / "email.html"
    line = _insert_line(template, 80, "{% if %}")
    error = _one_error_line(publication)
    assert error.startswith(f"error: {template}:{line}: ")


def test_template_undefined_variable_names_file_and_line(publication: Path) -> None:
    template = publication / "templates" / "email.html"
    line = _insert_line(template, 80, "<p>{{ no_such_thing }}</p>")
    error = _one_error_line(publication)
    assert error.startswith(f"error: {template}:{line}: 'no_such_thing' is undefined")
    assert "(available: " in error and "issue" in error


def test_text_template_undefined_attribute(publication: Path) -> None:
    template = publication / "templates" / "email.txt"
    line = _insert_line(template, 3, "{{ issue.subtitle }}")
    error = _one_error_line(publication)
    assert error.startswith(f"error: {template}:{line}: ")
    assert "subtitle" in error


def test_missing_override_falls_back_to_the_package_default(publication: Path) -> None:
    # A publication's templates/ only overrides: without its email.txt the package's serves.
    (publication / "templates" / "email.txt").unlink()
    code, stdout, stderr = run_cli(publication, "check")
    assert code == 0, (stdout, stderr)
    assert "checked 5 issue(s): 0 error(s)" in stdout


def test_editor_text_is_escaped_in_html_and_kept_in_text(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "escaping")
    (root / "content" / "2031-01-escaping.md").write_text(
        '---\ntitle: "Tips & <Tricks>"\nsummary: \'"Quotes" & <b>tags</b>\'\n'
        "epigraph: {text: '<i>Say</i> & do', author: 'A <b>B</b>'}\nstatus: ready\n"
        "---\nBody & more.\n",
        encoding="utf-8",
    )
    config = load_config(root, environ={})
    issues = load_issues(config, SAMPLE_TODAY)
    rendered = render_issue(config, find_issue(config, issues, "2031-01-escaping"), issues)
    personal = rendered.personalise(PreviewReader())
    for raw in ("<Tricks>", "<b>tags</b>", "<i>Say</i>", "A <b>B</b>"):
        assert raw not in personal.html
    root_element = lxml.html.document_fromstring(personal.html)
    assert root_element.find(".//h1").text_content() == "Tips & <Tricks>"
    assert (
        root_element.find_class("preheader")[0].text_content().startswith('"Quotes" & <b>tags</b>')
    )
    assert "Tips & <Tricks>\n===============" in personal.text
    assert "“<i>Say</i> & do”" in personal.text
    assert rendered.subject == "Leader Notes #5: Tips & <Tricks>"  # 4 ready before it


def test_attr_list_classes_get_their_template_style(built: Path) -> None:
    page = (built / "2026-09-service-promises-between-teams.html").read_text(encoding="utf-8")
    (note,) = lxml.html.document_fromstring(page).find_class("note")
    style = note.get("style", "").replace(" ", "")
    assert "border-left:4pxsolid#9b4d12" in style
    assert "background-color:#faf6ef" in style
