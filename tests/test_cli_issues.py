"""Editor commands: `new` scaffolds a loadable draft, `build` writes previews, `preview` serves."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SAMPLE_TODAY, run_cli, serving

from newsletter.config import load_config
from newsletter.content.issues import find_issue, load_issues
from newsletter.web import preview

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
    issue = find_issue(config, load_issues(config, SAMPLE_TODAY), str(path))
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
    (issue,) = [i for i in load_issues(config, SAMPLE_TODAY) if i.date == dt.date(2031, 6, 3)]
    assert issue.title == title


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-20T12:00", "2027-01-05"),  # December's slot is the sample draft's
        ("2026-12-01T08:59", "2027-01-05"),  # today's slot is still ahead, but taken
        ("2027-01-05T08:59", "2027-01-05"),  # today, before the send time: still free
        ("2027-01-05T09:00", "2027-02-02"),  # today, send time reached: too late for it
        ("2027-12-31T23:59", "2028-01-04"),  # across the year end
    ],
)
def test_new_takes_the_next_free_slot_still_ahead(
    publication: Path, now: str, expected: str
) -> None:
    code, stdout, stderr = run_cli(publication, "new", "Next one", now=now)
    assert (code, stderr) == (0, "")
    path = publication / "content" / f"{expected[:7]}-next-one.md"
    assert stdout == f"created content/{path.name} (draft, to send on {expected})\n"
    assert f"date: {expected}" in path.read_text(encoding="utf-8")


def test_new_twice_on_one_day_takes_two_slots_and_never_stops_send_due(
    publication: Path,
) -> None:
    now = "2026-12-01T10:00"  # the first Tuesday, after the send time
    assert run_cli(publication, "new", "Some Title", now=now).code == 0
    assert run_cli(publication, "new", "Some Title", now=now).code == 0
    names = sorted(p.name for p in (publication / "content").glob("2027-*.md"))
    assert names == ["2027-01-some-title.md", "2027-02-some-title.md"]
    for command in (("check",), ("status",), ("schedule", "--list", "2"), ("archive",)):
        result = run_cli(publication, *command, now=now)
        assert result.code == 0, (command, result.stderr)
    due = run_cli(publication, "send", "--due", now=now)
    assert due.code == 1  # December's issue is a draft: the editor is told, nothing breaks
    assert "no issue ready for Tue 2026-12-01 09:00 GMT: only a draft" in due.stdout + due.stderr


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Привет мир", "privet-mir"),
        ("Ελληνικά νέα", "ellenika-nea"),
        ("東京の夏", "dong-jing-noxia"),
        ("🎉🎉", "issue"),  # nothing to transliterate: a dated fallback
        ("!!!", "issue"),
    ],
)
def test_new_gives_any_script_a_readable_ascii_name(
    publication: Path, title: str, slug: str
) -> None:
    code, stdout, stderr = run_cli(publication, "new", title, "--date", "2031-05-06")
    assert (code, stderr) == (0, ""), stderr
    assert stdout.startswith(f"created content/2031-05-{slug}.md ")
    config = load_config(publication, environ={})
    (issue,) = [i for i in load_issues(config, SAMPLE_TODAY) if i.date == dt.date(2031, 5, 6)]
    assert issue.title == title.strip()


def test_new_slug_chooses_the_file_name(publication: Path) -> None:
    code, stdout, _ = run_cli(publication, "new", "Year in review", "--date", "2031-12-02",
                              "--slug", "Review 2031")  # fmt: skip
    assert code == 0
    assert stdout.startswith("created content/2031-12-review-2031.md ")


def test_new_refuses_a_taken_date_naming_the_issue_and_never_overwrites(
    publication: Path,
) -> None:
    assert run_cli(publication, "new", "Twice", "--date", "2031-07-01").code == 0
    path = publication / "content" / "2031-07-twice.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nMy precious words.\n", encoding="utf-8")
    before = path.read_bytes()
    code, stdout, stderr = run_cli(publication, "new", "Twice", "--date", "2031-07-01")
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"error: --date: 2031-07-01 is taken by 2031-07-twice (draft, {path}); one issue per "
        "send date: choose another date or move that issue\n"
    )
    same_name = run_cli(publication, "new", "Other", "--date", "2031-07-08", "--slug", "twice")
    assert same_name.code == 2 and "already exists" in same_name.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("args", "now", "expected"),
    [
        (("Dated", "--date", "2031-13-01"), "2026-11-20T12:00", "expected YYYY-MM-DD"),
        (("Slugless", "--slug", "!!!"), "2026-11-20T12:00", "--slug: expected letters or digits"),
        (("Old", "--date", "2026-11-03"), "2026-11-20T12:00", "2026-11-03 is in the past"),
        (("Late", "--date", "2027-01-05"), "2027-01-05T10:00", "its send time"),
        (("Taken", "--date", "2026-10-06"), "2026-10-01T12:00", "taken by 2026-10-listening"),
    ],
)
def test_new_rejects_bad_input(
    publication: Path, args: tuple[str, ...], now: str, expected: str
) -> None:
    before = sorted((publication / "content").iterdir())
    code, _, stderr = run_cli(publication, "new", *args, now=now)
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
    issues = load_issues(config, SAMPLE_TODAY)
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
        assert page.is_file() == (issue.is_ready and issue.date <= SAMPLE_TODAY), issue.slug
    assert "4 issues in" in stdout and "(0 issue bodies rendered)" in stdout


def test_build_skips_a_bad_issue_with_one_line_and_exit_1(publication: Path) -> None:
    (publication / "content" / "2031-01-bad.md").write_text("---\ntitle: [\n---\n")
    code, stdout, stderr = run_cli(publication, "build")
    assert code == 1
    bad = publication / "content" / "2031-01-bad.md"
    assert stderr.startswith(f"warning: skipped, not a usable issue: {bad}:")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "built 2026-10-listening-rounds (ready)" in stdout  # the others are built


# -- preview -------------------------------------------------------------------------------------


@pytest.fixture
def server(publication: Path) -> Iterator[ThreadingHTTPServer]:
    config = load_config(publication, environ={})
    httpd = preview.make_server(config, "2026-08-handoffs-are-the-product", 0, SAMPLE_TODAY)
    with serving(httpd):
        yield httpd


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
    assert "Handoffs" in get(server, "/email.html")[2]  # another file's mistake stops only it
    previewed = publication / "content" / "2026-08-handoffs-are-the-product.md"
    previewed.write_text("---\nnope: 1\n---\n")
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
