"""The embedded outbox (the file transport): files a second, before and after issue 18.

    .venv/bin/python bench/outbox.py [--readers 2000] [--repeat 3]

Runs `send` with the file transport in two ways, side by side in one run (medians of
`--repeat`, order alternated), with the load average beside the figures:
- "one writer, mkstemp": the engine as before issue 18, one writer thread, each file written
  by fsutil.write_atomic(durable=True) (mkstemp, write, fsync, rename);
- "4 writers": today's (delivery.FILE_WRITERS threads, derived temp names, fsync, rename).
Both fsync every file before its row says sent. Exits 1 below the 1.5x target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from send import BENCH_DAY, SLUG, fresh_copy, load, publication

TARGET = 1.5


def child(root: Path, legacy: bool) -> None:
    """One send in this process; prints its figures as JSON."""
    os.environ["NEWSLETTER_DELIVERY__TRANSPORT"] = "file"
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery
    from newsletter.fsutil import write_atomic
    from newsletter.mail import transport

    if legacy:  # the file transport as it was: one writer, mkstemp per file

        def send(
            self: transport.FileTransport,
            sender: str,
            recipient: str,
            data: bytes,
            *,
            message_id: str,
        ) -> str:
            name = transport._UNSAFE_NAME.sub("_", message_id.strip("<>")) + ".eml"
            write_atomic(self.directory / name, data, durable=True)
            return f"250 written {name}"

        delivery.FILE_WRITERS = 1
        transport.FileTransport.send = send  # type: ignore[method-assign]
    config = load_config(root)
    issues = load_issues(config, BENCH_DAY)
    report = delivery.send_issue(config, find_issue(config, issues, SLUG), issues)
    files = len(list((config.outbox_dir / SLUG).glob("*.eml")))
    print(json.dumps({"sent": report.sent_now, "seconds": report.elapsed, "files": files}))


def one_send(root: Path, legacy: bool) -> float:
    command = [sys.executable, __file__, "--child", str(root), "legacy" if legacy else "now"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["sent"] == figures["files"], figures
    return float(figures["sent"] / figures["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "MODE"))
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1] == "legacy")
        return
    # On the disk of the repository (tmpfs would make fsync free): like a real outbox.
    base = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=Path(__file__).resolve().parent))
    try:
        small = publication(base, args.readers)
        print(f"{args.readers:,} readers, file transport, outbox on {base}")
        print(f"at the start: {load()}")
        rates: dict[str, list[float]] = {"one writer, mkstemp": [], "4 writers": []}
        for attempt in range(args.repeat):
            order = list(rates) if attempt % 2 == 0 else list(reversed(rates))
            for name in order:
                copy = fresh_copy(small, f"run-{attempt}-{name.split()[0]}")
                rates[name].append(one_send(copy, legacy=name != "4 writers"))
                shutil.rmtree(copy)
        print(f"after the runs: {load()}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:<22}{median[name]:>8,.0f} msgs/s   runs: {runs}")
    ratio = median["4 writers"] / median["one writer, mkstemp"]
    ok = ratio >= TARGET
    print(f"4 writers / one writer: {ratio:.2f}x (target >= {TARGET}x: {'ok' if ok else 'MISSED'})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
