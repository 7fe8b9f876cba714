"""`newsletter preview`: the views of what a reader gets, served on 127.0.0.1.

(The page and its frames in a real browser: tests/test_email_browser.py.)"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE_TODAY, serving

from newsletter.config import load_config
from newsletter.content.render import PreviewReader
from newsletter.web import preview

SLUG = "2026-08-handoffs-are-the-product"


@pytest.fixture
def server(publication: Path) -> Iterator[str]:
    """The base URL of a preview server for the August issue."""
    with serving(
        preview.make_server(load_config(publication, environ={}), SLUG, 0, SAMPLE_TODAY)
    ) as url:
        yield url


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return str(response.read().decode("utf-8"))


def test_the_page_shows_every_view(server: str) -> None:
    page = get(server + "/")
    for frame in ("/email.html", "/email-dark.html", "/email-gmail.html"):
        assert f'src="{frame}"' in page
    assert 'width="375"' in page and 'width="700"' in page
    assert PreviewReader().email in page
    assert "Plain text" in page and "Handoffs Are the Product\n========================" in page


def test_the_email_is_personalised_for_a_reader_with_a_long_address(server: str) -> None:
    reader = PreviewReader()
    assert len(reader.email) > 60 and len(reader.token) == 32  # as long as real ones get
    email = get(server + "/email.html")
    assert f">{reader.email}</span>" in email
    assert f"news+{reader.token}@example.com" in email
    assert f"news+{reader.token}@example.com" in get(server + "/email.txt")


def test_dark_view_forces_the_dark_rules(server: str) -> None:
    email = get(server + "/email.html")
    dark = get(server + "/email-dark.html")
    assert "@media (prefers-color-scheme: dark)" in email
    assert "prefers-color-scheme" not in dark and "@media all {" in dark
    assert dark.replace("@media all", "@media (prefers-color-scheme: dark)") == email


def test_gmail_view_has_no_style_block(server: str) -> None:
    gmail = get(server + "/email-gmail.html")
    assert "<style" not in gmail
    assert 'style="' in gmail  # the inlined CSS is all Gmail keeps
    assert "Handoffs Are the Product" in gmail
