"""Editor commands: `new` scaffolds a loadable draft, `build` writes previews, `preview` serves."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter import preview
from newsletter.config import load_config
from newsletter.issues import find_issue, load_issues, next_scheduled_day

# -- new -----------------------------------------------------------------------------------------


def test_new_scaffolds_a_draft_that_loads_and_checks(publication: Path) -> None:
    code, stdout, stderr = run_cli(
        publication, "new", "Feedback that travels upstream", "--date", "2031-05-06"
    )
    assert (code, stderr) == (0, "")
    path = publication / "content" / "2031-05-feedback-that-travels-upstream.md"
    assert stdout == (
        "created content/2031-05-feedback-that-travels-upstream.md (draft, to send on 2031-05-06)\n"
    )
    config = load_config(publication, environ={})
    issue = find_issue(config, load_issues(config), str(path))
    assert issue.title == "Feedback that travels upstream"
    assert issue.date == dt.date(2031, 5, 6)
    assert issue.status == "draft"
    assert issue.slug == "2031-05-feedback-that-travels-upstream"
    assert run_cli(publication, "check", issue.slug).code == 0


@pytest.mark.parametrize(
    "title", ['Say "hi": then #listen', "Back\\slash & 'quotes'", "Café: ünïcode — dashes"]
)
def test_new_keeps_awkward_titles_exactly(publication: Path, title: str) -> None:
    code, _, stderr = run_cli(publication, "new", title, "--date", "2031-06-03")
    assert (code, stderr) == (0, "")
    config = load_config(publication, environ={})
    (issue,) = [i for i in load_issues(config) if i.date == dt.date(2031, 6, 3)]
    assert issue.title == title


def test_new_defaults_to_the_next_scheduled_day(publication: Path) -> None:
    config = load_config(publication, environ={})
    expected = next_scheduled_day(config, dt.datetime.now(config.tz).date())
    code, stdout, _ = run_cli(publication, "new", "Next one")
    assert code == 0
    path = publication / "content" / f"{expected:%Y-%m}-next-one.md"
    assert path.exists()
    assert f"to send on {expected}" in stdout
    assert f"date: {expected}" in path.read_text(encoding="utf-8")


def test_new_refuses_to_overwrite(publication: Path) -> None:
    assert run_cli(publication, "new", "Twice", "--date", "2031-07-01").code == 0
    path = publication / "content" / "2031-07-twice.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nMy precious words.\n", encoding="utf-8")
    before = path.read_bytes()
    code, stdout, stderr = run_cli(publication, "new", "Twice", "--date", "2031-07-01")
    assert code == 2
    assert stdout == ""
    assert stderr == f"error: {path}: already exists; choose another title or edit it\n"
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("Dated", "--date", "2031-13-01"), "expected YYYY-MM-DD"), (("!!!",), "letters or digits")],
)
def test_new_rejects_bad_input(publication: Path, args: tuple[str, ...], expected: str) -> None:
    before = sorted((publication / "content").iterdir())
    code, _, stderr = run_cli(publication, "new", *args)
    assert code == 2
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("error: ")
    assert expected in stderr
    assert "Traceback" not in stderr
    assert sorted((publication / "content").iterdir()) == before


# -- build ---------------------------------------------------------------------------------------


def test_build_writes_three_previews_per_issue(publication: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    code, stdout, stderr = run_cli(publication, "build", "--out", str(out))
    assert (code, stderr) == (0, "")
    config = load_config(publication, environ={})
    issues = load_issues(config)
    for issue in issues:
        for suffix in (".html", ".txt", ".eml"):
            assert (out / f"{issue.slug}{suffix}").stat().st_size > 1000
        assert f"built {issue.slug} ({issue.status})" in stdout
    assert not (publication / "build").exists()
    leftovers = [p for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # ... and the web archive beside them, from the same renders.
    for issue in issues:
        page = out / "archive" / issue.slug / "index.html"
        assert page.is_file() == (issue.is_ready and issue.date <= dt.date.today()), issue.slug
    assert "4 issues in" in stdout and "(0 issue bodies rendered)" in stdout


def test_build_stops_on_a_bad_issue_without_a_traceback(publication: Path) -> None:
    (publication / "content" / "2031-01-bad.md").write_text("---\ntitle: [\n---\n")
    code, _, stderr = run_cli(publication, "build")
    assert code == 2
    assert stderr.startswith(f"error: {publication / 'content' / '2031-01-bad.md'}:")
    assert stderr.count("\n") == 1
    assert not (publication / "build").exists()


# -- preview -------------------------------------------------------------------------------------


@pytest.fixture
def server(publication: Path) -> Iterator[ThreadingHTTPServer]:
    config = load_config(publication, environ={})
    httpd = preview.make_server(config, "2026-08-handoffs-are-the-product", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def get(httpd: ThreadingHTTPServer, path: str) -> tuple[int, str, str]:
    host, port = httpd.server_address[:2]
    assert host == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read().decode("utf-8")


def test_preview_serves_page_email_and_text(server: ThreadingHTTPServer) -> None:
    status, kind, page = get(server, "/")
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert "Preview: Leader Notes #2: Handoffs Are the Product" in page
    assert 'src="/email.html" width="700"' in page and 'src="/email.html" width="375"' in page

    status, kind, email_html = get(server, "/email.html")
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert "<h1" in email_html and "Handoffs Are the Product" in email_html
    assert "Hi <bdi>there</bdi>," in email_html
    assert "NLSLOT" not in email_html

    status, kind, text = get(server, "/email.txt")
    assert (status, kind) == (200, "text/plain; charset=utf-8")
    assert "Handoffs Are the Product\n========================" in text
    assert "<p" not in text


def test_preview_rerenders_on_every_request(server: ThreadingHTTPServer, publication: Path) -> None:
    path = publication / "content" / "2026-08-handoffs-are-the-product.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "title: Handoffs Are the Product", "title: Edited"
        ),
        encoding="utf-8",
    )
    assert "Edited\n======" in get(server, "/email.txt")[2]


def test_preview_unknown_path_is_404(server: ThreadingHTTPServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(server, "/secrets")
    assert caught.value.code == 404


def test_preview_shows_a_loading_error_instead_of_crashing(
    server: ThreadingHTTPServer, publication: Path
) -> None:
    (publication / "content" / "2031-01-bad.md").write_text("---\nnope: 1\n---\n")
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(server, "/email.html")
    assert caught.value.code == 500
    assert "unknown key" in caught.value.read().decode("utf-8")


def test_preview_command_rejects_an_unknown_issue(publication: Path) -> None:
    code, stdout, stderr = run_cli(publication, "preview", "2026-11-nothing", "--port", "0")
    assert code == 2
    assert stdout == ""
    assert stderr.startswith("error: ISSUE: no issue '2026-11-nothing'")
    assert stderr.count("\n") == 1
