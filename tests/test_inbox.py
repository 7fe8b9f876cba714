"""`newsletter inbox` on the test corpus through --mbox, --maildir and stdin, with a real store.

Every message must have its manifest's effect on the subscriber store; a second run changes
nothing and sends no second confirmation; a following send skips every suppressed reader.
"""

from __future__ import annotations

import csv
import mailbox
import sqlite3
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.config import load_config
from newsletter.store.store import open_store

CORPUS = Path(__file__).resolve().parent / "corpus"


def manifest() -> list[dict[str, str]]:
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def corpus_files() -> list[Path]:
    return [CORPUS / row["file"] for row in manifest()]


def subscribe_corpus_readers(publication: Path) -> Path:
    """Subscribe every manifest reader under its corpus token; returns the publication."""
    config = load_config(publication)
    with open_store(config) as store:
        for row in manifest():
            if row["reader"] != "-":
                store.subscribers.add(row["reader"], source="test", consent="corpus test")
    # The corpus messages carry fixed tokens; real tokens are random, so set them here.
    db = sqlite3.connect(config.subscribers_dir / "subscribers.db")
    with db:
        for row in manifest():
            if row["reader"] != "-":
                db.execute(
                    "UPDATE subscribers SET token = ? WHERE email = ?",
                    (row["token"], row["reader"]),
                )
    db.close()
    return publication


@pytest.fixture
def readers(publication: Path) -> Path:
    return subscribe_corpus_readers(publication)


def assert_manifest_effects(root: Path) -> None:
    config = load_config(root)
    with open_store(config) as store:
        for row in manifest():
            if row["reader"] == "-":
                continue
            reader = store.subscribers.get_by_email(row["reader"])
            assert reader is not None
            assert reader.status == row["after"], row["file"]
        assert store.subscribers.get_by_email("stranger@elsewhere.example.net") is None
        assert store.subscribers.get_by_email("old-alias@example.com") is None


def confirmations(root: Path) -> list[Path]:
    return sorted((root / "outbox" / "unsubscribe-confirmations").glob("*.eml"))


EXPECTED_CONFIRMATIONS = {row["reader"] for row in manifest() if row["after"] == "unsubscribed"}


def assert_confirmations(root: Path) -> None:
    sent = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in confirmations(root)]
    assert sorted(str(m["To"]) for m in sent) == sorted(EXPECTED_CONFIRMATIONS)
    for msg in sent:
        assert msg["Auto-Submitted"] == "auto-replied"
        assert "unsubscribed" in str(msg["Subject"])


def test_corpus_through_mbox_twice(readers: Path, tmp_path: Path) -> None:
    path = tmp_path / "replies.mbox"
    box = mailbox.mbox(path)
    for file in corpus_files():
        box.add(mailbox.mboxMessage(file.read_bytes()))
    box.close()
    first = run_cli(readers, "inbox", "--mbox", str(path))
    assert first.code == 0, first.stderr
    assert f"{len(manifest())} message(s)" in first.stdout
    kinds: dict[str, int] = {}
    for row in manifest():
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    for kind, count in kinds.items():
        assert f"{kind} {count}" in first.stdout
    assert_manifest_effects(readers)
    assert_confirmations(readers)
    second = run_cli(readers, "inbox", "--mbox", str(path))
    assert second.code == 0
    assert f"already processed {len(manifest())}" in second.stdout
    assert_manifest_effects(readers)
    assert_confirmations(readers)  # never twice


def test_corpus_through_maildir_marks_messages_seen(readers: Path, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir")
    for file in corpus_files():
        box.add(mailbox.MaildirMessage(file.read_bytes()))
    box.close()
    result = run_cli(readers, "inbox", "--maildir", str(tmp_path / "Maildir"), "-v")
    assert result.code == 0, result.stderr
    assert_manifest_effects(readers)
    assert_confirmations(readers)
    assert not list((tmp_path / "Maildir" / "new").iterdir())
    seen = list((tmp_path / "Maildir" / "cur").iterdir())
    assert len(seen) == len(manifest()) and all(p.name.endswith(",S") for p in seen)


def test_corpus_through_stdin_one_message_each(readers: Path) -> None:
    for file in corpus_files():
        result = run_cli_input(readers, file.read_bytes())
        assert result.exit_code == 0, (file.name, result.output)
    assert_manifest_effects(readers)
    assert_confirmations(readers)


def run_cli_input(root: Path, data: bytes):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from newsletter.cli.main import main

    return CliRunner().invoke(main, ["--root", str(root), "inbox", "-"], input=data)


def test_mta_pipe_as_a_real_process(readers: Path) -> None:
    data = (CORPUS / "24-postfix-dsn-hard-verp.eml").read_bytes()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "newsletter"), "--root", str(readers), "inbox", "-"],
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with open_store(load_config(readers)) as store:
        reader = store.subscribers.get_by_email("xia.xu@example.com")
        assert reader is not None and reader.status == "bounced"


def test_a_following_send_skips_unsubscribed_and_bounced_readers(
    readers: Path, tmp_path: Path
) -> None:
    path = tmp_path / "replies.mbox"
    box = mailbox.mbox(path)
    for file in corpus_files():
        box.add(mailbox.mboxMessage(file.read_bytes()))
    box.close()
    assert run_cli(readers, "inbox", "--mbox", str(path), "--no-confirm").code == 0
    assert confirmations(readers) == []
    with open_store(load_config(readers)) as store:
        send = store.sends.start_send("2025-11-next")
        rows = store.sends.next_deliveries(send.id, 1000)
    recipients = {row.email for row in rows}
    gone = {
        r["reader"] for r in manifest() if r["after"] in ("unsubscribed", "bounced", "complained")
    }
    stay = {r["reader"] for r in manifest() if r["after"] == "active"}
    assert recipients & gone == set()
    assert stay <= recipients


def test_bad_sources_are_one_line_errors(readers: Path, tmp_path: Path) -> None:
    missing = run_cli(readers, "inbox", "--mbox", str(tmp_path / "nope.mbox"))
    assert missing.code == 2 and "no such mbox file" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_maildir = run_cli(readers, "inbox", "--maildir", str(tmp_path))
    assert not_maildir.code == 2 and "not a Maildir" in not_maildir.stderr
    none = run_cli(readers, "inbox")
    assert none.code == 2 and "choose one source" in none.stderr
    no_password = run_cli(
        readers,
        "inbox",
        "--imap",
        env={"NEWSLETTER_INBOX__IMAP__USERNAME": "x", "NEWSLETTER_IMAP_PASSWORD": None},
    )
    assert no_password.code == 2 and "NEWSLETTER_IMAP_PASSWORD" in no_password.stderr


def test_feedback_lists_sender_date_subject_and_own_words(readers: Path, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir")
    for name in ("02-gmail-thanks-quoted-footer.eml", "14-shift-jis-feedback.eml"):
        box.add(mailbox.MaildirMessage((CORPUS / name).read_bytes()))
    box.close()
    assert run_cli(readers, "inbox", "--maildir", str(tmp_path / "Maildir")).code == 0
    listed = run_cli(readers, "inbox", "--feedback")
    assert listed.code == 0
    out = listed.stdout
    assert "From:    Ben Baker <ben.baker@example.org>" in out
    assert "Date:    Tue, 07 Oct 2025 11:40:02 +0100" in out
    assert "Subject: Re: Leader Notes, October 2025: Serving the customer inside" in out
    assert "  Great issue, thanks! The bit about internal customers landed with my team." in out
    assert "いつも楽しく読んでいます。" in out
    assert "Unsubscribe:" not in out  # the quoted footer is not the reader's words


def test_newsletter_send_after_inbox_mails_only_the_readers_still_active(
    readers: Path, tmp_path: Path
) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir")
    for file in corpus_files():
        box.add(mailbox.MaildirMessage(file.read_bytes()))
    box.close()
    assert (
        run_cli(readers, "inbox", "--maildir", str(tmp_path / "Maildir"), "--no-confirm").code == 0
    )
    slug = "2026-07-your-first-customer-sits-next-to-you"
    sent = run_cli(readers, "send", slug)
    assert sent.code == 0, sent.stdout + sent.stderr
    outbox = readers / "outbox" / slug
    delivered = {
        str(message_from_bytes(p.read_bytes(), policy=policy.default)["To"])
        .rpartition("<")[2]
        .rstrip(">")
        .lower()
        for p in outbox.glob("*.eml")
    }
    stay = {r["reader"] for r in manifest() if r["after"] == "active"}
    assert delivered == stay
