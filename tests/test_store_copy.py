"""`newsletter store copy --to URL`: SQLite to PostgreSQL and back, every row and the key of
forgotten addresses kept, all or nothing, never into a store that has rows."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from pgserver import PostgresServer

from newsletter.config import load_config
from newsletter.errors import StoreError
from newsletter.store.copy import NOT_COPIED, TABLES, copy_store
from newsletter.store.schema import MIGRATIONS
from newsletter.store.store import Store, open_sqlite, open_store, open_url


def history(store: Store) -> None:
    """A little of everything the store keeps."""
    for name in ("ann", "bob", "cy", "dee", "ed"):
        store.subscribers.add(f"{name}@example.org", name.title(), source="command", consent="t")
    bob = store.subscribers.get_by_email("bob@example.org")
    cy = store.subscribers.get_by_email("cy@example.org")
    assert bob is not None and cy is not None
    send = store.sends.start_send("2026-10-first")
    for row in store.sends.next_deliveries(send.id, 10):
        store.sends.mark_in_flight(row.id, f"<{row.id}@example.org>")
        store.sends.record_delivery(row.id, "sent", reply="250 ok")
    store.sends.finish_send(send.id)
    store.numbers.fix_numbers({"2026-10-first": 1}, how="sent")
    store.subscribers.unsubscribe(bob, source="reply", detail="stop")
    store.subscribers.record_bounce(
        cy, hard=True, issue_slug="2026-10-first", detail="550", soft_limit=3
    )
    store.events.record_event(None, "inbox", '{"kind": "feedback"}', key="<m1@example.org>")
    store.subscribers.forget("ed@example.org", reason="asked", by="test")
    soon = datetime.now(UTC) + timedelta(days=2)
    store.signups.add_signup(
        "fay@example.org", "Fay", token_hash="h", client_ip="::1", expires_at=soon
    )


def contents(store: Store) -> dict[str, list[Any]]:
    return {
        table: [tuple(row) for row in store.db.rows(f"SELECT {columns} FROM {table} ORDER BY 1")]
        for table, (columns,) in TABLES.items()
    }


def test_the_copy_knows_every_table_and_column_of_the_schema() -> None:
    db = sqlite3.connect(":memory:")
    for version in sorted(MIGRATIONS):
        db.executescript(MIGRATIONS[version])
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables - set(NOT_COPIED) == set(TABLES)
    for table, (columns,) in TABLES.items():
        schema = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        assert sorted(c.strip() for c in columns.split(",")) == sorted(schema), table


def test_sqlite_to_postgresql_and_back_keeps_every_row(
    publication: Path, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    config = load_config(publication)
    with open_store(config) as store:
        history(store)
        before = contents(store)
    url = postgres_server.new_database("copy_there_and_back")
    result = run_cli(publication, "store", "copy", "--to", url)
    assert result.code == 0, result.stderr
    assert "subscribers: 4" in result.stdout  # ed was forgotten: a hash, not a row
    with open_url(url, publication) as copied:
        assert contents(copied) == before
        # The key came along: the forgotten address is still refused; new ids follow on.
        assert copied.subscribers.is_forgotten("ED@example.org")
        added = copied.subscribers.add("gil@example.org", source="command", consent="t")
        assert added.subscriber is not None and added.subscriber.id > max(
            r[0] for r in before["subscribers"]
        )
    # Now from the PostgreSQL store (`store:` set through the environment) to a new SQLite file.
    env = {"NEWSLETTER_STORE": url}
    back = run_cli(publication, "store", "copy", "--to", "sqlite:back.db", "--json", env=env)
    assert back.code == 0, back.stderr
    assert json.loads(back.stdout)["rows"]["subscribers"] == 5
    with open_sqlite(publication / "back.db") as returned:
        assert contents(returned)["deliveries"] == before["deliveries"]
        assert returned.subscribers.get_by_email("gil@example.org") is not None
        assert returned.subscribers.is_forgotten("ed@example.org")


def test_a_store_with_rows_is_never_a_target(publication: Path, tmp_path: Path) -> None:
    with open_store(load_config(publication)) as store:
        history(store)
    with open_sqlite(tmp_path / "taken.db") as taken:
        taken.subscribers.add("someone@example.org", source="command", consent="t")
    result = run_cli(publication, "store", "copy", "--to", f"sqlite:{tmp_path / 'taken.db'}")
    assert result.code == 2 and "not empty" in result.stderr
    assert "Traceback" not in result.stderr
    with open_sqlite(tmp_path / "taken.db") as taken:
        assert taken.subscribers.counts()["active"] == 1


def test_a_count_that_does_not_match_undoes_the_whole_copy(
    publication: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(load_config(publication)) as source, open_sqlite(tmp_path / "t.db") as target:
        history(source)
        real = source.db.one

        def one(sql: str, params: Any = ()) -> Any:
            found = real(sql, params)
            return found + 1 if sql == "SELECT count(*) FROM deliveries" else found

        monkeypatch.setattr(source.db, "one", one)
        expected = "deliveries: 6 rows in the source, 5 copied, 5 in the target"
        with pytest.raises(StoreError, match=expected):
            copy_store(source.db, target.db)
        assert contents(target) == {table: [] for table in TABLES}
