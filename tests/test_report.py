"""`newsletter report` and `inbox --feedback` over a generated year (tests/report_history.py).

Every figure is worked out by hand from the year's plan in the comments below, so a change
in what is counted shows up as a number that moved.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli
from report_history import AS_OF, make_year, slug

from newsletter.config import load_config
from newsletter.report.figures import Month, Unsubscribes, build_report
from newsletter.store.store import open_store

# Active readers when each send began (9 launch readers after r9 left, a web sign-up each
# month, r1-r4 leaving in January-April, w1/w2/w3 bounced or complaining, 3 imported in July).
TARGETED = [10, 10, 10, 10, 10, 10, 11, 15, 15, 15, 16, 16]
UNSUBSCRIBES = {
    1: Unsubscribes(reply=1),  # r1 replied to issue 1 asking to leave
    2: Unsubscribes(mailto=1),  # r2's unsubscribe button, by the last issue r2 got
    3: Unsubscribes(link=1),  # r3's one-click link
    4: Unsubscribes(admin=1),  # `subscribers remove r4`
    10: Unsubscribes(link=1),  # a reader who joined after issue 10 and left: by time
    11: Unsubscribes(reply=1),  # w5's one-word reply quoting issue 11
}  # w4's link unsubscribe in October was undone on the page: not counted
FEEDBACK = {1: 1, 2: 1, 6: 1, 12: 2}  # issue 2's reply came in May but quotes issue 2


@pytest.fixture
def year(publication: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    with monkeypatch.context() as patch:
        make_year(publication, patch)
    return publication


def figures(root: Path, *, detail: bool = False):  # type: ignore[no-untyped-def]
    with open_store(load_config(root, environ={})) as store:
        return build_report(store.reports, as_of=AS_OF, detail=detail)


def test_per_issue_figures_of_a_year(year: Path) -> None:
    report = figures(year)
    assert [i.slug for i in report.issues] == [slug(m) for m in range(1, 13)]
    assert [i.targeted for i in report.issues] == TARGETED
    odd = {2: ("deferred", 1), 3: ("unknown", 1), 4: ("failed", 1)}
    for month, issue in enumerate(report.issues, start=1):
        state = odd.get(month)
        assert issue.sent == TARGETED[month - 1] - (1 if state else 0), month
        for name in ("deferred", "unknown", "failed"):
            assert getattr(issue, name) == (1 if state and state[0] == name else 0), month
        assert issue.skipped == issue.waiting == 0
        assert issue.unsubscribes == UNSUBSCRIBES.get(month, Unsubscribes()), month
        assert issue.hard_bounces == (1 if month == 5 else 0), month  # w1's DSN quoting #5
        assert issue.soft_bounces == (1 if month in (6, 7, 8) else 0), month  # w2, 3 in a row
        assert issue.complaints == (1 if month == 9 else 0), month  # w3's ARF report
        assert issue.feedback == FEEDBACK.get(month, 0), month
        assert issue.duration_seconds == 600.0
        assert issue.rate_per_second == pytest.approx(issue.sent / 600)
        expected_churn = issue.unsubscribes.total / issue.sent
        assert issue.churn == pytest.approx(expected_churn)
        assert issue.started_at == dt.datetime(2031, month, 6, 9, tzinfo=dt.UTC)
    assert report.issues[0].churn == pytest.approx(0.1)
    assert report.issues[10].churn == pytest.approx(1 / 16)


def test_over_time_figures_of_a_year(year: Path) -> None:
    report = figures(year)
    assert report.active_now == 16
    assert [p.active for p in report.list_size] == TARGETED
    assert report.before_first_issue == 1  # r9 removed by the editor in December 2030
    assert report.most_feedback == ((slug(12), 2), (slug(1), 1), (slug(2), 1), (slug(6), 1))
    zero = {"signups": 0, "imports": 0, "unsubscribes": 0, "bounces": 0, "complaints": 0}
    special = {
        "2030-12": {"imports": 10, "unsubscribes": 1},
        "2031-01": {"unsubscribes": 1},
        "2031-02": {"unsubscribes": 1},
        "2031-03": {"unsubscribes": 1},
        "2031-04": {"unsubscribes": 1},
        "2031-05": {"bounces": 1},  # w1's hard bounce
        "2031-07": {"imports": 3},  # the imported `unsubscribed` row is no import nor leaver
        "2031-08": {"bounces": 1},  # w2 after three soft bounces
        "2031-09": {"complaints": 1},
        "2031-10": {"signups": 2, "unsubscribes": 1},  # w10 and the late reader; w4 undone
        "2031-11": {"unsubscribes": 1},
    }
    expected = [
        Month(key, **{**zero, "signups": 0 if key == "2030-12" else 1, **special.get(key, {})})
        for key in ["2030-12", *(f"2031-{m:02d}" for m in range(1, 13))]
    ]
    assert list(report.months) == expected


def test_addresses_only_with_detail(year: Path) -> None:
    plain, detailed = figures(year), figures(year, detail=True)
    assert plain.details == ()
    assert (detailed.issues, detailed.months) == (plain.issues, plain.months)  # same figures
    who = {(d.slug, d.what, d.email) for d in detailed.details}
    assert len(detailed.details) == 18  # 7 unsubscribes, 2 bounced, 3 soft, 1 complaint, 5 replies
    assert (slug(1), "unsubscribed (reply)", "r1@example.org") in who
    assert (slug(2), "unsubscribed (mailto)", "r2@example.org") in who
    assert (slug(5), "hard bounce", "w1@example.org") in who
    assert (slug(8), "bounced after soft bounces", "w2@example.org") in who
    assert (slug(9), "complaint", "w3@example.org") in who
    assert (slug(6), "feedback", "(unknown sender)") in who
    assert (None, "unsubscribed (admin)", "r9@example.org") in who


def test_cli_tables_json_and_one_issue(year: Path) -> None:
    code, out, err = run_cli(year, "report", now="2031-12-20T12:00")
    assert code == 0, err
    assert "Per issue" in out and "Per month" in out and "2031-05" in out
    assert "active readers now: 16" in out
    assert "@" not in out  # counts, not addresses
    assert "opens and clicks" in out

    code, out, err = run_cli(year, "report", "--json", now="2031-12-20T12:00")
    assert code == 0, err
    data = json.loads(out)
    assert [i["targeted"] for i in data["issues"]] == TARGETED
    assert data["issues"][0]["unsubscribes"] == {
        "reply": 1, "mailto": 0, "link": 0, "admin": 0, "other": 0, "total": 1
    }  # fmt: skip
    assert data["issues"][0]["started_at"] == "2031-01-06T09:00:00Z"
    assert data["active_now"] == 16 and "details" not in data
    assert "@" not in out

    code, out, err = run_cli(year, "report", slug(5), "--json", "--detail", now="2031-12-20")
    assert code == 0, err
    data = json.loads(out)
    assert [i["slug"] for i in data["issues"]] == [slug(5)]
    assert data["details"] == [{"slug": slug(5), "what": "hard bounce", "email": "w1@example.org"}]


def test_html_report_written_and_refused_inside_the_archive(year: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    code, stdout, err = run_cli(year, "report", "--html", str(out), now="2031-12-20T12:00")
    assert code == 0, err
    assert f"report written to {out / 'index.html'}" in stdout
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 3 and "<script" not in page
    assert "@" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http" not in page.replace("http://www.w3.org/", "")  # nothing to fetch

    for inside in (year / "build" / "archive", year / "build" / "archive" / "private"):
        code, _, err = run_cli(year, "report", "--html", str(inside))
        assert code == 2 and "refusing" in err and "Traceback" not in err
        assert not inside.exists()
    published = tmp_path / "www"
    published.mkdir()
    (published / ".archive-manifest.json").write_text("{}", encoding="utf-8")
    code, _, err = run_cli(year, "report", "--html", str(published / "stats"))
    assert code == 2 and ".archive-manifest.json" in err


def test_nothing_sent_yet(publication: Path) -> None:
    code, out, err = run_cli(publication, "report")
    assert (code, err) == (0, "")
    assert "nothing to report yet" in out
    run_cli(publication, "subscribers", "add", "a@example.org")
    code, out, _ = run_cli(publication, "report", "--json")
    assert code == 0 and "nothing to report yet" in out


def test_unknown_issue_is_one_line_exit_2_and_an_unsent_one_says_so(year: Path) -> None:
    code, _, err = run_cli(year, "report", "no-such-issue")
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    unsent = sorted((year / "content").glob("*.md"))[0]
    code, out, err = run_cli(year, "report", str(unsent))
    assert (code, err) == (0, "") and f"{unsent.stem}: not sent yet" in out


def test_the_migration_adds_the_report_indexes(year: Path) -> None:
    db = sqlite3.connect(year / "subscribers" / "subscribers.db")
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert {"events_kind_source_at", "sends_started", "subscribers_status"} <= names


def test_feedback_grouped_by_issue_newest_first(year: Path) -> None:
    code, out, err = run_cli(year, "inbox", "--feedback", "--json")
    assert code == 0, err
    groups = json.loads(out)
    assert [g["issue"] for g in groups] == [slug(12), slug(6), slug(2), slug(1)]
    newest = groups[0]["replies"]
    assert [r["from"] for r in newest] == ["w7@example.org", "w6@example.org"]
    assert newest[0]["text"] == "Reader 1: write about remote teams next."  # no quote kept
    assert groups[2]["replies"][0]["text"].startswith("Back to February's issue")
    assert groups[1]["replies"][0]["from"] == "stranger@elsewhere.example.net"

    code, out, _ = run_cli(year, "inbox", "--feedback")
    assert code == 0
    assert out.index(slug(12)) < out.index(slug(1))
    assert "quoted issue text" not in out and "Loved the hiring piece." in out
