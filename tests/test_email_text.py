"""The whole text/plain part of a real issue, as a reader of plain text gets it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import SAMPLE_TODAY, copy_sample

from newsletter.config import load_config
from newsletter.content.issues import Issue, find_issue, load_issues
from newsletter.content.plaintext import WIDTH
from newsletter.content.render import render_issue
from newsletter.settings import Config

HANDOFFS = "2026-08-handoffs-are-the-product"
# A line may pass 72 columns only when it is one URL (optionally "[n] " or indented).
_URL_LINE = re.compile(r"\s*(?:\[\d+\] )?https?://\S+")


@dataclass(frozen=True)
class Reader:
    email: str
    first_name: str | None
    token: str


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = copy_sample(tmp_path_factory.mktemp("email_text") / "publication")
    return load_config(root, environ={})


@pytest.fixture(scope="module")
def issues(config: Config) -> list[Issue]:
    return load_issues(config, SAMPLE_TODAY)


def text_for(config: Config, issues: list[Issue], slug: str = HANDOFFS) -> str:
    rendered = render_issue(config, find_issue(config, issues, slug), issues)
    return rendered.personalise(Reader("ann@example.org", "Ann", "tok123")).text


def test_notes_then_sign_off_then_links(config: Config, issues: list[Issue]) -> None:
    text = text_for(config, issues)
    assert "[^" not in text  # no Markdown footnote syntax left
    assert "percent.¹ That means" in text  # a superscript marker, not a [1] like a link's
    notes = text.index("\nNotes\n-----\n\n1. Figures vary widely")
    sign_off = text.index("\nJane Example\nLeader Notes\n")
    links = text.index("\nLinks\n-----\n\n[1] https://example.com/newsletter/2026-07-")
    footer = text.index("Feedback? Just reply")
    assert notes < sign_off < links < footer


def test_emphasis_and_typography_match_the_html(config: Config, issues: list[Issue]) -> None:
    text = text_for(config, issues)
    flowing = " ".join(text.split())
    assert "how long _they_ spend on it" in flowing
    assert "*the fastest way to serve customers better is usually not" in flowing
    assert "    “A queue is a promise that nobody wrote down.”\n" in text
    assert "        — Marta Quill, a fictional operations lead\n" in text
    assert "reply with “unsubscribe” in the subject" in text
    assert "© 2026 Jane Example" in text
    assert '"' not in text  # straight quotes nowhere, the epigraph's included
    assert not re.search(r" -- |\w--\w", text)  # nor a double hyphen for a dash


def test_every_line_fits_72_columns(config: Config, issues: list[Issue]) -> None:
    for issue in issues:
        text = text_for(config, issues, issue.slug)
        lines = text.splitlines()
        long = [line for line in lines if len(line) > WIDTH and not _URL_LINE.fullmatch(line)]
        assert long == [], issue.slug


def test_unsubscribe_lines_follow_the_configuration(config: Config, issues: list[Issue]) -> None:
    by_mail = text_for(config, issues)
    assert "or write\nto news+tok123@example.com." in by_mail
    assert "mailto:" not in by_mail
    web = replace(config, web=replace(config.web, public_url="https://news.example.com/"))
    on_web = text_for(web, issues)
    assert "go to\nhttps://news.example.com/unsubscribe/tok123\n(one click)" in on_web
    assert "news+tok123@example.com." in on_web


def test_an_older_text_template_still_gets_notes_and_links(tmp_path: Path) -> None:
    """A publication's own email.txt from before `notes` and `links`: all in `content`."""
    root = copy_sample(tmp_path / "older")
    (root / "templates" / "email.txt").write_text(
        "{{ content }}\n\n{{ slot.unsubscribe_address }}\n", encoding="utf-8"
    )
    old = load_config(root, environ={})
    text = text_for(old, load_issues(old, SAMPLE_TODAY))
    assert "Notes\n-----\n\n1. Figures vary widely" in text
    assert "Links\n-----\n\n[1] https://example.com/newsletter/2026-07-" in text
