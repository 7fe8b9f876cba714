"""`send` builds and publishes the web version before the first message (issue 15, part 6)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from conftest import run_cli

from newsletter.config import load_config
from newsletter.schedule.run import send_due

SLUG = "2026-10-listening-rounds"
SEND_AT = "2026-10-06T09:00"


def configure(root: Path, publish: str | None) -> None:
    path = root / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("  out: null", "  out: site", 1)
    text = text.replace("  publish_command: null", f"  publish_command: {publish or 'null'}", 1)
    path.write_text(text, encoding="utf-8")
    run_cli(root, "subscribers", "add", "reader@example.org")


def test_send_due_builds_and_publishes_the_archive_first(publication: Path) -> None:
    script = publication / "publish.py"
    # Records what was on the site when it ran, proving the order: archive, then mail.
    script.write_text(
        "import pathlib, sys\n"
        "root = pathlib.Path.cwd()\n"
        "pages = sorted(p.parent.name for p in (root / 'site').glob('*/index.html'))\n"
        "mails = list((root / 'outbox').rglob('*.eml')) if (root / 'outbox').exists() else []\n"
        "(root / 'published.txt').write_text(' '.join(pages) + f' mails={len(mails)}')\n"
    )
    configure(publication, f"'{sys.executable} publish.py'")
    code, out, err = run_cli(publication, "send", "--due", now=SEND_AT)
    assert code == 0, out + err
    assert (publication / "site" / SLUG / "index.html").exists()
    published = (publication / "published.txt").read_text()
    assert SLUG in published.split() and published.endswith("mails=0")
    assert list((publication / "outbox").rglob("*.eml"))  # then the mail went out
    assert out.index("archive: published") < out.index(f"sending {SLUG}")


def test_a_failed_publish_stops_the_send(publication: Path) -> None:
    (publication / "fail.py").write_text("import sys\nsys.exit('rsync: host down')\n")
    configure(publication, f"'{sys.executable} fail.py'")
    code, out, err = run_cli(publication, "send", SLUG, "--yes", now=SEND_AT)
    assert code == 2, out + err
    assert err.startswith("error: archive.publish_command: publishing the archive failed (exit 1")
    assert "rsync: host down" in err and "nothing was sent" in err
    assert not list(publication.glob("outbox/**/*.eml"))
    code, out, err = run_cli(publication, "status")
    assert "no issue has been sent yet" in out


def test_an_issue_the_send_refuses_never_reaches_the_archive(publication: Path) -> None:
    configure(publication, None)
    path = publication / "content" / f"{SLUG}.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nTODO: the last paragraph\n")
    code, out, err = run_cli(publication, "send", SLUG, "--yes", now="2026-10-01T12:00")
    assert code == 2 and "`newsletter check` finds" in err, out + err
    assert not (publication / "site" / SLUG).exists()  # dated ahead and unsent: not listed
    assert not list(publication.glob("outbox/**/*.eml"))


def test_the_scheduler_publishes_the_archive_before_the_first_message_too(
    publication: Path,
) -> None:
    """`newsletter schedule` sends through schedule.run.send_due, as `send --due` does."""
    configure(publication, None)
    config = load_config(publication)
    now = dt.datetime.fromisoformat(SEND_AT).replace(tzinfo=config.tz)
    page = publication / "site" / SLUG / "index.html"
    published_first: list[bool] = []
    run = send_due(config, now, on_start=lambda issue: published_first.append(page.exists()))
    assert run.due.kind == "due" and run.outcome is not None
    assert published_first == [True]
    assert run.outcome.counts["sent"] == 1
