"""Build the web archive of 1,000 generated issues: full, no-op and incremental builds.

Generates a temporary publication (the sample's templates and images, 1,000 `ready` issues
whose bodies are the sample issues' bodies, linking each other and the images), then times:
a full build into an empty folder, a rebuild with nothing changed, a rebuild after one issue's
text changed, and a rebuild after the newest issue's title changed (which changes the "recent
issues" list on every page). Loading the issues (YAML front-matter) is timed on its own.
Exits 1 when a target is missed (full < 10 s, incremental after a text change < 1 s).

    .venv/bin/python bench/archive.py [--issues N] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from newsletter.archive.build import ArchiveReport, build_archive
from newsletter.config import load_config
from newsletter.content.issues import Issue, load_issues

REPO = Path(__file__).resolve().parent.parent
TAGS = [f"topic-{n}" for n in range(40)]
FULL_TARGET = 10.0
INCREMENTAL_TARGET = 1.0


def sample_bodies() -> list[str]:
    bodies = []
    for path in sorted((REPO / "content").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        bodies.append(text.split("\n---\n", 1)[1])
    return bodies


def generate(root: Path, count: int) -> list[str]:
    """A publication with `count` ready issues, one a week; returns their file names."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "newsletter.yaml", root / "newsletter.yaml")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copytree(REPO / "content" / "images", root / "content" / "images")
    bodies = sample_bodies()
    first = dt.date(2000, 1, 4)
    names = []
    for n in range(count):
        date = first + dt.timedelta(days=7 * n)
        name = f"{date.isoformat()}-issue-{n:04d}.md"
        previous = names[-1] if names else name
        # the sample bodies link other sample issues by file name: point them at real ones
        body = re.sub(r"\(2026-[a-z0-9-]+\.md\)", f"({previous})", bodies[n % len(bodies)])
        meta = {
            "title": f"Generated issue {n}: notes on service",
            "date": date.isoformat(),
            "summary": f"Summary of generated issue {n}, one sentence for the archive.",
            "tags": [TAGS[n % len(TAGS)], TAGS[(n * 7 + 3) % len(TAGS)]],
            "author": "Bench Writer",
            "status": "ready",
        }
        front = "\n".join(f"{key}: {json.dumps(value)}" for key, value in meta.items())
        (root / "content" / name).write_text(f"---\n{front}\n---\n{body}", encoding="utf-8")
        names.append(name)
    return names


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the Markdown workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class Timing:
    label: str
    load: float  # seconds of load_issues (YAML front-matter; not the archive's code)
    build: float  # wall-clock seconds of build_archive
    cpu: float  # CPU seconds of build_archive, workers included
    report: ArchiveReport


def timed_build(label: str, root: Path, out: Path, today: dt.date, workers: int | None) -> Timing:
    config = load_config(root)
    start = time.perf_counter()
    issues: list[Issue] = load_issues(config, today=today)
    loaded = time.perf_counter()
    cpu = cpu_seconds()
    report = build_archive(config, issues, out, today=today, workers=workers)
    built = time.perf_counter()
    return Timing(label, loaded - start, built - loaded, cpu_seconds() - cpu, report)


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None, help="Markdown processes")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it")
    args = parser.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    base = args.keep or temp
    try:
        root = base / "publication"
        out = base / "site"
        names = generate(root, args.issues)
        today = dt.date(2100, 1, 1)
        rows = [timed_build("full build (empty folder)", root, out, today, args.workers)]
        rows.append(timed_build("rebuild, nothing changed", root, out, today, args.workers))
        middle = root / "content" / names[len(names) // 2]
        replace_in(middle, "\n\n", "\n\nA sentence added by the bench.\n\n")
        rows.append(
            timed_build("rebuild, one issue's text changed", root, out, today, args.workers)
        )
        newest = root / "content" / names[-1]
        replace_in(newest, 'title: "Generated', 'title: "Renamed')
        rows.append(timed_build("rebuild, newest title changed", root, out, today, args.workers))

        load_avg = os.getloadavg()[0]
        print(
            f"archive bench: {args.issues} issues, workers={args.workers or 'auto'}, "
            f"{os.cpu_count()} CPUs, load average {load_avg:.1f} at the end"
        )
        print(f"{'':36} {'build wall':>10} {'build CPU':>10} {'load_issues':>12}  written/rendered")
        for row in rows:
            print(
                f"{row.label:36} {row.build:>9.2f}s {row.cpu:>9.2f}s {row.load:>11.2f}s  "
                f"{len(row.report.written):>5} / {len(row.report.rendered)}"
            )
        full, text_edit = rows[0].build, rows[2].build
        ok = full < FULL_TARGET and text_edit < INCREMENTAL_TARGET
        print(
            f"targets (build_archive wall clock): full < {FULL_TARGET:.0f} s: {full:.2f} s; "
            f"incremental < {INCREMENTAL_TARGET:.0f} s: {text_edit:.2f} s -> "
            f"{'met' if ok else 'MISSED'}"
        )
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
