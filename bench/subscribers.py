"""Subscriber store bench: import 1,000,000 generated CSV rows, then iterate the active ones.

Targets (issue 4): >= 25,000 rows/s imported with validation, peak RSS < 150 MB. Each phase runs
in its own process so its peak RSS is its own. The import goes through the same code as
`newsletter subscribers import` (CsvReader -> normalise_address -> Store.import_subscribers).

    .venv/bin/python bench/subscribers.py [--rows N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from newsletter.store.csvio import CsvReader
from newsletter.store.store import open_sqlite

TARGET_RATE = 25_000
TARGET_RSS_MB = 150
FIRST = ["Ada", "Grace", "Zoë", "José", "Björn", "Łukasz", "Ольга", "美玲", "Priya", "Sinéad"]
LAST = ["lovelace", "hopper", "martin", "garcia", "lindqvist", "nowak", "ivanova", "chen"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "Example.COM"]


def generate(path: Path, rows: int) -> None:
    """Realistic rows: mixed case, a few quirky-but-valid addresses, names with accents."""
    rng = random.Random(4)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("\ufeffEmail Address,First Name\r\n")
        for i in range(rows):
            first = rng.choice(FIRST)
            local = f"{rng.choice(LAST)}.{i}"
            if i % 10 == 0:
                local = local.capitalize() + "+news"
            out.write(f"{local}@{rng.choice(DOMAINS)},{first}\r\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def phase_import(db: Path, csv_path: Path) -> dict[str, float]:
    with open_sqlite(db) as store:
        started, cpu = time.perf_counter(), time.process_time()
        reader = CsvReader(csv_path)
        report = store.imports.import_subscribers(reader, source=f"import {csv_path.name}")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rows": report.added, "seconds": seconds, "cpu": cpu, "rss_mb": peak_rss_mb()}


def phase_iterate(db: Path) -> dict[str, float]:
    with open_sqlite(db) as store:
        started, cpu = time.perf_counter(), time.process_time()
        count = sum(1 for _ in store.subscribers.iter_active())
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rows": count, "seconds": seconds, "cpu": cpu, "rss_mb": peak_rss_mb()}


def run_phase(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *paths = args.phase
        db = Path(paths[0])
        result = phase_import(db, Path(paths[1])) if name == "import" else phase_iterate(db)
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory() as temp:
        work = args.keep or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        csv_path, db = work / "bench.csv", work / "subscribers.db"
        for stale in work.glob("subscribers.db*"):
            stale.unlink()
        generate(csv_path, args.rows)
        imported = run_phase("import", str(db), str(csv_path))
        iterated = run_phase("iterate", str(db))
    rate = imported["rows"] / imported["seconds"]
    ok = rate >= TARGET_RATE and max(imported["rss_mb"], iterated["rss_mb"]) < TARGET_RSS_MB
    print(f"subscribers: imported {imported['rows']:,.0f} rows in {imported['seconds']:.1f} s")
    print(f"  import rate   {rate:>10,.0f} rows/s (target >= {TARGET_RATE:,})")
    # On a shared machine the wall clock includes other people's work; CPU time does not.
    print(f"  per CPU second{imported['rows'] / imported['cpu']:>10,.0f} rows/s")
    print(f"  import RSS    {imported['rss_mb']:>10.1f} MB peak (target < {TARGET_RSS_MB})")
    print(
        f"  iterate       {iterated['rows']:>10,.0f} active in {iterated['seconds']:.1f} s"
        f" ({iterated['cpu']:.1f} s CPU)"
    )
    print(f"  iterate RSS   {iterated['rss_mb']:>10.1f} MB peak (target < {TARGET_RSS_MB})")
    print(f"  load average  {os.getloadavg()[0]:>10.2f} (2 cores: above ~1 means sharing)")
    print("  result: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
