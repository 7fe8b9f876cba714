"""Start-up time of the command line (issue 18's "fast start").

    .venv/bin/python bench/startup.py [--repeat 9]

Prints, with the load average beside it, medians of `--repeat` fresh processes each:
- `python -c pass`: the interpreter alone, the floor;
- `newsletter --help` (target: under 150 ms);
- `newsletter send ISSUE` to the first message written (the file transport, the embedded
  default), from before the process is spawned to the moment that message's file is on disk,
  less the time spent rendering the issue (Markdown, Jinja2, premailer, and the check of the
  rendered email, imports included: `render_issue` and `check_rendered` are timed in the
  process, wrapped as the command loads their modules, so the probe changes nothing of the
  command's own start; target: under 300 ms).
Exits 1 when a target is missed. The send runs against a copy of the sample publication
with a few readers; the process ends (os._exit) right after the first message.

Every process runs from cached bytecode, as an installed package does (pip compiles it at
install): the cache is a temporary PYTHONPYCACHEPREFIX, filled by one run of each command
before the timed ones. Without it, an editable install under PYTHONDONTWRITEBYTECODE (which
some shells and CI images set) compiles every module it imports from source in every process:
`--source` measures that case (no cache, PYTHONDONTWRITEBYTECODE=1).
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLUG = "2026-07-your-first-customer-sits-next-to-you"
HELP_TARGET = 0.150
SEND_TARGET = 0.300

# Runs in the measured process: times rendering, stops at the first message written.
PROBE = """
import json, os, sys, threading, time
started = float(os.environ["BENCH_STARTED"])
spent = [0.0]

def timed(module, name):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began
    setattr(module, name, wrapper)

# Wrapped as each module loads, where the command loads it: importing them here, before the
# command, would change what the command's own start does (newsletter.startup).
WRAP = {
    "newsletter.content.render": "render_issue",
    "newsletter.content.checks": "check_rendered",
    "newsletter.mail.transport": None,
}

class WrapOnLoad:
    def find_spec(self, name, path, target=None):
        if name not in WRAP:
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            if WRAP[name]:
                timed(module, WRAP[name])
            else:
                module.FileTransport.send = first_of(module.FileTransport.send)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, WrapOnLoad())

once = threading.Lock()  # the file transport writes on several threads: one report

def first_of(file_send):
    def first(self, *args, **kwargs):
        reply = file_send(self, *args, **kwargs)
        if once.acquire(blocking=False):
            total = time.time() - started
            line = json.dumps({"first": total, "rendering": spent[0]}) + "\\n"
            os.write(2, line.encode())
            os._exit(0)
        return reply
    return first

from newsletter.cli import main
main(sys.argv[1:])
"""


def newsletter_command() -> list[str]:
    return [str(Path(sys.executable).parent / "newsletter")]


def bytecode_env(base: Path, *, source: bool) -> dict[str, str]:
    """The measured processes' environment: a bytecode cache in `base`, or (`source`) none."""
    env = dict(os.environ)
    if source:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    return env


def wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def publication(base: Path, env: dict[str, str]) -> Path:
    root = base / "pub"
    root.mkdir()
    for part in ("newsletter.yaml", "content", "templates"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part)
        else:
            shutil.copy2(source, root / part)
    csv = base / "readers.csv"
    csv.write_text(
        "email,first_name\n" + "".join(f"reader{n}@example.org,Reader\n" for n in range(20)),
        encoding="utf-8",
    )
    subprocess.run(
        [*newsletter_command(), "--root", str(root), "subscribers", "import", str(csv)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    return root


def first_message(root: Path, attempt: int, env: dict[str, str]) -> dict[str, float]:
    copy = root.parent / f"send-{attempt}"
    shutil.copytree(root, copy)
    env = {**env, "NEWSLETTER_DELIVERY__TRANSPORT": "file"}
    env["BENCH_STARTED"] = repr(time.time())
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "--root", str(copy), "send", SLUG, "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    shutil.rmtree(copy)
    if result.returncode != 0:
        sys.exit(f"the send failed:\n{result.stdout}{result.stderr}")
    figures: dict[str, float] = json.loads(result.stderr.strip().splitlines()[-1])
    return figures


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument(
        "--source", action="store_true", help="no bytecode cache: every module compiled each run"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = bytecode_env(base, source=args.source)
    try:
        root = publication(base, env)
        wall([*newsletter_command(), "--help"], env)  # fills the bytecode cache (unless --source)
        first_message(root, -1, env)
        print("bytecode: " + ("none (--source)" if args.source else "cached, as installed"))
        print(f"at the start: {load()}")
        bare, helps, sends, renders = [], [], [], []
        for attempt in range(args.repeat):
            bare.append(wall([sys.executable, "-c", "pass"], env))
            helps.append(wall([*newsletter_command(), "--help"], env))
            figures = first_message(root, attempt, env)
            sends.append(figures["first"] - figures["rendering"])
            renders.append(figures["rendering"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ms = {
        "python -c pass": statistics.median(bare),
        "newsletter --help": statistics.median(helps),
        "send: rendering": statistics.median(renders),
        "send: first message, less rendering": statistics.median(sends),
    }
    for name, seconds in ms.items():
        print(f"{name:<40}{seconds * 1000:7.0f} ms")
    print(f"after the runs: {load()}")
    missed = 0
    for name, target in (
        ("newsletter --help", HELP_TARGET),
        ("send: first message, less rendering", SEND_TARGET),
    ):
        ok = ms[name] < target
        missed += not ok
        print(f"{name}: target < {target * 1000:.0f} ms: {'ok' if ok else 'MISSED'}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
