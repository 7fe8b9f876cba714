"""Real, labelled mail from ../shared/peer (sisimai bounces, email_reply_parser replies).

Read in place, never copied into the repository. Skips when the folder is absent.
"""

from __future__ import annotations

import csv
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.inbox.classify import classify
from newsletter.inbox.processor import Processor
from newsletter.inbox.replytext import strip_reply
from newsletter.links import bounce_address
from newsletter.store.records import Subscriber
from newsletter.store.store import open_store


def _peer_folder() -> Path:
    """NEWSLETTER_PEER_CORPUS, else ../shared/peer beside the checkout, else the workplace's."""
    beside = Path(__file__).resolve().parent.parent.parent / "shared" / "peer"
    candidates = [os.environ.get("NEWSLETTER_PEER_CORPUS"), beside, "/work/shared/peer"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "bounces" / "MANIFEST.tsv").is_file():
            return Path(candidate)
    return beside


PEER = _peer_folder()
pytestmark = pytest.mark.skipif(
    not (PEER / "bounces" / "MANIFEST.tsv").is_file(),
    reason=f"the labelled peer corpus is not at {PEER} (it lives beside the repository; "
    "or set NEWSLETTER_PEER_CORPUS)",
)


def rows(kind: str) -> list[dict[str, str]]:
    with (PEER / kind / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


EXPECTED = {"hard": "bounced", "soft": "active", "complaint": "complained", "not-bounce": "active"}


def test_bounce_labels_match_the_store_after_processing(publication: Path) -> None:
    """Each message goes to its own store: several samples share one recipient address.
    The samples were sent to sisimai's addresses, so the MTA pipe's envelope recipient (the
    reader's VERP bounce address) supplies the proof that they are about our reader."""
    labelled = [r for r in rows("bounces") if r["recipient"]]
    misses: list[str] = []
    for index, row in enumerate(labelled):
        root = publication.parent / f"peer-{index}"
        (root / "subscribers").mkdir(parents=True)
        (root / "newsletter.yaml").write_bytes((publication / "newsletter.yaml").read_bytes())
        config = load_config(root)
        with open_store(config) as store:
            added = store.subscribers.add(
                row["recipient"], source="test", consent="peer corpus test"
            )
            Processor(config, store, confirm=None).process(
                (PEER / "bounces" / row["file"]).read_bytes(),
                recipient=bounce_address(config, reader_token(added.subscriber)),
            )
            reader = store.subscribers.get_by_email(row["recipient"])
            assert reader is not None
            if reader.status != EXPECTED[row["kind"]]:
                misses.append(f"{row['file']}: {row['kind']} -> {reader.status}")
    total = len(labelled)
    share = 100 * (total - len(misses)) / total
    print(f"\npeer bounces: {total - len(misses)}/{total} = {share:.1f}% match; misses: {misses}")
    # Known, deliberate difference: arf-26 is Apple Mail's one-click unsubscribe, which we
    # record as an unsubscribe (suppressed either way), not as a spam complaint.
    assert share >= 95.0, misses
    assert set(misses) <= {"arf-26.eml: complaint -> unsubscribed"}


def reader_token(reader: Subscriber | None) -> str:
    assert reader is not None
    return reader.token


def test_every_bounce_kind_and_recipient_is_read() -> None:
    wrong = []
    for row in rows("bounces"):
        msg = message_from_bytes(
            (PEER / "bounces" / row["file"]).read_bytes(), policy=policy.default
        )
        assert isinstance(msg, EmailMessage)
        result = classify(msg, ("news@example.com",))
        if row["kind"] in ("hard", "soft"):
            ok = result.kind == "bounce" and result.hard is (row["kind"] == "hard")
            ok = ok and result.recipient == row["recipient"]
        elif row["kind"] == "complaint":
            ok = (
                result.kind in ("complaint", "unsubscribe") and result.recipient == row["recipient"]
            )
        else:
            ok = result.kind in ("auto_reply", "feedback")
        if not ok:
            wrong.append((row["file"], row["kind"], result))
    assert wrong == []


@pytest.mark.parametrize("row", rows("replies") if PEER.is_dir() else [], ids=lambda r: r["file"])
def test_reply_first_line_and_no_accidental_unsubscribe(row: dict[str, str]) -> None:
    body = (PEER / "replies" / row["file"]).read_bytes()
    text = body.decode("utf-8")
    own = strip_reply(text)
    first = next((line.strip() for line in own.splitlines() if line.strip()), "")
    assert first == row["first_line"].strip()
    raw = (
        b"From: Reader <reader@example.org>\r\nTo: news@example.com\r\n"
        b"Subject: Re: Leader Notes\r\nIn-Reply-To: <x.y@example.com>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    )
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert classify(msg, ("news@example.com",)).kind == "feedback"


def test_without_proof_no_bounce_or_complaint_changes_anyone(publication: Path) -> None:
    """The same real bounces and ARF reports, arriving at the bare address with nothing of
    ours inside (issue 13): every named reader stays active and each is kept for review."""
    labelled = [r for r in rows("bounces") if r["recipient"] and r["kind"] != "not-bounce"]
    config = load_config(publication)
    with open_store(config) as store:
        for row in labelled:
            if store.subscribers.get_by_email(row["recipient"]) is None:
                store.subscribers.add(row["recipient"], source="test", consent="peer corpus test")
        processor = Processor(config, store, confirm=None)
        actions = [
            processor.process((PEER / "bounces" / row["file"]).read_bytes()).action
            for row in labelled
        ]
        statuses = {
            row["recipient"]: store.subscribers.get_by_email(row["recipient"]) for row in labelled
        }
    changed = {email: r.status for email, r in statuses.items() if r and r.status != "active"}
    # arf-26 is Apple Mail's unsubscribe button (a person, checked by From): not a report.
    assert changed == {"example@icloud.com": "unsubscribed"}
    reviewed = [a for a in actions if a.startswith("kept for review")]
    assert len(reviewed) >= len(labelled) - 2, actions


def test_unlabelled_messages_change_nobody(publication: Path) -> None:
    config = load_config(publication)
    with open_store(config) as store:
        store.subscribers.add("shironeko@example.com", source="test", consent="peer corpus test")
        processor = Processor(config, store, confirm=None)
        for row in rows("bounces"):
            if not row["recipient"]:
                processor.process((PEER / "bounces" / row["file"]).read_bytes())
        reader = store.subscribers.get_by_email("shironeko@example.com")
        assert reader is not None and reader.status == "active"
