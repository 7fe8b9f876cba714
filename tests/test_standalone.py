"""The built wheel, installed into a fresh venv outside the repository, runs a publication from
`init` to a sent issue and its archive, with the README's "start your own" commands verbatim.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

DATA = Path(__file__).parent / "data"
INIT_AT = "2026-11-20T12:00"  # the first free slot is then Tuesday 2026-12-01
SEND_AT = "2026-12-01T09:05"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Start your own newsletter", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "README: no command block under 'Start your own newsletter'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.real_clock  # pip and the build backend run here; not under a faked clock
# A hang guard, not a measure: a wheel build and install of every dependency share the CPU with
# the other pytest-xdist worker (Chromium, often) and anything else on the machine.
@pytest.mark.timeout(600)
def test_wheel_in_a_fresh_venv_runs_the_readme(tmp_path: Path) -> None:
    wheels = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        cwd=tmp_path, env=dict(os.environ))  # fmt: skip
    [wheel] = wheels.glob("newsletter-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=dict(os.environ))
    home = tmp_path / "home"  # outside the repository: nothing there can be found by accident
    home.mkdir()
    shutil.copy(wheel, home / wheel.name)
    shutil.copy(DATA / "mailchimp_subscribed.csv", home / "members_export.csv")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "PYTHON"))},
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "NEWSLETTER_NOW": INIT_AT,
    }
    commands = readme_commands()
    assert len(commands) == 5 and commands[0].startswith("pip install newsletter")
    # The first line installs from PyPI; its comment names the other way, used here.
    # --no-compile: byte-compiling every dependency up front is most of pip's time here; Python
    # compiles what `newsletter` imports when it runs.
    run(["pip", "install", "-q", "--no-compile", wheel.name], cwd=home, env=env, timeout=180)
    for line in commands[1:4]:  # init, import, new: verbatim
        run(["sh", "-c", line], cwd=home, env=env)
    root = home / "my-letter"
    newsletter = str(venv / "bin" / "newsletter")
    assert Path(shutil.which("newsletter", path=env["PATH"]) or "") == Path(newsletter)
    for name in ("mailchimp_unsubscribed.csv", "mailchimp_cleaned.csv"):
        run([newsletter, "--root", str(root), "subscribers", "import", str(DATA / name)],
            cwd=home, env=env)  # fmt: skip
    listed = run([newsletter, "--root", str(root), "subscribers", "list"], cwd=home, env=env)
    assert sorted(listed.splitlines()) == [
        "ada@example.org\tactive\tAda",
        "alan@example.org\tunsubscribed\tAlan",
        "gone@example.org\tbounced\tOld",
        "grace@example.org\tactive\tGrace",
    ]
    drafts = sorted((root / "content").glob("*.md"))
    assert [d.name for d in drafts] == [
        "2026-12-welcome-to-the-first-issue.md",
        "2027-01-our-first-issue.md",
    ]
    first = drafts[0]
    first.write_text(
        '---\ntitle: "Welcome to the first issue"\ndate: 2026-12-01\n'
        "summary: What this letter is for and how often it comes.\ntags: [news]\n"
        "status: ready\n---\n\nHello, and thank you for reading.\n\n## What comes next\n\n"
        "One letter on the first Tuesday of every month.\n",
        encoding="utf-8",
    )
    out = run([newsletter, "--root", str(root), "check"], cwd=home, env=env)
    assert "0 error(s)" in out
    env["NEWSLETTER_NOW"] = SEND_AT
    run(["sh", "-c", commands[4]], cwd=home, env=env)  # send --due, verbatim
    sent = sorted((root / "outbox").rglob("*.eml"))
    assert len(sent) == 2  # Ada and Grace; Alan unsubscribed, the cleaned address bounced
    mail = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sent)
    assert "alan@example.org" not in mail and "gone@example.org" not in mail
    site = home / "site"
    run([newsletter, "--root", str(root), "archive", "--out", str(site)], cwd=home, env=env)
    page = site / "2026-12-welcome-to-the-first-issue" / "index.html"
    pages = [p for p in site.rglob("index.html") if "welcome-to-the-first-issue" in str(p)]
    assert page.exists() or pages, sorted(str(p) for p in site.rglob("*"))[:30]
    assert "Hello, and thank you for reading." in (page if page.exists() else pages[0]).read_text()
    assert shlex.split(commands[1])[0] == "newsletter"
