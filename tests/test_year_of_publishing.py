"""A year of publishing in one test: a fake clock walks 14 months from a first Tuesday.

The editor adds issues (drafts, one made ready late, one backdated and sent by hand, one
renamed before it goes out); cron runs `send --due` every 10 minutes around each send day and
once a day otherwise, through the fault-injecting SMTP server; readers join and leave by reply
in between. Nothing here reads the real clock: every command runs at the walk's moment.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import lxml.html
from conftest import run_cli

from newsletter.cadence import is_scheduled_day
from newsletter.config import load_config
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA

LONDON = ZoneInfo("Europe/London")
START = dt.date(2031, 1, 7)  # a first Tuesday
MONTHS = 14
SUBJECT = re.compile(r"^Leader Notes #(\d+): (.+)$")


class Publication:
    """The editor's side: issue files in content/, and `newsletter` run at a moment."""

    def __init__(self, root: Path, env: dict[str, str | None]) -> None:
        self.root = root
        self.env = env
        for path in (root / "content").glob("*.md"):
            path.unlink()  # the walk owns every date: none of the sample's

    def write(self, slug: str, title: str, date: dt.date, status: str = "draft") -> Path:
        path = self.root / "content" / f"{slug}.md"
        path.write_text(
            f"---\ntitle: {title}\ndate: {date}\nstatus: {status}\nsummary: About {title}.\n"
            f"---\nNotes on {title.lower()}.\n",
            encoding="utf-8",
        )
        return path

    def ready(self, slug: str) -> None:
        path = self.root / "content" / f"{slug}.md"
        path.write_text(
            path.read_text(encoding="utf-8").replace("status: draft", "status: ready"),
            encoding="utf-8",
        )

    def run(self, moment: dt.datetime, *args: str) -> tuple[int, str]:
        result = run_cli(self.root, *args, env=self.env, now=moment.isoformat())
        assert "Traceback" not in result.stderr, result.stderr
        return result.code, result.stdout + result.stderr


def first_tuesday(year: int, month: int) -> dt.date:
    day = dt.date(year, month, 1)
    return day + dt.timedelta(days=(1 - day.weekday()) % 7)


def reply_to_leave(reader: str, token: str, original: EmailMessage) -> bytes:
    """What a reader's mail client sends when they answer the issue asking to leave."""
    message = EmailMessage()
    message["From"] = reader
    message["To"] = f"news+{token}@example.com"
    message["Subject"] = f"Re: {original['Subject']}"
    message["Message-ID"] = f"<leave.{token}@reader.example>"
    message["In-Reply-To"] = str(original["Message-ID"])
    message.set_content("Please unsubscribe me, thank you for the notes.\n")
    return message.as_bytes(policy=email.policy.SMTP)


def test_a_year_of_publishing(publication: Path, tmp_path: Path) -> None:
    readers = [f"reader{n}@example.org" for n in range(6)]
    config = load_config(publication, environ={})
    with open_store(config) as store:
        for address in readers:
            store.subscribers.add(
                address, address.split("@")[0].title(), source="test", consent="test"
            )
    faults = Faults(rcpt_replies={"reader2@example.org": ["451 4.2.0 mailbox busy, try later"]})
    with FaultyMTA(faults) as mta:
        env: dict[str, str | None] = {
            "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
            "NEWSLETTER_DELIVERY__SMTP__HOST": mta.host,
            "NEWSLETTER_DELIVERY__SMTP__PORT": str(mta.port),
            "NEWSLETTER_DELIVERY__SMTP__CONNECTIONS": "1",
            "NEWSLETTER_DELIVERY__RETRY_DELAY": "0",  # the next cron run retries a deferral
            "NEWSLETTER_DELIVERY__RETRY_WINDOW": "0",
        }
        pub = Publication(publication, env)
        months = [first_tuesday(START.year + (START.month - 1 + m) // 12,
                                (START.month - 1 + m) % 12 + 1) for m in range(MONTHS)]  # fmt: skip
        # The year's plan, as the editor writes it month by month (slug -> send day).
        pub.write("jan", "Starting Out", months[0], "ready")
        pub.write("feb", "Second Steps", months[1])  # a draft until its morning
        active = set(readers)
        expected: dict[str, set[str]] = {}  # issue title -> readers active when it went out
        numbers: dict[str, int] = {}  # title -> the number it was sent with
        seen = 0
        notices: list[str] = []
        leavers = {months[1] + dt.timedelta(days=2): "reader1@example.org",
                   months[5] + dt.timedelta(days=9): "reader3@example.org"}  # fmt: skip
        joiners = {months[3] + dt.timedelta(days=5): "late-joiner@example.org"}

        day = START - dt.timedelta(days=1)
        end = months[-1] + dt.timedelta(days=10)
        while day <= end:
            # -- the editor's and readers' day ----------------------------------------------
            if day == months[1] - dt.timedelta(days=1):
                pub.write("mar", "Third Time", months[2])  # written early, kept a draft
                pub.write("apr-working-title", "Working Title", months[3])
            if day == months[1]:
                pub.ready("feb")  # at 08:00, before the send time
            if day == months[2] + dt.timedelta(days=1):
                pub.ready("mar")  # a day late: inside the catch-up window
            if day == months[3] - dt.timedelta(days=3):  # renamed before it goes out
                old = publication / "content" / "apr-working-title.md"
                text = old.read_text(encoding="utf-8").replace("Working Title", "Final Title")
                (publication / "content" / "apr-final.md").write_text(text, encoding="utf-8")
                old.unlink()
                pub.ready("apr-final")
            if day == months[4] + dt.timedelta(days=6):
                # Backdated (before the April issue), and an older draft that never goes out.
                pub.write("special", "Special Edition", months[3] - dt.timedelta(days=5), "ready")
                pub.write("old-draft", "Old Draft", months[0] + dt.timedelta(days=3))
                code, out = pub.run(dt.datetime.combine(day, dt.time(14), LONDON),
                                    "send", "special")  # fmt: skip
                assert code == 0, out
            for month in range(4, MONTHS - 1):
                if day == months[month] - dt.timedelta(days=7):
                    pub.write(f"m{month}", f"Month {month}", months[month], "ready")
            if day == months[MONTHS - 1] - dt.timedelta(days=7):
                pub.write("last", "Never Finished", months[MONTHS - 1])  # stays a draft
            if day in joiners:
                with open_store(config) as store:
                    store.subscribers.add(joiners[day], None, source="test", consent="test")
                active.add(joiners[day])
            if day in leavers:
                leaver = leavers[day]
                with open_store(config) as store:
                    subscriber = store.subscribers.get_by_email(leaver)
                assert subscriber is not None
                last = [m for m in mta.messages if leaver in m.rcpt_tos][-1].parse()
                box = tmp_path / f"replies-{day}.mbox"
                envelope = b"From " + leaver.encode() + b" Thu Jan  1 00:00:00 2031\n"
                box.write_bytes(envelope + reply_to_leave(leaver, subscriber.token, last) + b"\n")
                code, out = pub.run(dt.datetime.combine(day, dt.time(18), LONDON),
                                    "inbox", "--mbox", str(box))  # fmt: skip
                active.discard(leaver)
                with open_store(config) as store:
                    gone = store.subscribers.get_by_email(leaver)
                assert gone is not None and gone.status == "unsubscribed", out

            # -- cron ------------------------------------------------------------------------
            if is_scheduled_day(config, day):
                moments = [dt.datetime.combine(day, dt.time(8), LONDON)
                           + dt.timedelta(minutes=10 * n) for n in range(19)]  # fmt: skip
            else:
                moments = [dt.datetime.combine(day, dt.time(12), LONDON)]
            for moment in moments:
                pub.run(moment, "send", "--due")
                fresh = mta.messages[seen:]
                seen = len(mta.messages)
                for received in fresh:
                    match = SUBJECT.match(str(received.parse()["Subject"]))
                    if match is None:  # an editor notice or an unsubscribe confirmation
                        notices.append(str(received.parse()["Subject"]))
                        continue
                    title = match[2]
                    if title not in expected:  # the run that started this send
                        expected[title] = set(active)
                        numbers[title] = int(match[1])
                    assert numbers[title] == int(match[1])
            day += dt.timedelta(days=1)

        # -- a year later -------------------------------------------------------------------
        got: dict[str, list[str]] = {}
        for received in mta.messages:
            if match := SUBJECT.match(str(received.parse()["Subject"])):
                got.setdefault(match[2], []).extend(received.rcpt_tos)
        # The backdated special went by hand, to everyone active that afternoon.
        monthly = {f"Month {m}" for m in range(4, MONTHS - 1)}
        ready_titles = {"Starting Out", "Second Steps", "Third Time", "Final Title",
                        "Special Edition", *monthly}  # fmt: skip
        assert set(got) == ready_titles  # no draft went out, every ready issue did
        for title, recipients in got.items():
            assert sorted(recipients) == sorted(expected[title]), title  # each reader once
        assert "reader1@example.org" not in got["Third Time"]
        assert "late-joiner@example.org" in got["Special Edition"]
        assert "late-joiner@example.org" not in got["Third Time"]
        # Numbers: in order of sending, the special taking the next free one after April's.
        assert [numbers[t] for t in ("Starting Out", "Second Steps", "Third Time",
                                     "Final Title", "Month 4", "Special Edition")] == [
            1, 2, 3, 4, 5, 6]  # fmt: skip
        # The editor was told once when March had only a draft on its day, and at the end.
        told = [n for n in notices if "No issue ready" in n]
        assert len(told) == 2, notices

        final = dt.datetime.combine(end, dt.time(12), LONDON)
        code, out = pub.run(final, "archive")
        assert code == 0, out
    index = lxml.html.parse(str(publication / "build" / "archive" / "index.html")).getroot()
    listed = [a.text_content() for a in index.xpath('//*[@class="issue-title"]/a')]
    assert listed == sorted(ready_titles, key=lambda t: _date(publication, t), reverse=True)
    for title, number in numbers.items():  # every number is as it was when sent
        slug = _slug(publication, title)
        page = (publication / "build" / "archive" / slug / "index.html").read_text()
        assert f"No.&nbsp;{number}" in page, title


def _slug(root: Path, title: str) -> str:
    for path in (root / "content").glob("*.md"):
        if f"title: {title}\n" in path.read_text(encoding="utf-8"):
            return path.stem
    raise AssertionError(title)


def _date(root: Path, title: str) -> str:
    text = (root / "content" / f"{_slug(root, title)}.md").read_text(encoding="utf-8")
    found = re.search(r"^date: (\S+)$", text, re.M)
    assert found
    return found[1]
