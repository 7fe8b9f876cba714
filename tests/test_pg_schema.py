"""The PostgreSQL schema (newsletter/store/pg_schema.py) against a real server: it applies, and
it is SQLite's schema, compared table by table from both catalogues. (Its behaviour, statement
by statement beside SQLite's: test_pg_schema_behaviour.py, with these fixtures.)"""

from __future__ import annotations

import itertools
import secrets
import sqlite3
from collections.abc import Iterator
from typing import Any

import pgserver
import psycopg
import pytest
from pgserver import PostgresServer

from newsletter.store import schema as sqlite_schema
from newsletter.store.pg_schema import (
    HAS_META,
    MIGRATION_LOCK,
    PG_MIGRATIONS,
    PG_SCHEMA_VERSION,
    READ_VERSION,
    WRITE_VERSION,
)

# The session fixture, here until conftest.py imports it for every module.
postgres_server = pgserver.postgres_server
pytestmark = pytest.mark.real_clock  # starts PostgreSQL, which a faked clock would stall

_names = itertools.count(1)


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Bring the database to PG_SCHEMA_VERSION in one transaction, as pg_schema documents;
    returns the versions applied."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute(MIGRATION_LOCK)
        version = 0
        if _one(conn, HAS_META):
            version = _one(conn, READ_VERSION)
        for target in range(version + 1, PG_SCHEMA_VERSION + 1):
            conn.execute(PG_MIGRATIONS[target])
            if target == 1:
                conn.execute(_psycopg(HASH_KEY), (secrets.token_hex(32),))
            conn.execute(_psycopg(WRITE_VERSION), (target,))
            applied.append(target)
    return applied


# database.py's, which runs on both backends.
HASH_KEY = "INSERT INTO meta VALUES ('hash_key', ?)"


def _psycopg(sql: str) -> str:
    """The store's `?` placeholders as psycopg's (neither statement holds another `?` or `%`)."""
    return sql.replace("?", "%s")


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.new_database(f"schema_{next(_names)}")


@pytest.fixture
def pg(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh database at the current schema, in autocommit: each statement
    is its own transaction, as each is in SQLite without BEGIN."""
    with psycopg.connect(url) as conn:
        migrate(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def lite() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")  # as store.database.Database opens its own
    for version in sorted(sqlite_schema.MIGRATIONS):
        conn.executescript(sqlite_schema.MIGRATIONS[version])
    yield conn
    conn.close()


def test_the_versions_are_sqlites() -> None:
    assert sorted(PG_MIGRATIONS) == sorted(sqlite_schema.MIGRATIONS)
    assert PG_SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION


def test_all_migrations_apply_in_one_transaction_and_once(url: str) -> None:
    with psycopg.connect(url) as conn:
        assert migrate(conn) == [1, 2, 3, 4]
        assert _one(conn, READ_VERSION) == PG_SCHEMA_VERSION
        hash_key = _one(conn, "SELECT value FROM meta WHERE name = 'hash_key'")
        assert len(bytes.fromhex(hash_key)) == 32
        assert migrate(conn) == []
        assert _one(conn, "SELECT value FROM meta WHERE name = 'hash_key'") == hash_key


def test_a_database_part_way_migrates_the_rest(url: str) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(PG_MIGRATIONS[1])
        conn.execute(_psycopg(HASH_KEY), ("00" * 32,))
        conn.execute(_psycopg(WRITE_VERSION), (1,))
    with psycopg.connect(url) as conn:
        assert migrate(conn) == [2, 3, 4]
        assert _one(conn, "SELECT count(*) FROM signups") == 0


def test_a_second_process_waits_for_the_migration_lock(url: str) -> None:
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        with first.transaction():
            first.execute(MIGRATION_LOCK)
            second.execute("SET lock_timeout = '50ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                second.execute(MIGRATION_LOCK)
            second.rollback()
        second.execute(MIGRATION_LOCK)  # the first transaction ended: free again


# -- the catalogues ------------------------------------------------------------------------


def _lite_tables(lite: sqlite3.Connection) -> list[str]:
    rows = lite.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return sorted(name for (name,) in rows)


def _pg_rows(pg: psycopg.Connection[Any], query: str, *params: Any) -> list[Any]:
    return pg.execute(query, params or None).fetchall()


def test_the_tables_and_their_columns_are_sqlites(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any]
) -> None:
    pg_tables = _pg_rows(
        pg, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    assert [name for (name,) in pg_tables] == _lite_tables(lite)
    types = {"INTEGER": {"bigint", "integer"}, "TEXT": {"text"}}
    for table in _lite_tables(lite):
        lite_columns = lite.execute(f"PRAGMA table_info({table})").fetchall()
        pg_columns = _pg_rows(
            pg,
            "SELECT column_name, data_type, is_nullable = 'NO', column_default,"
            " collation_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            table,
        )
        pg_key = {
            name
            for (name,) in _pg_rows(
                pg,
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisprimary",
                table,
            )
        }
        # Same names in the same order: `INSERT INTO t VALUES (...)` relies on it.
        assert [c[1] for c in lite_columns] == [c[0] for c in pg_columns], table
        assert {c[1] for c in lite_columns if c[5]} == pg_key, table
        for (_, name, kind, notnull, default, pk), pg_column in zip(
            lite_columns, pg_columns, strict=True
        ):
            _, pg_type, pg_notnull, pg_default, collation = pg_column
            assert pg_type in types[kind], (table, name)
            assert pk or bool(notnull) == pg_notnull, (table, name)
            if not (pk and kind == "INTEGER"):  # the identity's default is its sequence
                assert default == (pg_default and pg_default.removesuffix("::text")), name
            assert collation == ("C" if kind == "TEXT" else None), (table, name)


def _lite_indexes(lite: sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
    """Indexes a migration names: table, columns, unique, the partial index's predicate."""
    found = {}
    for name, table, sql in lite.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ):
        columns = tuple(row[2] for row in lite.execute(f"PRAGMA index_info({name})"))
        where = sql.partition(" WHERE ")[2] or None
        found[name] = (table, columns, sql.startswith("CREATE UNIQUE"), where)
    return found


def _pg_indexes(pg: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """The same, leaving out the indexes behind PRIMARY KEY and UNIQUE constraints."""
    found = {}
    for name, table, columns, unique, where in _pg_rows(
        pg,
        "SELECT c.relname, t.relname, array(SELECT a.attname FROM unnest(i.indkey)"
        "  WITH ORDINALITY k(attnum, n) JOIN pg_attribute a ON a.attrelid = i.indrelid"
        "  AND a.attnum = k.attnum ORDER BY k.n), i.indisunique, pg_get_expr(i.indpred,"
        "  i.indrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace"
        " WHERE s.nspname = 'public'"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
    ):
        found[name] = (table, tuple(columns), unique, where and where.strip("()"))
    return found


def _unique_constraints_lite(lite: sqlite3.Connection) -> set[tuple[str, tuple[str, ...]]]:
    found = set()
    for table in _lite_tables(lite):
        for _, index, _, origin, _ in lite.execute(f"PRAGMA index_list({table})"):
            if origin == "u":
                columns = lite.execute(f"PRAGMA index_info({index})").fetchall()
                found.add((table, tuple(row[2] for row in columns)))
    return found


_PUBLIC = "connamespace = 'public'::regnamespace"  # not the system catalogues' own


def test_the_indexes_constraints_and_triggers_are_sqlites(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any]
) -> None:
    assert _pg_indexes(pg) == _lite_indexes(lite)
    pg_unique = _pg_rows(
        pg,
        "SELECT conrelid::regclass::text, array(SELECT a.attname FROM unnest(conkey)"
        " WITH ORDINALITY k(attnum, n) JOIN pg_attribute a ON a.attrelid = conrelid"
        " AND a.attnum = k.attnum ORDER BY k.n) FROM pg_constraint WHERE contype = 'u'"
        f" AND {_PUBLIC}",
    )
    assert {(table, tuple(columns)) for table, columns in pg_unique} == (
        _unique_constraints_lite(lite)
    )
    lite_keys = {
        (table, row[3], row[2], row[4], row[6])
        for table in _lite_tables(lite)
        for row in lite.execute(f"PRAGMA foreign_key_list({table})")
    }
    actions = {"a": "NO ACTION", "c": "CASCADE", "n": "SET NULL"}
    pg_keys = {
        (table, column, parent, parent_column, actions[action])
        for table, column, parent, parent_column, action in _pg_rows(
            pg,
            "SELECT conrelid::regclass::text, a.attname, confrelid::regclass::text,"
            " p.attname, confdeltype FROM pg_constraint"
            " JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = conkey[1]"
            " JOIN pg_attribute p ON p.attrelid = confrelid AND p.attnum = confkey[1]"
            f" WHERE contype = 'f' AND {_PUBLIC}",
        )
    }
    assert pg_keys == lite_keys
    lite_checks = sorted(
        table
        for table, sql in lite.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        for _ in range(sql.count(" CHECK ("))
    )
    pg_checks = _pg_rows(
        pg, f"SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'c' AND {_PUBLIC}"
    )
    assert sorted(table for (table,) in pg_checks) == lite_checks == ["deliveries", "subscribers"]
    lite_triggers = {
        name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    pg_triggers = {
        name for (name,) in _pg_rows(pg, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    }
    # TRUNCATE bypasses row triggers and SQLite has none: one more trigger refuses it.
    assert pg_triggers == lite_triggers | {"events_no_truncate"}
