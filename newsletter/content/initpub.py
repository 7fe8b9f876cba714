"""`newsletter init DIR`: a new publication a newcomer can send from (the library half).

What it writes: a commented newsletter.yaml, content/ with a first draft on the next free
scheduled slot, subscribers/, a .gitignore and deploy/ examples (a cron line, systemd units
for `send --due`, `inbox` and `serve`). The default templates stay in the package unless asked
for (`--templates`): a publication only holds the files it changes.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from newsletter.config import CONFIG_FILE, load_config
from newsletter.content.scaffold import plan_new_issue
from newsletter.content.templatesource import default_templates_dir
from newsletter.errors import ConfigError
from newsletter.fsutil import write_atomic

FIRST_TITLE = "Welcome to the first issue"


@dataclass(frozen=True)
class InitAnswers:
    name: str
    sender: str  # the From header, "Name <address>"
    base_url: str
    postal_address: str
    reply_to: str | None = None  # None: the From address
    timezone: str = "UTC"
    weekday: str = "tuesday"
    nth: int = 1
    time: str = "09:00"
    dkim_selector: str | None = None  # the key's PATH comes from $NEWSLETTER_DKIM_KEY
    web_url: str | None = None  # public https URL of `newsletter serve` (one-click)


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def config_text(answers: InitAnswers) -> str:
    """newsletter.yaml with a comment on every key a new publisher may want to change."""
    address = parseaddr(answers.sender)[1]
    local, _, domain = address.rpartition("@")
    reply_to = answers.reply_to or address
    base_url = answers.base_url if answers.base_url.endswith("/") else answers.base_url + "/"
    dkim = (
        f"dkim: {{selector: {_q(answers.dkim_selector)}, domain: {_q(domain)}, "
        "private_key_env: NEWSLETTER_DKIM_KEY}"
        if answers.dkim_selector
        else f"# dkim: {{selector: news2027, domain: {_q(domain)}, "
        "private_key_env: NEWSLETTER_DKIM_KEY}"
    )
    web_url = _q(answers.web_url) if answers.web_url else "null"
    return f"""\
# {answers.name}: settings for `newsletter` (https://pypi.org/project/newsletter/).
# Every key can be overridden from the environment as NEWSLETTER_<KEY>, with __ between
# levels (NEWSLETTER_DELIVERY__SMTP__PORT=2525). Secrets (SMTP/IMAP passwords, the DKIM key's
# path, the web secret) only ever come from the environment variables named here.
name: {_q(answers.name)}
tagline: ""                               # one line under the name in the archive
publisher: ""                             # footer and copyright line; empty: the name
postal_address: {_q(answers.postal_address)}   # footer: the law (CAN-SPAM) wants one
from: {_q(answers.sender)}
reply_to: {_q(reply_to)}                  # replies land here; unsubscribe mailto is local+TOKEN@
bounce_address: {_q(f"{local}-bounces@{domain}")}   # envelope sender (VERP): bounces only
base_url: {_q(base_url)}   # where the web archive is published
language: en
timezone: {_q(answers.timezone)}
test_recipients: [{_q(address)}]          # `newsletter send ISSUE --test` mails a copy here
# When issues go out: the nth weekday of each month at this local time; `send --due` from
# cron sends what is due, catching up for catch_up_days if the machine was off.
schedule: {{weekday: {answers.weekday}, nth: {answers.nth}, time: "{answers.time}",
           catch_up_days: 3}}
delivery:
  transport: file                         # file: .eml files in outbox/ to look at; smtp: real mail
  outbox: outbox
  smtp: {{host: localhost, port: 587, security: starttls, username: null,
         password_env: NEWSLETTER_SMTP_PASSWORD, connections: 4, max_per_second: 0}}
# `send` first builds the web archive into `out` and runs `publish_command` (a command line,
# no shell), so the mail's "read it on the web" link works when it arrives.
archive:
  out: build/site
  publish_command: null                   # e.g. rsync -a --delete build/site/ host:/var/www/letter/
inbox:                                    # `newsletter inbox --imap`: replies and bounces
  imap: {{host: localhost, port: 993, security: ssl, username: null,
         password_env: NEWSLETTER_IMAP_PASSWORD, folder: INBOX}}
# `newsletter serve`: one-click unsubscribe (RFC 8058, wanted by Gmail/Yahoo/Microsoft for
# bulk mail) and confirmed sign-up. The link-signing key comes from $NEWSLETTER_WEB_SECRET.
web:
  public_url: {web_url}                   # e.g. https://{domain or "example.org"}/newsletter-web/
  secret_env: NEWSLETTER_WEB_SECRET
# DKIM signing of every message (Gmail/Yahoo bulk-sender rules); the PEM key's PATH comes from
# $NEWSLETTER_DKIM_KEY, publish the public key as <selector>._domainkey.<domain>.
{dkim}
"""


def gitignore_text() -> str:
    return """\
# Written by `newsletter`: outputs and the subscriber store (people's addresses: keep private).
outbox/
build/
subscribers/*.db
subscribers/*.db-*
subscribers/.send-*
.venv/
"""


def deploy_files(root: Path, executable: str) -> dict[str, str]:
    """deploy/: a cron line and systemd units, with this machine's paths filled in."""
    service = """\
[Unit]
Description={description}
{after}
[Service]
Type={kind}
WorkingDirectory={root}
# Secrets (NEWSLETTER_SMTP_PASSWORD, NEWSLETTER_WEB_SECRET, ...): one VAR=value per line.
EnvironmentFile=-/etc/newsletter/env
ExecStart={executable} --root {root} {command}
{extra}"""
    timer = """\
[Unit]
Description={description}

[Timer]
OnCalendar={calendar}
Persistent=true

[Install]
WantedBy=timers.target
"""
    network = "After=network-online.target\nWants=network-online.target\n"
    return {
        "crontab": (
            "# `crontab -e`, then add this line: every 15 minutes, send whatever is due\n"
            "# (a no-op on other days; a crashed send resumes on the next run).\n"
            f"*/15 * * * * {executable} --root {root} send --due >> {root}/send.log 2>&1\n"
        ),
        "newsletter-send.service": service.format(
            description="Send the newsletter issue that is due",
            after=network,
            kind="oneshot",
            root=root,
            executable=executable,
            command="send --due",
            extra="",
        ),
        "newsletter-send.timer": timer.format(
            description="Send the newsletter when an issue is due", calendar="*:0/15"
        ),
        "newsletter-inbox.service": service.format(
            description="Process newsletter replies and bounces",
            after=network,
            kind="oneshot",
            root=root,
            executable=executable,
            command="inbox --imap",
            extra="",
        ),
        "newsletter-inbox.timer": timer.format(
            description="Process newsletter replies and bounces hourly", calendar="hourly"
        ),
        "newsletter-serve.service": service.format(
            description="Newsletter one-click unsubscribe and sign-up",
            after=network,
            kind="simple",
            root=root,
            executable=executable,
            command="serve",
            extra="Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n",
        ),
    }


def newsletter_executable() -> str:
    """The `newsletter` script next to this Python (a venv's bin/), else the one on PATH."""
    here = Path(sys.executable).parent / "newsletter"
    if here.exists():
        return str(here)
    return shutil.which("newsletter") or "/usr/local/bin/newsletter"


def create_publication(
    root: Path,
    answers: InitAnswers,
    now: Callable[[], dt.datetime],
    *,
    templates: bool = False,
    force: bool = False,
) -> list[Path]:
    """Write a new publication into `root`; returns the files written.

    `now` is asked after newsletter.yaml exists, so the clock can use the new time zone.
    A folder that holds anything is refused unless `force` (then our files replace theirs).
    """
    if root.exists() and not root.is_dir():
        raise ConfigError("exists and is not a folder", path=root)
    if root.is_dir() and any(root.iterdir()) and not force:
        raise ConfigError("is not empty; choose a new folder or pass --force", path=root)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        written.append(path)

    config_path = root / CONFIG_FILE
    write(config_path, config_text(answers))
    try:
        config = load_config(root)  # every answer is checked by the one validator
    except ConfigError:
        config_path.unlink()
        raise
    (root / "subscribers").mkdir(exist_ok=True)
    write(root / ".gitignore", gitignore_text())
    for name, text in deploy_files(root.resolve(), newsletter_executable()).items():
        write(root / "deploy" / name, text)
    plan = plan_new_issue(config, [], FIRST_TITLE, now())
    write(plan.path, plan.text)
    if templates:
        source = default_templates_dir()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                target = config.templates_dir / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                written.append(target)
    return written
