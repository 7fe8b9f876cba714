"""`subscribers show` and the --json outputs for scripts (issue 15, part 5)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def test_show_prints_status_consent_and_history(publication: Path) -> None:
    run_cli(publication, "subscribers", "add", "jane@example.org", "--name", "Jane",
            "--consent", "signed up at the March meetup")  # fmt: skip
    run_cli(publication, "subscribers", "remove", "jane@example.org", "--reason", "asked by phone")
    code, out, err = run_cli(publication, "subscribers", "show", "Jane@Example.org")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "email       jane@example.org"
    assert lines[1] == "status      unsubscribed"
    assert lines[2] == "first name  Jane"
    assert lines[3].startswith("consent     command, ") and "signed up at the March meetup" in out
    assert "events      2" in out
    assert "asked by phone" in out and "[command]" in out


def test_show_json_and_an_unknown_reader(publication: Path) -> None:
    run_cli(publication, "subscribers", "add", "sam@example.org")
    code, out, err = run_cli(publication, "subscribers", "show", "sam@example.org", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["email"] == "sam@example.org" and record["status"] == "active"
    assert "token" not in record
    assert [e["kind"] for e in record["events"]] and record["events"][0]["source"] == "command"
    code, out, err = run_cli(publication, "subscribers", "show", "nobody@example.org")
    assert code == 2 and err == "error: nobody@example.org: not on the list\n"


def test_list_and_stats_json(publication: Path) -> None:
    run_cli(publication, "subscribers", "add", "a@example.org", "--name", "Ann")
    run_cli(publication, "subscribers", "add", "b@example.org")
    run_cli(publication, "subscribers", "remove", "b@example.org")
    code, out, err = run_cli(publication, "subscribers", "list", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["email"], r["status"], r["first_name"]) for r in rows] == [
        ("a@example.org", "active", "Ann"),
        ("b@example.org", "unsubscribed", None),
    ]
    code, out, err = run_cli(publication, "subscribers", "stats", "--json")
    assert code == 0, err
    counts = json.loads(out)
    assert counts["active"] == 1 and counts["unsubscribed"] == 1 and counts["total"] == 2


def test_status_and_schedule_list_json(publication: Path) -> None:
    run_cli(publication, "subscribers", "add", "a@example.org")
    run_cli(publication, "subscribers", "add", "b@example.org")
    code, out, err = run_cli(publication, "send", "--due", now="2026-10-06T09:00")
    assert code == 0, out + err
    code, out, err = run_cli(publication, "status", "--json")
    assert code == 0, err
    [send] = json.loads(out)
    assert send["state"] == "finished" and send["recipients"] == 2
    assert send["counts"]["sent"] == 2 and send["failures"] == []
    code, out, err = run_cli(publication, "status", send["issue"], "--json")
    assert code == 0 and json.loads(out)[0]["issue"] == send["issue"]
    code, out, err = run_cli(publication, "schedule", "--list", "2", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["time"] == "09:00" and plan["timezone"] == "Europe/London"
    assert [slot["at"][:10] for slot in plan["slots"]] == ["2026-12-01", "2027-01-05"]
    assert plan["slots"][0]["drafts"]  # the sample's December draft
