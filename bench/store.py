"""The store on PostgreSQL beside SQLite (issue 17): a big list, the send log, several senders.

    .venv/bin/python bench/store.py [--readers 1000000] [--small 100000] [--seconds 20]

Starts its own throwaway PostgreSQL (tests/pgserver.py) and Postfix smtp-sink, and prints,
with the load average beside the figures:
- the import of `--readers` subscribers into each store, and the creation of the send log
  (`start_send`: one pending row per reader);
- the database time per message: a claim-and-record loop on the store alone, no SMTP
  (`next_deliveries` by 200, then one `record_and_claim_many` per message, as the engine does);
- the msgs/s of real sends to smtp-sink for `--seconds` each, from a fresh copy of the send
  log: SQLite with 4 connections (one `send`, four worker processes), PostgreSQL with one
  `send` process of one connection, and four such processes sharing the send;
- each PostgreSQL sender's peak RSS with `--small` and with `--readers` readers.
Targets: 4 PostgreSQL senders >= 0.8x the msgs/s of 4 connections on SQLite; a sender's peak
RSS at `--readers` within 30 MB of `--small`. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests")]

from pgserver import find_bin_dir, running_postgres  # noqa: E402
from send import BENCH_DAY, SLUG, load, start_sink  # noqa: E402

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
RATIO_TARGET = 0.8
RSS_GROWTH_MB = 30


def make_publication(base: Path, readers: int, store: str | None) -> Path:
    """The sample publication with `readers` subscribers in `store` (None: SQLite)."""
    root = base / f"pub-{readers}-{'pg' if store else 'sqlite'}"
    root.mkdir()
    for part in ("newsletter.yaml", "content", "templates"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, root / part)
    csv = base / f"readers-{readers}.csv"
    if not csv.exists():
        with csv.open("w", encoding="utf-8") as out:
            out.write("email,first_name\n")
            out.writelines(f"reader{n}@example.org,Reader\n" for n in range(readers))
    started = time.perf_counter()
    subprocess.run(
        [NEWSLETTER, "--root", str(root), "subscribers", "import", str(csv)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=environment(store),
    )
    seconds = time.perf_counter() - started
    print(f"  import of {readers:,} readers into {label(store)}: {seconds:.1f} s")
    return root


def environment(store: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_STORE"}
    if store:
        env["NEWSLETTER_STORE"] = store
    return {**env, **extra}


def label(store: str | None) -> str:
    return "PostgreSQL" if store else "SQLite"


def start_send_time(root: Path, store: str | None) -> float:
    from newsletter.store.store import open_url

    with open_url(store, root) as opened:
        started = time.perf_counter()
        record = opened.sends.start_send(SLUG)
        seconds = time.perf_counter() - started
    print(f"  send log of {record.total:,} rows in {label(store)}: {seconds:.2f} s")
    return seconds


def claim_loop(root: Path, store: str | None, count: int) -> float:
    """Seconds of database work per message: claim and record `count` rows, no SMTP."""
    from newsletter.store.store import open_url

    with open_url(store, root) as opened:
        send = opened.sends.start_send(SLUG)
        done = 0
        started = time.perf_counter()
        previous: int | None = None
        while done < count:
            rows = opened.sends.next_deliveries(send.id, 200)
            if not rows:
                break
            for row in rows:
                claim = (row.id, f"<bench.{row.id}@example.com>")
                if previous is None:
                    opened.sends.mark_in_flight(*claim)
                else:
                    opened.sends.record_and_claim_many([(previous, "sent", "250 ok", None, claim)])
                previous, done = row.id, done + 1
        seconds = (time.perf_counter() - started) / max(1, done)
    print(f"  database time per message, {label(store)}: {seconds * 1e6:.0f} us ({done:,} rows)")
    return seconds


def sends(
    root: Path, store: str | None, port: int, processes: int, connections: int, seconds: float
) -> tuple[float, list[float]]:
    """msgs/s of `processes` senders of `connections` each over `seconds` once they are all
    sending, and each one's peak RSS in MB. Each stops cleanly on SIGTERM (the message on the
    wire is recorded)."""
    env = environment(
        store,
        NEWSLETTER_DELIVERY__TRANSPORT="smtp",
        NEWSLETTER_DELIVERY__SMTP__HOST="127.0.0.1",
        NEWSLETTER_DELIVERY__SMTP__PORT=str(port),
        NEWSLETTER_DELIVERY__SMTP__CONNECTIONS=str(connections),
    )
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", str(root)], env=env, stdout=subprocess.DEVNULL
        )
        for _ in range(processes)
    ]
    # Steady state only: from the first messages on (rendering and start-up are bench/startup.py's).
    deadline = time.monotonic() + 300
    while (before := sent_count(root, store)) < 10 * processes:
        if time.monotonic() > deadline or any(c.poll() is not None for c in children):
            break
        time.sleep(0.2)
    started = time.perf_counter()
    time.sleep(seconds)
    rate = (sent_count(root, store) - before) / (time.perf_counter() - started)
    for child in children:
        child.send_signal(signal.SIGTERM)
    peaks = []
    for child in children:
        _, _, usage = os.wait4(child.pid, 0)
        peaks.append(usage.ru_maxrss / 1024)
    what = f"{processes} x {connections} connection{'s' if connections > 1 else ''}"
    print(f"  {label(store)}, {what}: {rate:,.0f} msgs/s; peak RSS {max(peaks):.1f} MB")
    return rate, peaks


def sent_count(root: Path, store: str | None) -> int:
    from newsletter.store.store import open_url

    with open_url(store, root) as opened:
        record = opened.sends.get_send(SLUG)
        return 0 if record is None else opened.sends.delivery_counts(record.id)["sent"]


def child(root: Path) -> None:
    """One `send` in this process (a SIGTERM stops it cleanly)."""
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery
    from newsletter.delivery.interrupts import Interrupted

    config = load_config(root)
    issues = load_issues(config, BENCH_DAY)
    with contextlib.suppress(Interrupted):  # the bench's SIGTERM: stopped, all recorded
        delivery.send_issue(config, find_issue(config, issues, SLUG), issues)


def fresh(server_url: str, template: str, name: str) -> str:
    """A new database copied from `template` (CREATE DATABASE ... TEMPLATE: a file copy)."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--child", metavar="ROOT")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child))
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL's initdb and pg_ctl are not installed (Debian: postgresql)")
    sink, port = start_sink()
    base = Path(tempfile.mkdtemp(prefix="bench-store-"))
    print(f"{args.readers:,} readers (and {args.small:,}); at the start: {load()}")
    try:
        with running_postgres(bin_dir) as server:
            missed = run(args, base, server, port)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(base, ignore_errors=True)
    print(f"at the end: {load()}")
    sys.exit(1 if missed else 0)


def run(args: argparse.Namespace, base: Path, server: object, port: int) -> int:
    from pgserver import PostgresServer

    assert isinstance(server, PostgresServer)
    big, small = args.readers, args.small
    pg_big = server.new_database("big")
    pg_small = server.new_database("small")
    lite = make_publication(base, big, None)
    pg_root = make_publication(base, big, pg_big)
    small_root = make_publication(base, small, pg_small)
    print("the send log:")
    start_send_time(lite, None)
    start_send_time(pg_root, pg_big)
    start_send_time(small_root, pg_small)
    print("claim and record, no SMTP:")
    lite_copy = base / "lite-claims"
    shutil.copytree(lite, lite_copy)
    claim_loop(lite_copy, None, 20_000)
    claim_loop(pg_root, fresh(server.url, "big", "claims"), 20_000)
    print(f"sending to smtp-sink for {args.seconds:.0f} s each:")
    lite_run = base / "lite-run"
    shutil.copytree(lite, lite_run)
    lite_rate, _ = sends(lite_run, None, port, 1, 4, args.seconds)
    sends(pg_root, fresh(server.url, "big", "one"), port, 1, 1, args.seconds)
    pg_rate, big_peaks = sends(pg_root, fresh(server.url, "big", "four"), port, 4, 1, args.seconds)
    _, small_peaks = sends(
        pg_root, fresh(server.url, "small", "four_small"), port, 4, 1, args.seconds
    )
    ratio = pg_rate / lite_rate if lite_rate else 0.0
    growth = max(big_peaks) - max(small_peaks)
    checks = [
        (
            f"4 PostgreSQL senders >= {RATIO_TARGET}x 4 connections on SQLite",
            ratio >= RATIO_TARGET,
            f"{ratio:.2f}x",
        ),
        (
            f"a sender's peak RSS at {big:,} within {RSS_GROWTH_MB} MB of {small:,}",
            growth <= RSS_GROWTH_MB,
            f"{growth:+.1f} MB",
        ),
    ]
    missed = 0
    for what, met, figure in checks:
        print(f"  {'met   ' if met else 'MISSED'} {what}: {figure}")
        missed += not met
    return missed


if __name__ == "__main__":
    main()
