"""`newsletter subscribers ...` in-process, and as real processes where kills and locks matter."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, copy_sample, run_cli

from newsletter.config import load_config
from newsletter.store.store import open_store

SAMPLE = REPO / "subscribers" / "sample.csv"
NEWSLETTER = [sys.executable, "-c", "from newsletter.cli.main import main; main()"]


def stats(root: Path) -> dict[str, int]:
    result = run_cli(root, "subscribers", "stats")
    assert result.code == 0, result.stderr
    return {
        name: int(count) for name, count in (line.split() for line in result.stdout.splitlines())
    }


def test_the_sample_list_imports_cleanly(publication: Path) -> None:
    result = run_cli(publication, "subscribers", "import", str(SAMPLE))
    assert result.code == 0, result.stderr
    assert "20 added, 0 already on the list, 0 suppressed, 0 duplicate rows" in result.stdout
    assert stats(publication)["active"] == 20
    listed = run_cli(publication, "subscribers", "list").stdout.splitlines()
    assert "francoise.dubois@example.com\tactive\tFrançoise" in listed
    again = run_cli(publication, "subscribers", "import", str(SAMPLE))
    assert "0 added, 20 already on the list" in again.stdout


def test_add_remove_and_resubscribe(publication: Path) -> None:
    assert run_cli(
        publication, "subscribers", "add", "Jane@Example.com", "--name", "Jane"
    ).stdout == ("added Jane@example.com\n")
    assert (
        "already subscribed"
        in run_cli(publication, "subscribers", "add", "jane@example.com").stdout
    )
    removed = run_cli(publication, "subscribers", "remove", "JANE@example.com", "--reason", "asked")
    assert removed.stdout == "unsubscribed Jane@example.com\n"
    assert (
        "already unsubscribed"
        in run_cli(publication, "subscribers", "remove", "jane@example.com").stdout
    )
    refused = run_cli(publication, "subscribers", "add", "jane@example.com")
    assert refused.code == 2
    assert refused.stderr == (
        "error: jane@example.com: suppressed (unsubscribed); only --resubscribe --consent NOTE "
        "re-activates it\n"
    )
    no_consent = run_cli(publication, "subscribers", "add", "jane@example.com", "--resubscribe")
    assert no_consent.code == 2 and no_consent.stderr.startswith("error: consent: ")
    back = run_cli(
        publication,
        "subscribers",
        "add",
        "jane@example.com",
        "--resubscribe",
        "--consent",
        "phoned",
    )
    assert back.code == 0 and back.stdout == "re-subscribed Jane@example.com (was unsubscribed)\n"
    assert run_cli(publication, "subscribers", "list", "--status", "active").stdout == (
        "Jane@example.com\tactive\tJane\n"
    )


def test_remove_forget_erases_and_suppresses(publication: Path) -> None:
    run_cli(publication, "subscribers", "add", "gone@example.com", "--name", "Gone")
    result = run_cli(publication, "subscribers", "remove", "gone@example.com", "--forget")
    assert result.code == 0 and "forgot gone@example.com" in result.stdout
    assert run_cli(publication, "subscribers", "list").stdout == ""
    assert stats(publication)["forgotten"] == 1
    refused = run_cli(publication, "subscribers", "add", "gone@example.com")
    assert refused.code == 2 and "suppressed (forgotten)" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("add", "not-an-address"),
            "error: not-an-address: email: An email address must have an @-sign.",
        ),
        (("remove", "nobody@example.com"), "error: nobody@example.com: not on the list"),
        (("import", "missing.csv"), "error: missing.csv: no such file"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    publication: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli(publication, "subscribers", *args)
    assert result.code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)


def test_an_invalid_file_imports_nothing_and_names_each_bad_line(
    publication: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("email\nok@example.com\nbroken@\n\nalso broken\n", encoding="utf-8")
    result = run_cli(publication, "subscribers", "import", str(bad))
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}:3: email: 'broken@': There must be something after the @-sign.",
        f"error: {bad}:5: email: 'also broken': An email address must have an @-sign.",
        f"error: {bad}: nothing imported: 2 invalid rows (fix them, or use --skip-invalid)",
    ]
    assert stats(publication)["total"] == 0
    skipped = run_cli(publication, "subscribers", "import", str(bad), "--skip-invalid")
    assert skipped.code == 0
    assert skipped.stderr.splitlines()[0].startswith(f"skipped: {bad}:3: email:")
    assert "1 added" in skipped.stdout and "2 invalid rows skipped" in skipped.stdout


def test_reimport_reports_suppressed_rows_with_their_lines(publication: Path) -> None:
    run_cli(publication, "subscribers", "import", str(SAMPLE))
    run_cli(publication, "subscribers", "remove", "alan.turing@example.net")
    result = run_cli(publication, "subscribers", "import", str(SAMPLE))
    assert result.code == 0
    assert f"suppressed: {SAMPLE}:4: alan.turing@example.net (unsubscribed)" in result.stderr
    assert "0 added, 19 already on the list, 1 suppressed" in result.stdout


def test_export_is_streamed_whole_and_round_trips(publication: Path, tmp_path: Path) -> None:
    run_cli(publication, "subscribers", "import", str(SAMPLE))
    run_cli(publication, "subscribers", "remove", "ada.lovelace@example.com")
    out = tmp_path / "out" / "export.csv"
    out.parent.mkdir()
    result = run_cli(publication, "subscribers", "export", str(out))
    assert result.code == 0 and result.stdout == f"exported 20 readers to {out}\n"
    assert [p.name for p in out.parent.iterdir()] == ["export.csv"]  # no temp file left
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["email"] == "ada.lovelace@example.com" and rows[0]["status"] == "unsubscribed"
    assert {r["first_name"] for r in rows} >= {"Łukasz", "Ольга", "美玲"}
    active = run_cli(publication, "subscribers", "export", "-", "--status", "active")
    assert active.stdout.count("\n") == 20  # header + 19
    elsewhere = copy_sample(tmp_path / "elsewhere")  # another publication
    assert run_cli(elsewhere, "subscribers", "import", str(out)).code == 0
    assert stats(elsewhere)["unsubscribed"] == 1 and stats(elsewhere)["active"] == 19


# -- real processes --------------------------------------------------------------------------


def fifo_import(root: Path, fifo: Path) -> subprocess.Popen[str]:
    """An import process reading its CSV from a named pipe the test writes at its own pace."""
    os.mkfifo(fifo)
    return subprocess.Popen(
        [*NEWSLETTER, "--root", str(root), "subscribers", "import", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def open_pipe(fifo: Path, process: subprocess.Popen[str]) -> int:
    """The pipe's writing end, once the importer has opened it (or fail if it died first)."""
    for _ in range(600):
        try:
            pipe = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
            continue
        os.set_blocking(pipe, True)
        return pipe
    raise AssertionError("the import never opened its file")


def write_rows(pipe: int, first: int, count: int) -> None:
    data = "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(first, first + count))
    os.write(pipe, data.encode())


def write_lock_is_held(db: Path) -> bool:
    probe = sqlite3.connect(db, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        probe.close()
    return False


def wait_for(condition: object, what: str) -> None:
    for _ in range(600):
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_import_leaves_the_previous_list_intact(publication: Path, tmp_path: Path) -> None:
    run_cli(publication, "subscribers", "import", str(SAMPLE))
    run_cli(publication, "subscribers", "remove", "grace.hopper@example.org")
    before = run_cli(publication, "subscribers", "export", "-").stdout
    db = publication / "subscribers" / "subscribers.db"
    process = fifo_import(publication, tmp_path / "big.csv")
    pipe = open_pipe(tmp_path / "big.csv", process)
    try:
        os.write(pipe, b"email,name\n")
        write_rows(pipe, 0, 30_000)  # blocks until the importer has read most of it
        wait_for(lambda: write_lock_is_held(db), "the import's transaction")
        # Mid-way: thousands of rows are in the open transaction, more are still to come.
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        with contextlib.suppress(OSError):
            os.close(pipe)
    assert not write_lock_is_held(db)
    assert run_cli(publication, "subscribers", "export", "-").stdout == before
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    assert stats(publication) == {
        "active": 19, "unsubscribed": 1, "bounced": 0, "complained": 0, "total": 20, "forgotten": 0,
    }  # fmt: skip


def test_an_import_and_an_unsubscribe_in_two_processes_lose_nothing(
    publication: Path, tmp_path: Path
) -> None:
    run_cli(publication, "subscribers", "import", str(SAMPLE))
    db = publication / "subscribers" / "subscribers.db"
    process = fifo_import(publication, tmp_path / "big.csv")
    pipe = open_pipe(tmp_path / "big.csv", process)
    # The list is readable while the import holds the write lock (WAL).
    os.write(pipe, b"email,name\n")
    write_rows(pipe, 0, 10_000)
    wait_for(lambda: write_lock_is_held(db), "the import's transaction")
    assert stats(publication)["active"] == 20
    # A second writer (an unsubscribe, as the inbox or web endpoint does) queues for the lock.
    leavers = ["ada.lovelace@example.com", "reader5@example.org", "mei.chen@example.com"]
    unsubscriber = subprocess.Popen(
        [sys.executable, "-c", UNSUBSCRIBE, str(publication), *leavers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # let it reach the lock; its outcome must not depend on this
    finisher = threading.Thread(target=lambda: (write_rows(pipe, 10_000, 10_000), os.close(pipe)))
    finisher.start()
    out, err = process.communicate(timeout=120)
    finisher.join()
    assert process.returncode == 0, err
    assert "20000 added" in out
    u_out, u_err = unsubscriber.communicate(timeout=120)
    assert unsubscriber.returncode == 0, u_err
    assert u_err == ""
    config = load_config(publication)
    with open_store(config) as store:
        counts = store.subscribers.counts()
        statuses = {e: store.subscribers.get_by_email(e).status for e in leavers}  # type: ignore[union-attr]
    assert statuses == dict.fromkeys(leavers, "unsubscribed")
    assert counts["active"] + counts["unsubscribed"] == 20_020
    assert counts["unsubscribed"] == 3
    assert u_out.split() == ["True", "True", "True"]  # each unsubscribe changed its reader


UNSUBSCRIBE = """
import sys, time
from pathlib import Path
from newsletter.config import load_config
from newsletter.store.store import open_store
root, emails = Path(sys.argv[1]), sys.argv[2:]
with open_store(load_config(root)) as store:
    for email in emails:
        for _ in range(600):  # reader5 exists only once the import has committed
            reader = store.subscribers.get_by_email(email)
            if reader is not None:
                break
            time.sleep(0.05)
        print(store.subscribers.unsubscribe(reader, source="reply", detail="concurrency test"))
"""
