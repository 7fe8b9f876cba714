"""Where a send's CPU goes, step by step, and what the steps cost alone.

    .venv/bin/python bench/stages.py [--readers 10000] [--connections 4] [--dkim]

1. One real send to Postfix's smtp-sink (as in bench/send.py), with each step of the engine
   timed in the thread that runs it (`time.thread_time` around each call, ~1 us a call of its
   own): take the next row (`reserve`), build the message (`prepare`; with --dkim also the
   DKIM header and the RSA operation inside it), the final data and its reply (`deliver`),
   record and claim (`commit`: a line of the claim journal on SQLite, its folds included),
   count the result (`recorded`), and each connection's whole;
   plus the parent's CPU besides rendering the issue. Figures are CPU a message, summed over
   the worker processes.
2. The same steps alone in this process: `prepare` for 2,000 rows; 3,000 record-and-claim
   transactions of the send log (what each message cost before the claim journal, and still
   does on PostgreSQL); 2,900 messages through the claim journal, its folds included; 3,000
   empty transactions. On a fresh copy of the publication.

Why both: in a send the steps run between the kernel's TCP copies and SQLite's page writes, on
caches other processes evict, and cost about twice what they cost alone (docs/performance.md).
Prints the load average beside the figures. A measure, not a target: exits 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import send as bench  # bench/send.py: the sink, the publication, the DKIM key

Totals = dict[str, list[float]]  # step: [thread CPU seconds, calls]
STEPS = [
    "reserve",
    "prepare",
    "prepare: DKIM header",
    "prepare: RSA and its line",
    "deliver",
    "commit",
    "recorded",
]


def timed(owner: Any, name: str, totals: Totals, label: str | None = None) -> None:
    """Wrap `owner.name` so each call adds its thread CPU to `totals[label or name]`."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            entry = totals.setdefault(label or name, [0.0, 0])
            entry[0] += time.thread_time() - started
            entry[1] += 1

    setattr(owner, name, wrapper)


def instrument(totals: Totals, dkim: bool) -> None:
    from newsletter.delivery import engine, journal
    from newsletter.mail import dkim as signing

    for step in ("reserve", "prepare", "deliver", "recorded"):
        timed(engine._Run, step, totals)
    for claims in (journal.Journal, journal.Direct):  # SQLite's claim journal; a server's
        timed(claims, "commit", totals)
    if dkim:
        timed(signing, "unsigned_headers", totals, "prepare: DKIM header")
        timed(signing.Unsigned, "complete", totals, "prepare: RSA and its line")


def child(root: Path, port: int, connections: int, key: str, out: Path) -> None:
    """One instrumented send in this process (and its workers); totals to `out`/*.json."""
    bench.child_environment(port, connections, key)
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery
    from newsletter.delivery import workers

    totals: Totals = {}
    instrument(totals, key != "-")
    timed(delivery, "prepare", totals, "parent: rendering")
    original = workers._worker

    def worker(*args: Any, **kwargs: Any) -> None:
        totals.clear()  # the parent's figures came along with the fork
        started = time.thread_time()
        try:
            original(*args, **kwargs)
        finally:
            totals["a connection in all"] = [time.thread_time() - started, 1]
            (out / f"worker-{os.getpid()}.json").write_text(json.dumps(totals))

    workers._worker = worker
    config = load_config(root)
    issues = load_issues(config, bench.BENCH_DAY)
    started = time.process_time()
    report = delivery.send_issue(config, find_issue(config, issues, bench.SLUG), issues)
    parent = time.process_time() - started
    if connections == 1:  # one connection runs in this process: its steps are the parent's
        totals["a connection in all"] = [parent - totals["parent: rendering"][0], 1]
    else:
        totals["parent: besides rendering"] = [parent - totals["parent: rendering"][0], 1]
    (out / "parent.json").write_text(json.dumps(totals))
    print(json.dumps({"sent": report.sent_now, "seconds": report.elapsed}))


def in_a_send(base: Path, port: int, readers: int, connections: int, key: Path | None) -> None:
    root = bench.fresh_copy(bench.publication(base, readers), "send")
    out = base / "stages"
    out.mkdir()
    command = [sys.executable, __file__, "--child", str(root), str(port), str(connections)]
    result = subprocess.run(
        [*command, str(key) if key else "-", str(out)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"the send failed ({result.returncode}):\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    sent = figures["sent"]
    summed: Totals = {}
    for path in out.glob("*.json"):
        for step, (seconds, calls) in json.loads(path.read_text()).items():
            entry = summed.setdefault(step, [0.0, 0])
            entry[0] += seconds
            entry[1] += calls
    kind = "DKIM-signed" if key else "unsigned"
    rate = sent / figures["seconds"]
    print(f"1. a send to {sent:,} readers on {connections} connection(s), {kind}: {rate:,.0f}/s")
    order = [*STEPS, "a connection in all", "parent: besides rendering", "parent: rendering"]
    for step in sorted(summed, key=order.index):
        seconds, calls = summed[step]
        each = f"  ({calls:,} calls)" if step in STEPS else ""
        print(f"   {step:<28}{seconds / sent * 1e6:>8,.0f} us a message{each}")


def alone(base: Path, key: Path | None) -> None:
    """The steps with nothing else running: `prepare`, then the commit of the send log."""
    if key is not None:
        bench.child_environment(0, 1, str(key))
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery
    from newsletter.delivery.engine import _Run
    from newsletter.delivery.journal import Journal
    from newsletter.delivery.outgoing import Prepared, RateLimit
    from newsletter.delivery.policy import Result
    from newsletter.mail.bodies import BodyEncoder
    from newsletter.store.store import open_store

    base.mkdir()
    root = bench.publication(base, 8_000)
    config = load_config(root)
    issues = load_issues(config, bench.BENCH_DAY)
    rendered, skeleton = delivery.prepare(config, find_issue(config, issues, bench.SLUG), issues)
    print("2. the same steps alone, in one process:")
    with open_store(config) as store:
        log = store.sends
        send = log.start_send(bench.SLUG)
        rows = log.next_deliveries(send.id, 8_000)
        run = _Run(
            config, log, store.subscribers, send, skeleton, BodyEncoder(rendered),
            lambda: None, lambda progress: None, RateLimit(0),
        )  # fmt: skip
        for row in rows[:100]:  # the caches an issue fills once
            run.prepare(row)
        started = time.thread_time()
        for row in rows[100:2_100]:
            prepared = run.prepare(row)
            if isinstance(prepared, Prepared):
                prepared.data.result()  # signed now, if DKIM is on
        print(f"   {'prepare':<28}{(time.thread_time() - started) / 2_000 * 1e6:>8,.0f} us")
        ids = [row.id for row in rows[2_100:5_101]]
        log.mark_in_flight(ids[0], "<first@bench>")
        started = time.thread_time()
        for done, claim in itertools.pairwise(ids):
            log.record_and_claim_many([(done, "sent", "250 ok", None, (claim, f"<{claim}@b>"))])
        commit = (time.thread_time() - started) / (len(ids) - 1)
        print(f"   {'commit (record and claim)':<28}{commit * 1e6:>8,.0f} us")
        lines = rows[5_101:8_000]
        claims = Journal(log, base / "journal")
        started = time.thread_time()
        claims.commit(None, (lines[0], "<first@bench>"))
        for done, claim in itertools.pairwise(lines):
            claims.commit((done, Result("sent", "250 ok")), (claim, f"<{claim.id}@b>"))
        claims.close()
        line = (time.thread_time() - started) / len(lines)
        print(f"   {'claim journal (folds too)':<28}{line * 1e6:>8,.0f} us")
        started = time.thread_time()
        for _ in range(3_000):
            with store.db.write():
                pass
        empty = (time.thread_time() - started) / 3_000
        print(f"   {'an empty transaction':<28}{empty * 1e6:>8,.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--dkim", action="store_true", help="sign with a fresh 2048-bit RSA key")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, port, connections, key, out = args.child
        child(Path(root), int(port), int(connections), key, Path(out))
        return
    sink, port = bench.start_sink()
    base = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    try:
        key = bench.dkim_key(base) if args.dkim else None
        print(f"at the start: {bench.load()}")
        in_a_send(base, port, args.readers, args.connections, key)
        alone(base / "alone", key)
        print(f"at the end: {bench.load()}")
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
