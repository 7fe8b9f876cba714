"""Send throughput and memory against Postfix's smtp-sink (a discarding SMTP server).

    .venv/bin/python bench/send.py [--readers 10000] [--big 100000] [--repeat 3]

Prints, from one run, with the load average beside it: msgs/s of `newsletter send` on 1 and 4
connections, unsigned and DKIM-signed (2048-bit RSA); of a bare smtplib loop (one reused
connection, one prebuilt message of the same size) on 1 connection and in 4 processes (the
ceilings for our connections on this machine); of Postfix's `smtp-source -d -s 1` and `-s 4`
(the machine's limit, in C); the ratios against the targets of issue 18; and the peak RSS of
a send to 10,000 and to 100,000 readers. Medians of `--repeat` runs, the order of the runs
alternated (forwards, then backwards) so a drift in the machine's load does not favour one.
Exits 1 when a target is missed. Each send runs in its own process (`--child`) so its peak
RSS is its own. Starts and stops its own smtp-sink.
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
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLUG = "2026-07-your-first-customer-sits-next-to-you"
BENCH_DAY = dt.date(2026, 11, 20)  # between the sample's October and December issues
RSS_GROWTH_MB = 30


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


def dkim_key(base: Path) -> Path:
    """A fresh 2048-bit RSA key (the size the big mailbox providers ask for)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = base / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def fresh_copy(root: Path, name: str) -> Path:
    """The publication with an untouched send log (a send is once per issue)."""
    copy = root.parent / name
    shutil.copytree(root, copy)
    return copy


def child_environment(port: int, connections: int, key: str) -> None:
    """The settings of a bench send: SMTP to the sink on `port`; DKIM with `key` unless "-"."""
    os.environ.update(
        NEWSLETTER_DELIVERY__TRANSPORT="smtp",
        NEWSLETTER_DELIVERY__SMTP__HOST="127.0.0.1",
        NEWSLETTER_DELIVERY__SMTP__PORT=str(port),
        NEWSLETTER_DELIVERY__SMTP__CONNECTIONS=str(connections),
    )
    if key != "-":
        os.environ.update(
            NEWSLETTER_DKIM__SELECTOR="bench",
            NEWSLETTER_DKIM__DOMAIN="example.com",
            NEWSLETTER_DKIM_KEY=key,
        )


def child(root: Path, port: int, connections: int, key: str) -> None:
    """Run one send in this process; print its figures as JSON."""
    child_environment(port, connections, key)
    from newsletter.config import load_config
    from newsletter.content.issues import find_issue, load_issues
    from newsletter.delivery import send as delivery

    config = load_config(root)
    assert (config.dkim is not None) == (key != "-"), "the DKIM setting did not take"
    issues = load_issues(config, BENCH_DAY)
    report = delivery.send_issue(config, find_issue(config, issues, SLUG), issues)
    # With several connections the worker processes hold the rows: the largest process counts.
    own, workers = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    peak_kb = max(own.ru_maxrss, workers.ru_maxrss)
    # CPU of the whole send (rendering included, the workers' too): where a send is CPU-bound
    # on this machine, this and smtp-sink's share say why the ratios are what they are.
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
    figures = {"sent": report.sent_now, "seconds": report.elapsed, "peak_kb": peak_kb, "cpu": cpu}
    print(json.dumps(figures))


def our_send(root: Path, port: int, connections: int, key: Path | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(root), str(port), str(connections)]
    result = subprocess.run(
        [*command, str(key) if key else "-"], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:  # say why: a bench that dies with "exit status 1" tells nothing
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
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


def _bare_loop(port: int, message: bytes, share: int) -> None:
    conn = smtplib.SMTP("127.0.0.1", port)
    for n in range(share):
        conn.sendmail("news@example.com", f"reader{n}@example.org", message)
    conn.quit()


def bare(port: int, message: bytes, count: int, processes: int) -> float:
    """smtplib.sendmail of one prebuilt message on one reused connection per forked process:
    the ceiling for our connections (one per process) in Python on this machine."""
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


def smtp_source(port: int, size: int, count: int, sessions: int) -> float:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    started = time.perf_counter()
    subprocess.run(
        [source, "-d", "-s", str(sessions), "-m", str(count), "-l", str(size),
         "-f", "news@example.com", "-t", "reader@example.org", f"127.0.0.1:{port}"],
        check=True,
    )  # fmt: skip
    return count / (time.perf_counter() - started)


def sink_cpu(pid: int) -> float:
    """Seconds of CPU smtp-sink has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000, help="0: skip the RSS run")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (median)")
    parser.add_argument("--child", nargs=4, metavar=("ROOT", "PORT", "CONNECTIONS", "KEY"))
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), int(args.child[2]), args.child[3])
        return
    if not Path(shutil.which("smtp-source") or "/usr/sbin/smtp-source").exists():
        sys.exit("smtp-source not found: install Debian's postfix (see REAL_SERVERS.md)")
    sink, port = start_sink()
    base = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        missed = run(args, base, port, sink.pid)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(base, ignore_errors=True)
    sys.exit(1 if missed else 0)


def run(args: argparse.Namespace, base: Path, port: int, sink_pid: int) -> int:
    """Every figure and target; returns how many targets were missed."""
    n = args.readers
    small = publication(base, n)
    key = dkim_key(base)
    message = sample_message(small)
    print(f"{n:,} readers, {len(message):,}-byte messages, smtp-sink on 127.0.0.1:{port}")
    print(f"at the start: {load()}")
    peaks: list[float] = []
    cpu: dict[str, list[float]] = {}  # CPU microseconds a message: ours, and smtp-sink's

    def ours(connections: int, signed: bool) -> Callable[[int], float]:
        def one(attempt: int) -> float:
            name = f"run-{attempt}-{connections}-{'dkim' if signed else 'plain'}"
            copy = fresh_copy(small, name)
            sink_before = sink_cpu(sink_pid)
            figures = our_send(copy, port, connections, key if signed else None)
            sink_used = sink_cpu(sink_pid) - sink_before
            shutil.rmtree(copy)
            assert figures["sent"] == n, figures
            if not signed:
                peaks.append(figures["peak_kb"])
            kind = "DKIM" if signed else "unsigned"
            label = f"{connections} conn{'s' if connections > 1 else ''}, {kind}"
            cpu.setdefault(label, []).append(figures["cpu"] / n * 1e6)
            cpu.setdefault(label + ", smtp-sink", []).append(sink_used / n * 1e6)
            return figures["sent"] / figures["seconds"]

        return one

    jobs: dict[str, Callable[[int], float]] = {
        "send, 1 connection": ours(1, False),
        "send, 4 connections": ours(4, False),
        "send, 1 conn, DKIM": ours(1, True),
        "send, 4 conns, DKIM": ours(4, True),
        "bare smtplib, 1": lambda attempt: bare(port, message, n, 1),
        "bare smtplib, 4 proc": lambda attempt: bare(port, message, n, 4),
        "smtp-source -s 1": lambda attempt: smtp_source(port, len(message), n, 1),
        "smtp-source -s 4": lambda attempt: smtp_source(port, len(message), 2 * n, 4),
    }
    rates: dict[str, list[float]] = {name: [] for name in jobs}
    for attempt in range(args.repeat):
        order = list(jobs) if attempt % 2 == 0 else list(reversed(jobs))
        for name in order:
            rates[name].append(jobs[name](attempt))
            line = f"  run {attempt + 1}: {name}: {rates[name][-1]:,.0f} msgs/s"
            print(line, file=sys.stderr, flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:<22}{median[name]:>8,.0f} msgs/s   runs: {runs}")
    print(f"after the runs: {load()}")
    print("CPU a message (median, us; ours includes rendering the issue once):")
    for label, values in cpu.items():
        print(f"  {label:<34}{statistics.median(values):>7,.0f}")
    targets = [
        ("1 connection / bare on 1", "send, 1 connection", "bare smtplib, 1", 0.9),
        ("4 connections / bare in 4 processes", "send, 4 connections", "bare smtplib, 4 proc", 0.9),
        ("4 connections / smtp-source -s 4", "send, 4 connections", "smtp-source -s 4", 0.5),
        ("DKIM / unsigned, 1 connection", "send, 1 conn, DKIM", "send, 1 connection", 0.5),
        ("DKIM / unsigned, 4 connections", "send, 4 conns, DKIM", "send, 4 connections", 0.5),
    ]
    missed = 0
    for label, ours_name, against, target in targets:
        ratio = median[ours_name] / median[against]
        ok = ratio >= target
        missed += not ok
        print(f"{label:<38}{ratio:5.2f}x  (target >= {target}x: {'ok' if ok else 'MISSED'})")
    print(
        f"for reference: smtp-source -s 4 / -s 1 "
        f"{median['smtp-source -s 4'] / median['smtp-source -s 1']:.2f}x, "
        f"bare in 4 processes / on 1 "
        f"{median['bare smtplib, 4 proc'] / median['bare smtplib, 1']:.2f}x"
    )
    if args.big:
        missed += big_run(args.big, n, max(peaks), base, port)
    print(f"at the end: {load()}")
    return missed


def big_run(big: int, n: int, small_peak_kb: float, base: Path, port: int) -> int:
    """Peak RSS of a send to `big` readers against the same send to `n`: 1 if over target."""
    figures = our_send(publication(base, big), port, 4, None)
    assert figures["sent"] == big, figures
    rate = figures["sent"] / figures["seconds"]
    growth = (figures["peak_kb"] - small_peak_kb) / 1024
    ok = growth <= RSS_GROWTH_MB
    print(f"{big:,} readers, 4 connections: {rate:,.0f} msgs/s")
    print(
        f"peak RSS: {small_peak_kb / 1024:.1f} MB for {n:,}, {figures['peak_kb'] / 1024:.1f} MB "
        f"for {big:,} ({growth:+.1f} MB; target <= +{RSS_GROWTH_MB} MB: "
        f"{'ok' if ok else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    main()
