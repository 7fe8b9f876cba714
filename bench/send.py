"""Send throughput and memory against Postfix's smtp-sink (a discarding SMTP server).

    .venv/bin/python bench/send.py [--readers 10000] [--big 100000] [--repeat 3]

Prints, from one run: msgs/s of `newsletter send` with 1 and 4 connections, of a bare smtplib
loop (one reused connection, one prebuilt message of the same size; and the same loop on 4
threads and on 4 processes, the ceilings for our connections on this machine) and of Postfix's
`smtp-source -d -s 4` (the machine's limit); the ratios against the targets of issue 5; and
the peak RSS of a send to 10,000 and to 100,000 readers. Each send runs in its own process
(`--child`) so its peak RSS is its own. Starts and stops its own smtp-sink.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLUG = "2026-07-your-first-customer-sits-next-to-you"
TARGETS = {"1 connection": 0.7, "4 connections": 1.5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        sys.exit("smtp-sink not found: install Debian's postfix (see REAL_SERVERS.md)")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "256"])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.02)
    process.kill()
    sys.exit("smtp-sink did not start")


def publication(base: Path, readers: int) -> Path:
    """A copy of the sample publication with `readers` subscribers."""
    root = base / f"pub-{readers}"
    root.mkdir()
    for part in ("newsletter.yaml", "content", "templates"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part)
        else:
            shutil.copy2(source, root / part)
    csv = base / f"readers-{readers}.csv"
    with csv.open("w", encoding="utf-8") as out:
        out.write("email,first_name\n")
        names = ("Zoë", "Ann O'Neil", "Smith, John", "李小龙", "Reader")
        for n in range(readers):
            out.write(f'reader{n}@example.org,"{names[n % len(names)].replace(chr(34), "")}"\n')
    newsletter = str(Path(sys.executable).parent / "newsletter")
    subprocess.run(
        [newsletter, "--root", str(root), "subscribers", "import", str(csv)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return root


def fresh_copy(root: Path, name: str) -> Path:
    """The publication with an untouched send log (a send is once per issue)."""
    copy = root.parent / name
    shutil.copytree(root, copy)
    return copy


def child(root: Path, port: int, connections: int) -> None:
    """Run one send in this process; print its figures as JSON."""
    os.environ.update(
        NEWSLETTER_DELIVERY__TRANSPORT="smtp",
        NEWSLETTER_DELIVERY__SMTP__HOST="127.0.0.1",
        NEWSLETTER_DELIVERY__SMTP__PORT=str(port),
        NEWSLETTER_DELIVERY__SMTP__CONNECTIONS=str(connections),
    )
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery

    config = load_config(root)
    issues = load_issues(config, BENCH_DAY)
    report = delivery.send_issue(config, find_issue(config, issues, SLUG), issues)
    # With several connections the worker processes hold the rows: the largest process counts.
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(json.dumps({"sent": report.sent_now, "seconds": report.elapsed, "peak_kb": peak_kb}))

BENCH_DAY = dt.date(2026, 11, 20)  # between the sample's October and December issues


def our_send(root: Path, port: int, connections: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(root), str(port), str(connections)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def sample_message(root: Path) -> bytes:
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.content.render import PreviewReader
    from newsletter.delivery import send as delivery

    config = load_config(root)
    issues = load_issues(config, BENCH_DAY)
    rendered, skeleton = delivery.prepare(config, find_issue(config, issues, SLUG), issues)
    reader = PreviewReader(first_name="Zoë")
    body = rendered.personalise(reader)
    return skeleton.render(reader, html=body.html, text=body.text)


def bare_smtplib(port: int, message: bytes, count: int, threads: int = 1) -> float:
    """smtplib.sendmail of one prebuilt message, one reused connection per thread."""

    def loop(share: int) -> None:
        conn = smtplib.SMTP("127.0.0.1", port)
        for n in range(share):
            conn.sendmail("news@example.com", f"reader{n}@example.org", message)
        conn.quit()

    workers = [threading.Thread(target=loop, args=(count // threads,)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return count // threads * threads / (time.perf_counter() - started)


def _bare_loop(port: int, message: bytes, share: int) -> None:
    conn = smtplib.SMTP("127.0.0.1", port)
    for n in range(share):
        conn.sendmail("news@example.com", f"reader{n}@example.org", message)
    conn.quit()


def bare_processes(port: int, message: bytes, count: int, processes: int = 4) -> float:
    """The bare loop in `processes` forked processes: the ceiling for our worker processes."""
    context = multiprocessing.get_context("fork")
    share = count // processes
    workers = [
        context.Process(target=_bare_loop, args=(port, message, share)) for _ in range(processes)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return share * processes / (time.perf_counter() - started)


def smtp_source(port: int, size: int, count: int) -> float | None:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(source).exists():
        return None
    started = time.perf_counter()
    subprocess.run(
        [source, "-d", "-s", "4", "-m", str(count), "-l", str(size), "-f", "news@example.com",
         "-t", "reader@example.org", f"127.0.0.1:{port}"],
        check=True,
    )  # fmt: skip
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (median)")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "PORT", "CONNECTIONS"))
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), int(args.child[2]))
        return
    sink, port = start_sink()
    base = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        run(args, base, port)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, base: Path, port: int) -> None:
    n = args.readers
    small = publication(base, n)
    message = sample_message(small)
    print(f"{n:,} readers, {len(message):,}-byte messages, smtp-sink on 127.0.0.1:{port}")
    rates: dict[str, list[float]] = {
        "bare smtplib": [],
        "bare, 4 threads": [],
        "bare, 4 processes": [],
        "1 connection": [],
        "4 connections": [],
    }
    peaks: dict[int, float] = {}
    for attempt in range(args.repeat):
        rates["bare smtplib"].append(bare_smtplib(port, message, n))
        rates["bare, 4 threads"].append(bare_smtplib(port, message, n, threads=4))
        rates["bare, 4 processes"].append(bare_processes(port, message, n))
        for connections in (1, 4):
            copy = fresh_copy(small, f"run-{attempt}-{connections}")
            figures = our_send(copy, port, connections)
            assert figures["sent"] == n, figures
            rates[f"{connections} connection{'s' if connections > 1 else ''}"].append(
                figures["sent"] / figures["seconds"]
            )
            peaks[n] = max(peaks.get(n, 0), figures["peak_kb"])
            shutil.rmtree(copy)
    source = smtp_source(port, len(message), 2 * n)
    bare = statistics.median(rates["bare smtplib"])
    for name, values in rates.items():
        rate = statistics.median(values)
        line = f"{name:<20}{rate:>8,.0f} msgs/s"
        if name in TARGETS:
            ratio = rate / bare
            verdict = "ok" if ratio >= TARGETS[name] else "BELOW TARGET"
            line += f"   {ratio:.2f}x bare smtplib (target >= {TARGETS[name]}x: {verdict})"
        if name == "4 connections":
            ceiling = statistics.median(rates["bare, 4 processes"])
            line += f", {rate / ceiling:.2f}x bare on 4 processes"
        print(line + f"   runs: {', '.join(f'{v:,.0f}' for v in values)}")
    if source is not None:
        print(f"{'smtp-source -d -s 4':<20}{source:>8,.0f} msgs/s   (the machine's limit)")
    if args.big:
        big = publication(base, args.big)
        figures = our_send(big, port, 4)
        assert figures["sent"] == args.big, figures
        peaks[args.big] = figures["peak_kb"]
        rate = figures["sent"] / figures["seconds"]
        print(f"{args.big:,} readers, 4 connections: {rate:,.0f} msgs/s")
        growth = (peaks[args.big] - peaks[n]) / 1024
        verdict = "ok" if growth <= 30 else "BELOW TARGET"
        print(
            f"peak RSS: {peaks[n] / 1024:.1f} MB for {n:,}, {peaks[args.big] / 1024:.1f} MB for "
            f"{args.big:,} ({growth:+.1f} MB; target <= +30 MB: {verdict})"
        )


if __name__ == "__main__":
    main()
