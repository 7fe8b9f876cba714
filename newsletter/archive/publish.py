"""The web version is there when the mail arrives.

Every message links its issue's archive page ("Read it on the web"), so `send` (and
`send --due`, which runs it) first builds the archive with the issue being sent into
`archive.out` and runs `archive.publish_command` (an rsync, say), before the first message.
A failed build or publish stops the send: a reader must not get a link to a missing page.
"""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from newsletter.archive.build import build_archive, default_out_dir
from newsletter.content.issues import Issue
from newsletter.errors import DeliveryError
from newsletter.settings import Config
from newsletter.store.store import Store

PUBLISH_TIMEOUT = 600  # seconds: an rsync of a whole archive over a slow line


def archive_out(config: Config) -> Path | None:
    return default_out_dir(config) if config.archive.out else None


def publish_before_send(
    config: Config,
    issue: Issue,
    issues: Sequence[Issue],
    store: Store,
    today: dt.date,
    say: Callable[[str], None],
) -> None:
    """Build the archive (with `issue`) into archive.out and publish it; no-op when unset.
    The issue is listed as sent (even before its date, `send --yes`): it is about to be."""
    out = archive_out(config)
    if out is None:
        return
    sent = {*store.sends.sent_slugs(), issue.slug}
    report = build_archive(config, issues, out, today=today, sent=sent, numbers=store.numbers)
    say(f"archive: {report.summary()}")
    command = config.archive.publish_command
    if not command:
        return
    # A command and its arguments, run without a shell, from the publication's folder.
    try:
        result = subprocess.run(
            shlex.split(command),
            cwd=config.root,
            capture_output=True,
            text=True,
            timeout=PUBLISH_TIMEOUT,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise DeliveryError(
            f"publishing the archive failed ({exc}); nothing was sent",
            field="archive.publish_command",
        ) from None
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise DeliveryError(
            f"publishing the archive failed (exit {result.returncode}: {last[0][:200]}); "
            "nothing was sent",
            field="archive.publish_command",
        )
    say(f"archive: published ({command})")
