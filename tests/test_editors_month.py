"""The editor's month: test sends of drafts, no surprise sends, stable numbers, the unfinished
caught by `check`. Every command runs at a pinned moment (`newsletter --now`)."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.config import load_config
from newsletter.store.store import DB_NAME, open_store
from newsletter.testing.mta import FaultyMTA

DRAFT = "2026-12-thanks-that-travel-upstream"
OCTOBER = "2026-10-listening-rounds"


def smtp(mta: FaultyMTA) -> dict[str, str | None]:
    return {
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_DELIVERY__SMTP__HOST": mta.host,
        "NEWSLETTER_DELIVERY__SMTP__PORT": str(mta.port),
        "NEWSLETTER_DELIVERY__SMTP__CONNECTIONS": "1",
    }


def add_readers(root: Path, *emails: str) -> None:
    with open_store(load_config(root)) as store:
        for n, address in enumerate(emails):
            store.subscribers.add(address, f"Reader{n}", source="test", consent="test")


def set_front_matter(root: Path, slug: str, key: str, value: str) -> Path:
    path = root / "content" / f"{slug}.md"
    head, sep, body = path.read_text(encoding="utf-8").partition("\n---\n")
    lines = [line for line in head.splitlines() if not line.startswith(f"{key}:")]
    path.write_text("\n".join([*lines, f"{key}: {value}"]) + sep + body, encoding="utf-8")
    return path


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def outbox(root: Path, slug: str) -> list[EmailMessage]:
    return [parse(p.read_bytes()) for p in sorted((root / "outbox" / slug).glob("*.eml"))]


# -- test sends ----------------------------------------------------------------------------------


def test_a_draft_goes_to_every_to_as_a_test_copy_and_nowhere_else(publication: Path) -> None:
    add_readers(publication, "reader@example.org", "me@example.net")
    with FaultyMTA() as mta:
        result = run_cli(publication, "send", DRAFT, "--to", "me@example.net",
                         "--to", "you@example.net", env=smtp(mta))  # fmt: skip
    assert result.code == 0, result.stderr
    assert sorted(mta.recipients()) == ["me@example.net", "you@example.net"]
    assert result.stdout.count("test copy of") == 2
    for received in mta.messages:
        message = received.parse()
        assert str(message["Subject"]).startswith("[TEST] Leader Notes: Thanks That Travel")
        html = message.get_body(("html",))
        assert html is not None
        to = message["To"].addresses[0].addr_spec
        # A subscriber sees their own copy; anyone else a sample reader's, never a real token.
        assert ("Reader1" in html.get_content()) == (to == "me@example.net")
    with open_store(load_config(publication)) as store:
        assert store.sends.get_send(DRAFT) is None
        assert store.numbers.fixed_numbers() == {}  # a test copy fixes nothing


def test_test_mails_the_test_recipients(publication: Path) -> None:
    env = {"NEWSLETTER_TEST_RECIPIENTS": "ed@example.com, proof@example.com"}
    result = run_cli(publication, "send", DRAFT, "--test", env=env)
    assert result.code == 0, result.stderr
    copies = outbox(publication, DRAFT)
    assert sorted(str(m["To"]) for m in copies) == ["ed@example.com", "proof@example.com"]
    assert all(str(m["Subject"]).startswith("[TEST] ") for m in copies)


def test_test_without_test_recipients_says_where_to_set_them(publication: Path) -> None:
    result = run_cli(publication, "send", DRAFT, "--test", env={"NEWSLETTER_TEST_RECIPIENTS": ""})
    assert result.code == 2
    assert "test_recipients: no test_recipients set" in result.stderr
    assert "Traceback" not in result.stderr


# -- no surprise sends ---------------------------------------------------------------------------


def test_an_issue_dated_weeks_ahead_needs_yes(publication: Path) -> None:
    add_readers(publication, "a@example.org", "b@example.org")
    set_front_matter(publication, DRAFT, "status", "ready")
    refused = run_cli(publication, "send", DRAFT, now="2026-11-03T12:00")
    assert refused.code == 2
    assert "dated Tue 2026-12-01, 28 days from now" in refused.stderr and "--yes" in refused.stderr
    assert not (publication / "outbox" / DRAFT).exists()
    tomorrow = run_cli(publication, "send", DRAFT, "--dry-run", now="2026-11-03T12:00")
    assert tomorrow.code == 0  # a dry run never asks
    sent = run_cli(publication, "send", DRAFT, "--yes", now="2026-11-03T12:00")
    assert sent.code == 0, sent.stderr
    assert len(outbox(publication, DRAFT)) == 2


def test_the_day_before_needs_no_yes(publication: Path) -> None:
    add_readers(publication, "a@example.org")
    set_front_matter(publication, DRAFT, "status", "ready")
    result = run_cli(publication, "send", DRAFT, now="2026-11-30T12:00")
    assert result.code == 0, result.stderr


# -- numbers -------------------------------------------------------------------------------------


def test_numbers_never_change_once_sent_or_archived(publication: Path) -> None:
    add_readers(publication, "a@example.org")
    # October is sent as No. 4 (after July, August, September).
    sent = run_cli(publication, "send", OCTOBER, now="2026-10-06T09:05")
    assert sent.code == 0, sent.stderr
    (october,) = outbox(publication, OCTOBER)
    assert str(october["Subject"]).startswith("Leader Notes #4: ")
    # An older draft and a backdated ready issue are added afterwards.
    content = publication / "content"
    (content / "2026-06-draft.md").write_text("---\ntitle: Old draft\nsummary: s\n---\nText.\n")
    (content / "2026-05-backdated.md").write_text(
        "---\ntitle: Backdated\nsummary: s\nstatus: ready\n---\nText.\n"
    )
    archive = run_cli(publication, "archive", now="2026-11-20T12:00")
    assert archive.code == 0, archive.stderr
    page = (publication / "build" / "archive" / OCTOBER / "index.html").read_text()
    assert "No.&nbsp;4" in page
    backdated = publication / "build" / "archive" / "2026-05-backdated" / "index.html"
    assert "No.&nbsp;5" in backdated.read_text()  # the next free number, not No. 1
    with open_store(load_config(publication)) as store:
        fixed = store.numbers.fixed_numbers()
    assert fixed[OCTOBER] == 4 and fixed["2026-05-backdated"] == 5
    assert fixed["2026-07-your-first-customer-sits-next-to-you"] == 1  # archived: fixed
    # Deleting the draft and adding another changes nothing that readers have seen.
    (content / "2026-06-draft.md").unlink()
    (content / "2026-04-another.md").write_text("---\ntitle: Another\nsummary: s\n---\nT.\n")
    run_cli(publication, "archive", now="2026-11-20T12:00")
    assert "No.&nbsp;4" in (publication / "build" / "archive" / OCTOBER / "index.html").read_text()
    assert "No.&nbsp;5" in backdated.read_text()


def test_a_store_from_before_fixed_numbers_keeps_what_readers_saw(publication: Path) -> None:
    """Under the old rule a draft dated August took a number, so October went out as No. 5."""
    (publication / "content" / "2026-08-20-old-draft.md").write_text(
        "---\ntitle: Old draft\ndate: 2026-08-20\nsummary: s\n---\nT.\n"
    )
    config = load_config(publication)
    with open_store(config) as store:
        store.sends.finish_send(store.sends.start_send(OCTOBER).id)
    with sqlite3.connect(config.subscribers_dir / DB_NAME) as db:
        db.execute("DELETE FROM issue_numbers")  # as an upgraded store has it
    result = run_cli(publication, "archive", now="2026-11-20T12:00")
    assert result.code == 0, result.stderr
    page = (publication / "build" / "archive" / OCTOBER / "index.html").read_text()
    assert "No.&nbsp;5" in page
    with open_store(config) as store:
        assert store.numbers.fixed_numbers()[OCTOBER] == 5


# -- check catches the unfinished ----------------------------------------------------------------


def test_a_ready_issue_still_holding_the_scaffold_is_refused(publication: Path) -> None:
    created = run_cli(publication, "new", "Half done", "--date", "2027-01-05")
    assert created.code == 0
    path = publication / "content" / "2027-01-half-done.md"
    draft_check = run_cli(publication, "check", str(path))
    assert draft_check.code == 0 and "warning: still holds the text" in draft_check.stdout
    set_front_matter(publication, "2027-01-half-done", "status", "ready")
    check = run_cli(publication, "check", "2027-01-half-done")
    assert check.code == 1
    assert f"{path}:4: error: still holds the text `newsletter new` wrote" in check.stderr
    add_readers(publication, "a@example.org")
    send = run_cli(publication, "send", "2027-01-half-done", "--yes")
    assert send.code == 2 and "`newsletter check` finds" in send.stderr


@pytest.mark.parametrize("transport", ["smtp", "file"])
def test_example_settings_warn_only_for_real_delivery(publication: Path, transport: str) -> None:
    result = run_cli(publication, "check", env={"NEWSLETTER_DELIVERY__TRANSPORT": transport})
    assert result.code == 0
    warned = [line for line in result.stdout.splitlines() if "newsletter.yaml" in line]
    if transport == "file":
        assert warned == []
    else:
        assert any("from still uses the example domain example.com" in w for w in warned)
        assert any("base_url still uses the example domain" in w for w in warned)
        assert any("postal_address is still the sample's" in w for w in warned)
