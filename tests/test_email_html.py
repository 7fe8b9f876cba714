"""The email's HTML beyond layout: footnotes without anchors, the footer's links and wording,
language direction. The layout itself is tested in a browser (test_email_browser.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
from conftest import SAMPLE_TODAY, copy_sample

from newsletter.config import load_config
from newsletter.content.emailbody import email_fragment
from newsletter.content.issues import Issue, find_issue, load_issues
from newsletter.content.markup import render_markdown
from newsletter.content.render import render_issue, text_direction
from newsletter.settings import Config

HANDOFFS = "2026-08-handoffs-are-the-product"


@dataclass(frozen=True)
class Reader:
    email: str
    first_name: str | None
    token: str


ANN = Reader("ann@example.org", "Ann", "tok123")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = copy_sample(tmp_path_factory.mktemp("email_html") / "publication")
    return load_config(root, environ={})


@pytest.fixture(scope="module")
def issues(config: Config) -> list[Issue]:
    return load_issues(config, SAMPLE_TODAY)


def email_for(config: Config, issues: list[Issue], reader: Reader = ANN) -> str:
    issue = find_issue(config, issues, HANDOFFS)
    return render_issue(config, issue, issues).personalise(reader).html


def test_footnotes_need_no_in_page_anchors(config: Config, issues: list[Issue]) -> None:
    root = lxml.html.document_fromstring(email_for(config, issues))
    assert root.xpath("//a[starts-with(@href, '#')]") == []
    assert root.xpath("//*[starts-with(@id, 'fn')]") == []  # no anchor targets left either
    (marker,) = root.xpath("//td[contains(@class, 'content')]/p/sup")
    assert marker.text_content() == "1" and len(marker) == 0
    # the text after the marker stays
    assert "under 15 percent.1 That means the fastest way" in " ".join(
        marker.getparent().text_content().split()
    )
    (notes,) = root.xpath("//div[contains(@class, 'footnote')]")
    heading = notes.xpath(".//p[contains(@class, 'notes-heading')]")[0]
    assert heading.text_content() == "Notes"
    (note,) = notes.xpath(".//ol/li")
    text = note.text_content().strip()
    assert text.startswith("Figures vary widely") and text.endswith("not as a benchmark.")
    assert "↩" not in text


def test_fragment_without_footnotes_is_left_alone() -> None:
    fragment = '<p>See <a href="#top">the top</a>.</p>'
    assert email_fragment(fragment) is fragment


def test_forward_link_opens_a_message_with_subject_and_web_link(
    config: Config, issues: list[Issue]
) -> None:
    root = lxml.html.document_fromstring(email_for(config, issues))
    (link,) = [a for a in root.iter("a") if a.text_content() == "Forward it to a colleague"]
    href = link.get("href")
    assert href.startswith("mailto:?")
    query = parse_qs(urlsplit(href).query)
    assert query["subject"] == ["Leader Notes #2: Handoffs Are the Product"]
    assert query["body"] == [
        "I thought you would like this: https://example.com/newsletter/2026-08-handoffs-are-the-product/"
    ]


def test_unsubscribe_wording_follows_what_the_link_does(
    config: Config, issues: list[Issue]
) -> None:
    by_mail = email_for(config, issues)
    assert 'href="mailto:news+tok123@example.com?subject=unsubscribe"' in by_mail
    assert "email us to unsubscribe</a>" in by_mail
    assert "one click" not in by_mail  # a mailto opens a compose window: no such promise
    web = replace(config, web=replace(config.web, public_url="https://news.example.com/"))
    on_web = email_for(web, issues)
    assert '"https://news.example.com/unsubscribe/tok123"' in on_web
    assert "unsubscribe on our website</a> (one click" in on_web
    assert ">news+tok123@example.com</span>" in on_web  # the by-mail way stays


def test_masthead_and_web_version_outside_the_card(config: Config, issues: list[Issue]) -> None:
    root = lxml.html.document_fromstring(email_for(config, issues))
    (name,) = root.xpath("//p[contains(@class, 'masthead-name')]")
    assert name.text_content() == "Leader Notes"
    (tagline,) = root.xpath("//p[contains(@class, 'masthead-tagline')]")
    assert tagline.text_content() == "Monthly notes on serving customers inside and out"
    (web,) = root.xpath("//td[contains(@class, 'webversion')]")
    assert not web.xpath("ancestor::table[contains(@class, 'container')]")
    assert web.xpath(".//a/@href") == [
        "https://example.com/newsletter/2026-08-handoffs-are-the-product/"
    ]


@pytest.mark.parametrize(
    ("language", "direction"), [("en", "ltr"), ("ar", "rtl"), ("he-IL", "rtl"), ("fa", "rtl")]
)
def test_language_and_direction_on_the_html_and_a_wrapper(
    config: Config, issues: list[Issue], language: str, direction: str
) -> None:
    assert text_direction(language) == direction
    page = email_for(replace(config, language=language), issues)
    root = lxml.html.document_fromstring(page)
    assert (root.get("lang"), root.get("dir")) == (language, direction)
    body = root.find("body")
    assert body is not None
    wrappers = body.xpath("./div[@lang and @dir]")
    assert [(w.get("lang"), w.get("dir")) for w in wrappers] == [(language, direction)]


def test_a_right_to_left_name_is_isolated(config: Config, issues: list[Issue]) -> None:
    page = email_for(config, issues, Reader("f@example.org", "فاطمة", "tok"))
    assert "Hi <bdi>فاطمة</bdi>," in page


def test_images_are_fluid_with_their_size_for_outlook(config: Config, issues: list[Issue]) -> None:
    root = lxml.html.document_fromstring(email_for(config, issues))
    (image,) = root.xpath("//td[contains(@class, 'content')]//img")
    assert image.get("width") == "560"  # Outlook ignores CSS widths on images
    style = image.get("style").replace(" ", "")
    assert "width:100%;max-width:560px;height:auto" in style


def test_the_email_fragment_loses_no_text(config: Config, issues: list[Issue]) -> None:
    """Only the back-link arrows go (and a Notes heading comes); every word stays in order."""
    for issue in issues:
        body = render_markdown(config, issue, issues).html
        if not body:
            continue
        before = lxml.html.fragment_fromstring(body, create_parent="div").text_content()
        after = lxml.html.fragment_fromstring(email_fragment(body), create_parent="div")
        for heading in after.find_class("notes-heading"):
            heading.drop_tree()
        expected = " ".join(before.replace("\u21a9", "").split())
        assert " ".join(after.text_content().split()) == expected, issue.slug
