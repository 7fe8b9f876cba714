"""`newsletter inbox --imap` against a real Dovecot on 127.0.0.1, started without systemd."""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import missing, run_cli
from test_inbox import assert_confirmations, assert_manifest_effects, corpus_files, manifest

PASSWORD = "imap-test-secret"


class Dovecot:
    def __init__(self, home: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.home = home
        self.port = port
        self.proc = proc
        self.maildir = home / "mail" / "newsletter" / "Maildir"

    def deliver(self, data: bytes, name: str) -> None:
        """Write into tmp/ and rename into new/, as an MDA does."""
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(data)
        shutil.chown(tmp, "nobody", "nogroup")
        tmp.rename(self.maildir / "new" / name)

    def env(self, **extra: str | None) -> dict[str, str | None]:
        return {
            "NEWSLETTER_INBOX__IMAP__HOST": "127.0.0.1",
            "NEWSLETTER_INBOX__IMAP__PORT": str(self.port),
            "NEWSLETTER_INBOX__IMAP__SECURITY": "none",
            "NEWSLETTER_INBOX__IMAP__USERNAME": "newsletter",
            "NEWSLETTER_IMAP_PASSWORD": PASSWORD,
            **extra,
        }

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login("newsletter", PASSWORD)
        return conn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = """base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if binary is None:
        missing("Dovecot is not installed (Debian package dovecot-imapd; .ci/run installs it)")
    if os.geteuid() != 0:
        missing("this Dovecot fixture runs as root (it hands the Maildir to user nobody)")
    # Not under pytest's tmp_path: that is private to root and Dovecot's user cannot enter it.
    home = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    home.chmod(0o755)
    port = _free_port()
    (home / "users").write_text(f"newsletter:{{PLAIN}}{PASSWORD}\n")
    (home / "dovecot.conf").write_text(CONFIG.format(d=home, port=port))
    for sub in ("cur", "new", "tmp"):
        (home / "mail" / "newsletter" / "Maildir" / sub).mkdir(parents=True)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(home / "mail")], check=True)
    proc = subprocess.Popen(
        [binary, "-F", "-c", str(home / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                log = (
                    (home / "dovecot.log").read_text(errors="replace")[-500:]
                    if (home / "dovecot.log").exists()
                    else ""
                )
                missing(f"Dovecot could not start here: {err.strip()} {log.strip()}")
            time.sleep(0.1)
        yield Dovecot(home, port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def readers(publication: Path) -> Path:
    from test_inbox import subscribe_corpus_readers

    return subscribe_corpus_readers(publication)


def test_corpus_over_imap_then_a_rerun_fetches_nothing(dovecot: Dovecot, readers: Path) -> None:
    for index, file in enumerate(corpus_files()):
        dovecot.deliver(file.read_bytes(), f"{1759824000 + index}.M{index}P1.test")
    first = run_cli(readers, "inbox", "--imap", env=dovecot.env())
    assert first.code == 0, first.stderr
    assert f"{len(manifest())} message(s)" in first.stdout
    assert_manifest_effects(readers)
    assert_confirmations(readers)

    conn = dovecot.client()
    conn.select("INBOX")
    typ, data = conn.search(None, "KEYWORD", "$NewsletterProcessed")
    assert typ == "OK" and len(data[0].split()) == len(manifest())
    typ, data = conn.search(None, "UNSEEN")
    assert data[0] == b""  # processed messages are marked read, nothing else was
    conn.logout()

    again = run_cli(readers, "inbox", "--imap", env=dovecot.env())
    assert again.code == 0
    assert again.stdout.startswith("0 message(s)")
    assert_confirmations(readers)


def test_new_mail_only_and_processed_folder(dovecot: Dovecot, readers: Path) -> None:
    conn = dovecot.client()
    conn.create("Processed")
    conn.logout()
    files = corpus_files()
    dovecot.deliver(files[0].read_bytes(), "1759824000.M1P1.test")
    env = dovecot.env(NEWSLETTER_INBOX__IMAP__PROCESSED_FOLDER="Processed")
    assert run_cli(readers, "inbox", "--imap", env=env).code == 0
    dovecot.deliver(files[1].read_bytes(), "1759824001.M2P1.test")
    second = run_cli(readers, "inbox", "--imap", env=env)
    assert second.stdout.startswith("1 message(s)")

    conn = dovecot.client()
    _, data = conn.select("INBOX")
    assert int(data[0]) == 0
    _, data = conn.select("Processed")
    assert int(data[0]) == 2
    _, fetched = conn.fetch("1", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert b"ann.k2Lp" in fetched[0][1]
    conn.logout()


def test_wrong_password_is_a_one_line_error(dovecot: Dovecot, readers: Path) -> None:
    result = run_cli(readers, "inbox", "--imap", env=dovecot.env(NEWSLETTER_IMAP_PASSWORD="no"))
    assert result.code == 2
    assert result.stderr.startswith("error: inbox.imap: IMAP 127.0.0.1:")
    assert "Traceback" not in result.stderr


def test_an_unparseable_message_moves_to_the_quarantine_folder(
    dovecot: Dovecot, readers: Path
) -> None:
    """Issue 13: ~1,000 nested multiparts crashed the parser on every run, so the mail
    behind it was never applied. Now it is quarantined and the rest processed."""
    from test_inbox_hostile import nested

    dovecot.deliver(nested(1000), "1759824000.M1P1.test")
    dovecot.deliver(corpus_files()[0].read_bytes(), "1759824001.M2P1.test")
    first = run_cli(readers, "inbox", "--imap", env=dovecot.env())
    assert first.code == 1 and "could not be read" in first.stderr
    assert "quarantined 1" in first.stdout and "unsubscribed 1" in first.stdout
    conn = dovecot.client()
    _, data = conn.select("Quarantine")
    assert int(data[0]) == 1
    _, data = conn.select("INBOX")
    assert int(data[0]) == 1  # the processed one stays, flagged
    conn.logout()
    again = run_cli(readers, "inbox", "--imap", env=dovecot.env())
    assert again.code == 0 and again.stdout.startswith("0 message(s)")
