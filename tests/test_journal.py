"""The claim journal (newsletter.delivery.journal): what a send on SQLite writes before each
final ".", and the replay that stores what a killed process left. The whole sends under
SIGKILL are in test_delivery.py, test_send_cli.py and test_signed_send.py; here, the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.config import load_config
from newsletter.delivery import journal
from newsletter.delivery.policy import Result
from newsletter.errors import DeliveryError
from newsletter.store.records import DeliveryRow
from newsletter.store.store import Store, open_store

SLUG = "2026-07-your-first-customer-sits-next-to-you"
READERS = [f"j{n}@example.org" for n in range(6)]


@pytest.fixture
def store(publication: Path) -> Iterator[Store]:
    config = load_config(publication)
    with open_store(config) as opened:
        for email in READERS:
            opened.subscribers.add(email, None, source="test", consent="test")
        yield opened


def due_rows(store: Store) -> dict[str, DeliveryRow]:
    send = store.sends.start_send(SLUG)
    return {row.email: row for row in store.sends.next_deliveries(send.id, 100)}


def states(store: Store) -> dict[str, tuple[str, int, str | None]]:
    send = store.sends.get_send(SLUG)
    assert send is not None
    rows = store.sends.deliveries_in_state(
        send.id, ("pending", "in_flight", "sent", "deferred", "failed", "unknown", "skipped")
    )
    return {row.email: (row.state, row.attempts, row.last_reply) for row in rows}


def a_history(store: Store, folder: Path) -> dict[str, tuple[str, int, str | None]]:
    """One connection's journal as a send writes it: j0 sent, j1 deferred (a 4xx), then j1
    retried and sent, j2 claimed and on the wire when the process died. Nothing folded."""
    rows = due_rows(store)
    claims = journal.Journal(store.sends, folder)
    j0, j1, j2 = rows[READERS[0]], rows[READERS[1]], rows[READERS[2]]
    later = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    assert claims.commit(None, (j0, "<j0@x>"))
    assert claims.commit((j0, Result("sent", "250 ok")), (j1, "<j1@x>"))
    assert not claims.commit((j1, Result("deferred", "451 later", due=later)), None)
    retried = DeliveryRow(**{**_fields(j1), "state": "deferred", "attempts": 1})
    assert claims.commit(None, (retried, "<j1@x>"))
    assert claims.commit((retried, Result("sent", "250 ok")), (j2, "<j2@x>"))
    return {
        READERS[0]: ("sent", 1, "250 ok"),
        READERS[1]: ("sent", 2, "250 ok"),
        READERS[2]: ("in_flight", 0, None),
    }


def _fields(row: DeliveryRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__slots__}


def test_nothing_reaches_the_send_log_before_a_fold_and_everything_after(
    store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "journal"
    expected = a_history(store, folder)
    assert all(state == "pending" for state, _, _ in states(store).values())
    (file,) = folder.iterdir()
    assert len(file.read_bytes().splitlines()) == 5  # one line a commit, before its "."
    assert journal.replay(store.sends, folder) == 7  # operations
    assert {email: states(store)[email] for email in expected} == expected
    assert not list(folder.iterdir())


def test_a_replay_of_what_a_fold_stored_already_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    """A fold stores its lines, then the process is killed before it empties its file: the
    next run replays them again. The deferred attempt is not counted twice, the reader sent
    is not claimed again."""
    folder = tmp_path / "journal"
    expected = a_history(store, folder)
    (file,) = folder.iterdir()
    lines = file.read_bytes()
    journal.replay(store.sends, folder)
    file.write_bytes(lines)
    journal.replay(store.sends, folder)
    assert {email: states(store)[email] for email in expected} == expected


def test_a_line_cut_short_by_a_kill_is_left_out(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    a_history(store, folder)
    (file,) = folder.iterdir()
    whole = file.read_bytes().splitlines(keepends=True)
    file.write_bytes(b"".join(whole[:2]) + whole[2][:7])  # j1's deferral half written
    journal.replay(store.sends, folder)
    now = states(store)
    assert now[READERS[0]] == ("sent", 1, "250 ok")
    assert now[READERS[1]][:2] == ("in_flight", 0)  # its result never reached the file


def test_a_damaged_line_says_where_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    a_history(store, folder)
    (file,) = folder.iterdir()
    whole = file.read_bytes().splitlines(keepends=True)
    for damaged in (b"{not json\n", b'[["claim", 3]]\n', b'[["record", "3", 0, "sent"]]\n'):
        file.write_bytes(whole[0] + damaged + b"".join(whole[1:]))
        with pytest.raises(DeliveryError) as raised:
            journal.replay(store.sends, folder)
        assert f"{file}: line 2: not a journal line" in str(raised.value)
    assert all(state == "pending" for state, _, _ in states(store).values())
    assert file.exists()  # kept for whoever looks into it


def test_a_reader_who_left_is_not_claimed(store: Store, tmp_path: Path) -> None:
    rows = due_rows(store)
    leaver = store.subscribers.get_by_email(READERS[3])
    assert leaver is not None
    store.subscribers.unsubscribe(leaver, source="reply", detail="mid-send")
    claims = journal.Journal(store.sends, tmp_path / "journal")
    assert not claims.commit(None, (rows[READERS[3]], "<j3@x>"))
    assert claims.commit(None, (rows[READERS[4]], "<j4@x>"))
    claims.close()
    now = states(store)
    assert now[READERS[3]] == ("skipped", 0, "reader unsubscribed before delivery")
    assert now[READERS[4]] == ("in_flight", 0, None)
    assert not list((tmp_path / "journal").iterdir())  # closed: folded, file removed


def test_a_fold_comes_every_so_many_operations_and_empties_the_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "FOLD_AFTER", 3)
    rows = list(due_rows(store).values())
    claims = journal.Journal(store.sends, tmp_path / "journal")
    assert claims.commit(None, (rows[0], "<0@x>"))
    assert claims.commit((rows[0], Result("sent", "250 ok")), (rows[1], "<1@x>"))
    assert states(store)[rows[0].email][0] == "pending"  # 3 operations held
    assert claims.commit((rows[1], Result("sent", "250 ok")), (rows[2], "<2@x>"))
    assert states(store)[rows[0].email][0] == "sent"  # folded before the third line
    lines = claims.path.read_bytes().splitlines()
    assert [op[0] for op in json.loads(lines[0])] == ["record", "claim"]  # only since then
    claims.close()


def test_a_full_disk_stops_the_claim_and_leaves_no_half_line(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that stops halfway (ENOSPC) claims nothing, and takes its half line back, so
    what other threads write after it still replays."""
    import errno
    import os

    rows = list(due_rows(store).values())
    claims = journal.Journal(store.sends, tmp_path / "journal")
    assert claims.commit(None, (rows[0], "<0@x>"))
    whole = journal._write_all

    def half_then_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal, "_write_all", half_then_full)
    with pytest.raises(DeliveryError, match="No space left on device"):
        claims.commit((rows[0], Result("sent", "250 ok")), (rows[1], "<1@x>"))
    monkeypatch.setattr(journal, "_write_all", whole)
    assert claims.commit(None, (rows[2], "<2@x>"))  # another thread, once there is room
    journal.replay(store.sends, tmp_path / "journal")
    now = states(store)
    assert now[rows[0].email][0] == "in_flight"  # its result never stored: unknown next run
    assert now[rows[1].email][0] == "pending"  # never claimed, never sent
    assert now[rows[2].email][0] == "in_flight"


def test_nothing_to_record_writes_nothing(store: Store, tmp_path: Path) -> None:
    claims = journal.Journal(store.sends, tmp_path / "journal")
    assert not claims.commit(None, None)  # a connection that found nobody due
    assert claims.path.read_bytes() == b""
    claims.close()


def test_status_after_a_crash_shows_what_the_journal_holds(publication: Path, store: Store) -> None:
    """A send killed between folds leaves its results in the journal: `status` stores them
    first (no send of that issue is running), so it says what readers really got."""
    config = load_config(publication)
    folder = journal.folder(config, SLUG)
    expected = a_history(store, folder)  # never closed: as a killed process leaves it
    code, out, err = run_cli(publication, "status", "--json")
    assert code == 0, err
    (entry,) = [one for one in json.loads(out) if one["issue"] == SLUG]
    assert entry["counts"]["sent"] == 2 and entry["counts"]["in_flight"] == 1
    assert {email: states(store)[email] for email in expected} == expected
    assert not list(folder.iterdir())
