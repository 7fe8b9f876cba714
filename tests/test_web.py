"""newsletter serve: real HTTP requests to waitress on 127.0.0.1, mail to a real aiosmtpd."""

from __future__ import annotations

import email
import http.client
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from conftest import SAMPLE_TODAY

from newsletter.config import load_config
from newsletter.content.issues import load_issues
from newsletter.content.render import render_issue
from newsletter.links import unsubscribe_web_url
from newsletter.mail.message import IssueMessage
from newsletter.settings import Config, DeliveryConfig, SmtpConfig, WebConfig
from newsletter.store.store import Store, is_server, open_store
from newsletter.testing.mta import FaultyMTA
from newsletter.web.app import WebApp

# Every test here runs on SQLite and on PostgreSQL (conftest.store_url).
pytestmark = pytest.mark.usefixtures("store_url")

SECRET = b"test-secret-" + b"x" * 32
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


class Clock:
    """The app's clock: tests move it forward to expire links."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Site:
    config: Config
    store: Store
    app: WebApp
    mta: FaultyMTA
    clock: Clock
    url: str

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = FORM,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        req = urllib.request.Request(self.url + path.lstrip("/"), data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, dict(resp.headers.items()), resp.read().decode())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers.items()), err.read().decode())

    def post(self, path: str, **fields: str) -> Reply:
        return self.request("POST", path, urllib.parse.urlencode(fields).encode())

    def mails(self) -> list[EmailMessage]:
        self.app.mail.join()
        with self.mta.lock:
            received = list(self.mta.messages)
        return [parse(m.data) for m in received]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_site(
    publication: Path,
    tmp_path: Path,
    *,
    port: int | None = None,
    archive: Path | None = None,
    **web: object,
) -> Iterator[Site]:
    from newsletter.cli.web import ServerThread

    port = port or free_port()
    if archive is None:
        archive = tmp_path / "archive"
        (archive / "2026-01-notes").mkdir(parents=True)
        (archive / "index.html").write_text("<h1>Archive home</h1>")
        (archive / "2026-01-notes" / "index.html").write_text("<h1>January</h1>")
        (archive / "style.css").write_text("body { color: red }")
        (tmp_path / "secret.txt").write_text("not for the web")
    with FaultyMTA() as mta:
        base = load_config(publication)
        config = replace(
            base,
            web=replace(WebConfig(public_url=f"http://127.0.0.1:{port}/"), **web),  # type: ignore[arg-type]
            delivery=DeliveryConfig(
                transport="smtp", smtp=SmtpConfig(host=mta.host, port=mta.port, timeout=10)
            ),
        )
        clock = Clock()
        store = open_store(config)
        app = WebApp(
            config,
            store.subscribers,
            store.signups,
            secret=SECRET,
            archive_dir=archive,
            clock=clock,
            # as `newsletter serve` does: a server store is shared by several processes
            rate_limits=store.rate_limits if is_server(config) else None,
        )
        server = ServerThread(app, port=port).start()
        try:
            yield Site(config, store, app, mta, clock, server.url)
        finally:
            server.stop()
            app.close()
            store.close()


@pytest.fixture
def site(publication: Path, tmp_path: Path) -> Iterator[Site]:
    yield from make_site(publication, tmp_path)


def reader(site: Site, address: str = "ada@example.org") -> str:
    result = site.store.subscribers.add(address, "Ada", source="test", consent="test fixture")
    assert result.subscriber is not None
    return result.subscriber.token


def status(site: Site, address: str = "ada@example.org") -> str:
    subscriber = site.store.subscribers.get_by_email(address)
    assert subscriber is not None
    return subscriber.status


# -- unsubscribe ------------------------------------------------------------------------


def test_one_click_post_unsubscribes_at_once_and_is_idempotent(site: Site) -> None:
    token = reader(site)
    first = site.request("POST", f"/unsubscribe/{token}", ONE_CLICK)
    assert first.status == 200
    assert status(site) == "unsubscribed"
    again = site.request("POST", f"/unsubscribe/{token}", ONE_CLICK)
    assert again.status == 200
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None
    kinds = [
        (kind, source, detail) for _, kind, source, detail in site.store.events.events(subscriber)
    ]
    assert kinds.count(("unsubscribed", "link", "one-click (RFC 8058)")) == 1
    assert site.mails() == []


def test_one_click_as_multipart_form_data(site: Site) -> None:
    token = reader(site)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--XyZ--\r\n"
    )
    reply = site.request("POST", f"/unsubscribe/{token}", body, "multipart/form-data; boundary=XyZ")
    assert reply.status == 200
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None and subscriber.status == "unsubscribed"
    assert site.store.events.events(subscriber)[-1][3] == "one-click (RFC 8058)"


def test_get_shows_a_button_and_changes_nothing(site: Site) -> None:
    token = reader(site)
    for method in ("GET", "HEAD", "GET"):
        reply = site.request(method, f"/unsubscribe/{token}")
        assert reply.status == 200
    page = site.request("GET", f"/unsubscribe/{token}").body
    assert re.search(r'<form method="post" action="">', page)
    assert page.count("<button") == 1
    assert "a•••@example.org" in page and "ada@example.org" not in page
    assert status(site) == "active"
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None
    assert [kind for _, kind, _, _ in site.store.events.events(subscriber)] == ["subscribed"]
    # The page's button is an ordinary form post: it unsubscribes too.
    assert site.post(f"/unsubscribe/{token}", confirm="yes").status == 200
    assert status(site) == "unsubscribed"


def test_the_issue_header_url_is_the_one_that_unsubscribes(site: Site) -> None:
    token = reader(site)
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None
    skeleton = IssueMessage(
        site.config, slug="2026-01-notes", subject="January", date=datetime(2026, 1, 6, tzinfo=UTC)
    )
    message = parse(skeleton.render(subscriber, html="<p>Hi</p>", text="Hi\n"))
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    urls = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    assert urls[0].startswith("mailto:")
    assert urls[1] == unsubscribe_web_url(site.config, token) == f"{site.url}unsubscribe/{token}"
    with urllib.request.urlopen(
        urllib.request.Request(urls[1], data=ONE_CLICK, method="POST"), timeout=30
    ) as resp:
        assert resp.status == 200
    assert status(site) == "unsubscribed"
    # The footer links the web page too, not the mailto.
    issues = load_issues(site.config, SAMPLE_TODAY)
    rendered = render_issue(site.config, issues[0], issues)
    assert f'href="{urls[1]}"' in rendered.personalise(subscriber).html


def test_unknown_and_malformed_tokens_get_the_same_404(site: Site) -> None:
    token = reader(site)
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    replies = [
        site.request("GET", f"/unsubscribe/{forged}"),
        site.request("POST", f"/unsubscribe/{forged}", ONE_CLICK),
        site.request("GET", "/unsubscribe/short"),
        site.request("POST", "/unsubscribe/%3Cscript%3E", ONE_CLICK),
        site.request("GET", "/unsubscribe/" + "z" * 200),
        site.request("GET", f"/confirm/{token}"),
        site.request("POST", "/confirm/not-a-token!", b"confirm=yes"),
        site.request("POST", f"/unsubscribe/{forged}/undo", b"proof=1.abc"),
    ]
    assert {r.status for r in replies} == {404}
    assert len({r.body for r in replies}) == 1
    assert status(site) == "active"


def test_undo_reactivates_only_a_fresh_link_unsubscribe(site: Site) -> None:
    token = reader(site)
    page = site.request("POST", f"/unsubscribe/{token}", ONE_CLICK).body
    action = re.search(r'<form method="post" action="([^"]+)">', page)
    proof = re.search(r'name="proof" value="([^"]+)"', page)
    assert action and proof and action.group(1) == f"{token}/undo"
    forged = proof.group(1)[:-1] + ("0" if proof.group(1)[-1] != "0" else "1")
    assert site.post(f"/unsubscribe/{token}/undo", proof=forged).status == 409
    assert site.post(f"/unsubscribe/{token}/undo").status == 409
    assert status(site) == "unsubscribed"
    done = site.post(f"/unsubscribe/{token}/undo", proof=proof.group(1))
    assert (done.status, "Welcome back" in done.body) == (200, True)
    assert status(site) == "active"
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None
    assert site.store.events.events(subscriber)[-1][1:3] == ("resubscribed", "link")
    # The same proof cannot undo a second, later unsubscribe after the window has passed.
    page = site.request("POST", f"/unsubscribe/{token}", ONE_CLICK).body
    proof = re.search(r'name="proof" value="([^"]+)"', page)
    assert proof
    site.clock.offset = timedelta(minutes=site.config.web.undo_minutes + 1)
    assert site.post(f"/unsubscribe/{token}/undo", proof=proof.group(1)).status == 409
    assert status(site) == "unsubscribed"


def test_undo_cannot_reactivate_a_reader_who_left_another_way(site: Site) -> None:
    token = reader(site)
    page = site.request("POST", f"/unsubscribe/{token}", ONE_CLICK).body
    proof = re.search(r'name="proof" value="([^"]+)"', page)
    assert proof
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None
    assert site.store.subscribers.mark_complained(subscriber, detail="feedback loop")
    assert site.post(f"/unsubscribe/{token}/undo", proof=proof.group(1)).status == 409
    assert status(site) == "complained"


# -- sign-up ----------------------------------------------------------------------------


def confirm_link(message: EmailMessage) -> str:
    match = re.search(r"http://127\.0\.0\.1:\d+/confirm/([A-Za-z0-9_-]+)", text_of(message))
    assert match, text_of(message)
    return f"/confirm/{match.group(1)}"


def test_subscribe_confirm_activate_and_welcome_mail(site: Site) -> None:
    answer = site.post("/subscribe", email="Grace@Example.org", first_name="Grace", website="")
    assert answer.status == 200 and "Check your inbox" in answer.body
    assert (
        site.store.subscribers.get_by_email("grace@example.org") is None
    )  # pending, not a subscriber
    [confirmation] = site.mails()
    assert confirmation["To"] == "Grace@example.org"
    assert confirmation["Auto-Submitted"] == "auto-generated"
    link = confirm_link(confirmation)

    page = site.request("GET", link)
    assert page.status == 200 and page.body.count("<button") == 1
    assert site.store.subscribers.get_by_email("grace@example.org") is None  # GET changes nothing

    done = site.post(link, confirm="yes")
    assert done.status == 200 and "Thank you" in done.body
    grace = site.store.subscribers.get_by_email("grace@example.org")
    assert grace is not None
    assert (grace.status, grace.first_name, grace.consent_source) == ("active", "Grace", "web form")
    assert grace.consent_note is not None and "from 127.0.0.1" in grace.consent_note
    assert "double opt-in" in grace.consent_note

    mails = site.mails()
    assert len(mails) == 2
    welcome = mails[1]
    assert "Welcome" in str(welcome["Subject"])
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"{site.url}unsubscribe/{grace.token}" in str(welcome["List-Unsubscribe"])
    assert "Hello Grace" in text_of(welcome)

    # A second click (or a double POST) neither fails nor sends a second welcome.
    assert site.post(link, confirm="yes").status == 200
    assert len(site.mails()) == 2


def test_the_archive_sign_up_form_works_through_the_server(
    publication: Path, tmp_path: Path
) -> None:
    from conftest import run_cli

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    built = tmp_path / "built"
    result = run_cli(
        publication, "archive", "--out", str(built), env={"NEWSLETTER_WEB__PUBLIC_URL": url}
    )
    assert result.code == 0, result.stderr
    for site in make_site(publication, tmp_path, port=port, archive=built):
        page = site.request("GET", "/subscribe/")
        assert page.status == 200
        assert 'name="email"' in page.body and 'name="website"' in page.body
        form = re.search(r'<form[^>]*action="([^"]+)"', page.body)
        assert form is not None and form.group(1) == url + "subscribe"
        answer = site.post("/subscribe", email="reader@example.org", first_name="Re", website="")
        assert answer.status == 200 and "Check your inbox" in answer.body
        site.post(confirm_link(site.mails()[0]), confirm="yes")
        assert status(site, "reader@example.org") == "active"
        assert "Welcome" in str(site.mails()[1]["Subject"])


def test_welcome_mail_links_the_free_resource(publication: Path, tmp_path: Path) -> None:
    for site in make_site(
        publication, tmp_path, welcome_resource_url="https://example.com/guide.pdf"
    ):
        site.post("/subscribe", email="lin@example.org")
        site.post(confirm_link(site.mails()[0]), confirm="yes")
        assert "https://example.com/guide.pdf" in text_of(site.mails()[1])


def test_the_same_answer_whether_or_not_the_address_exists(site: Site) -> None:
    reader(site, "active@example.org")
    reader(site, "bounced@example.org")
    bounced = site.store.subscribers.get_by_email("bounced@example.org")
    assert bounced is not None
    site.store.subscribers.record_bounce(
        bounced, hard=True, issue_slug=None, detail="550", soft_limit=3
    )
    site.store.subscribers.forget("gone@example.org", reason="erasure request")
    answers = {
        address: site.post("/subscribe", email=address)
        for address in (
            "new@example.org",
            "active@example.org",
            "bounced@example.org",
            "gone@example.org",
        )
    }
    assert {a.status for a in answers.values()} == {200}
    assert len({a.body for a in answers.values()}) == 1
    assert [m["To"] for m in site.mails()] == ["new@example.org"]
    assert status(site, "bounced@example.org") == "bounced"


def test_an_unsubscribed_reader_comes_back_only_by_confirming(site: Site) -> None:
    token = reader(site)
    site.request("POST", f"/unsubscribe/{token}", ONE_CLICK)
    assert site.post("/subscribe", email="ada@example.org").status == 200
    [confirmation] = site.mails()
    assert status(site) == "unsubscribed"
    site.post(confirm_link(confirmation), confirm="yes")
    assert status(site) == "active"
    subscriber = site.store.subscribers.get_by_email("ada@example.org")
    assert subscriber is not None
    assert site.store.events.events(subscriber)[-1][1] == "resubscribed"


def test_a_suppressed_address_is_not_reactivated_by_a_pending_link(site: Site) -> None:
    site.post("/subscribe", email="late@example.org")
    link = confirm_link(site.mails()[0])
    site.store.subscribers.add("late@example.org", source="test", consent="test")
    late = site.store.subscribers.get_by_email("late@example.org")
    assert late is not None
    site.store.subscribers.mark_complained(late, detail="complaint meanwhile")
    assert site.post(link, confirm="yes").status == 200
    assert status(site, "late@example.org") == "complained"
    assert len(site.mails()) == 1  # no welcome


def test_expired_and_forged_confirmation_links(site: Site) -> None:
    site.post("/subscribe", email="slow@example.org")
    link = confirm_link(site.mails()[0])
    forged = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
    unknown = site.request("GET", "/confirm/" + "A" * 32)
    assert site.request("GET", forged).status == 404
    assert site.post(forged, confirm="yes").body == unknown.body
    site.clock.offset = timedelta(hours=site.config.web.confirm_hours, minutes=1)
    assert site.request("GET", link).status == 410
    expired = site.post(link, confirm="yes")
    assert expired.status == 410 and "expired" in expired.body
    assert site.store.subscribers.get_by_email("slow@example.org") is None
    assert len(site.mails()) == 1


def test_the_honeypot_answers_alike_and_records_nothing(site: Site) -> None:
    trapped = site.post("/subscribe", email="bot@example.org", website="http://spam.example")
    real = site.post("/subscribe", email="human@example.org", website="")
    assert (trapped.status, trapped.body) == (real.status, real.body)
    assert [m["To"] for m in site.mails()] == ["human@example.org"]
    assert (
        site.store.db.one("SELECT count(*) FROM signups WHERE email_key = 'bot@example.org'") == 0
    )


def test_a_bad_address_is_a_400_with_the_form_again(site: Site) -> None:
    reply = site.post("/subscribe", email="not an address")
    assert reply.status == 400 and 'name="email"' in reply.body
    assert site.mails() == []


def test_per_client_and_per_address_rate_limits(publication: Path, tmp_path: Path) -> None:
    for site in make_site(
        publication, tmp_path, subscribe_per_client_hour=4, subscribe_per_address_hour=2
    ):
        answers = [site.post("/subscribe", email="same@example.org") for _ in range(3)]
        assert [a.status for a in answers] == [200, 200, 200]
        assert len({a.body for a in answers}) == 1  # the per-address limit is silent
        assert len(site.mails()) == 2
        assert site.post("/subscribe", email="other@example.org").status == 200
        limited = site.post("/subscribe", email="third@example.org")
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
        assert len(site.mails()) == 3


def test_two_serve_processes_on_a_server_store_allow_the_limit_once(
    publication: Path, tmp_path: Path, store_url: str | None
) -> None:
    first = make_site(publication, tmp_path, subscribe_per_client_hour=2)
    one = next(first)
    second = make_site(
        publication, tmp_path, archive=tmp_path / "archive", subscribe_per_client_hour=2
    )
    two = next(second)
    try:
        assert one.post("/subscribe", email="a@example.org").status == 200
        assert two.post("/subscribe", email="b@example.org").status == 200
        third = one.post("/subscribe", email="c@example.org").status
        # PostgreSQL: the hits are counted in the database, so the two share one limit. SQLite
        # is one `serve` process's store: each process counts its own, in memory.
        assert third == (429 if store_url else 200)
    finally:
        first.close()
        second.close()


def test_behind_a_trusted_proxy_the_limit_counts_forwarded_clients(
    publication: Path, tmp_path: Path
) -> None:
    from newsletter.cli.web import ServerThread

    for site in make_site(publication, tmp_path, subscribe_per_client_hour=1):
        proxied = ServerThread(site.app, trusted_proxy="127.0.0.1").start()
        try:
            front = replace(site, url=proxied.url)
            for client, address, expected in (
                ("198.51.100.1", "a@example.org", 200),
                ("198.51.100.2", "b@example.org", 200),
                ("198.51.100.1", "c@example.org", 429),
            ):
                body = urllib.parse.urlencode({"email": address}).encode()
                reply = front.request(
                    "POST", "/subscribe", body, headers={"X-Forwarded-For": client}
                )
                assert reply.status == expected
        finally:
            proxied.stop()
        assert [m["To"] for m in site.mails()] == ["a@example.org", "b@example.org"]


# -- pages, files, headers --------------------------------------------------------------


def test_pages_are_escaped_and_carry_security_headers(publication: Path, tmp_path: Path) -> None:
    config_file = publication / "newsletter.yaml"
    config_file.write_text(
        config_file.read_text().replace("name: Leader Notes", 'name: "Notes <script>x()</script>"')
    )
    for site in make_site(publication, tmp_path):
        page = site.request("GET", "/subscribe")
        assert page.status == 200
        assert "<script>" not in page.body and "Notes &lt;script&gt;x()&lt;/script&gt;" in page.body
        assert 'name="website"' in page.body  # the honeypot field
        headers = {k.lower(): v for k, v in page.headers.items()}
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"


def test_the_archive_is_served_for_other_paths(site: Site) -> None:
    home = site.request("GET", "/")
    assert home.status == 200 and "Archive home" in home.body
    assert site.request("GET", "/2026-01-notes/").body == "<h1>January</h1>"
    css = site.request("GET", "/style.css")
    assert css.headers["Content-Type"].startswith("text/css")
    # issue 13: archive files carry the security headers too, with the archive's own CSP
    assert "script-src 'self'" in css.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in home.headers["Content-Security-Policy"]
    assert home.headers["X-Content-Type-Options"] == "nosniff"
    conn = http.client.HTTPConnection("127.0.0.1", int(site.url.rsplit(":", 1)[1].strip("/")))
    conn.request("GET", "/2026-01-notes")
    moved = conn.getresponse()
    assert (moved.status, moved.getheader("Location")) == (301, "/2026-01-notes/")
    moved.read()
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/2026-01-notes/../../secret.txt"):
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 404 and b"not for the web" not in response.read()
    conn.close()


def test_wrong_methods_get_405_with_allow(site: Site) -> None:
    token = reader(site)
    reply = site.request("PUT", "/subscribe", b"x")
    assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD, POST"
    reply = site.request("DELETE", f"/unsubscribe/{token}")
    assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD, POST"
    assert status(site) == "active"


def test_an_oversized_form_is_refused(site: Site) -> None:
    reply = site.request("POST", "/subscribe", b"email=" + b"a" * 70_000)
    assert reply.status == 413
    assert site.mails() == []


def test_a_huge_declared_body_is_refused_before_it_is_sent(site: Site) -> None:
    """Issue 13: waitress refuses from the Content-Length (max_request_body_size), so a client
    declaring 600 MiB gets its 413 after sending the headers alone; before, waitress spooled
    the whole body to a temp file first and then the app said 413."""
    host, port = site.url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 629145600\r\n\r\nemail=a"
        )
        reply = sock.recv(4096)  # within the 10 s deadline: nothing more was sent
    assert reply.startswith(b"HTTP/1.1 413"), reply[:80]
    assert site.mails() == []


def test_the_archive_dot_files_are_not_served(site: Site) -> None:
    assert site.app.archive_dir is not None
    (site.app.archive_dir / ".archive-manifest.json").write_text('{"files": {}}')
    (site.app.archive_dir / "2026-01-notes" / ".secret").write_text("bookkeeping")
    for path in ("/.archive-manifest.json", "/2026-01-notes/.secret", "/%2earchive-manifest.json"):
        reply = site.request("GET", path)
        assert reply.status == 404 and "files" not in reply.body and "bookkeeping" not in reply.body


# -- the command ------------------------------------------------------------------------


def test_serve_refuses_to_start_without_secret_or_public_url(publication: Path) -> None:
    from conftest import run_cli

    config_file = publication / "newsletter.yaml"
    config_file.write_text(
        config_file.read_text().replace("public_url: null", "public_url: https://example.com/w/")
    )
    result = run_cli(publication, "serve", "--port", "0", env={"NEWSLETTER_WEB_SECRET": None})
    assert result.code == 2
    assert result.stderr.count("\n") == 1
    assert "web.secret_env: the web secret is read from $NEWSLETTER_WEB_SECRET" in result.stderr
    short = run_cli(publication, "serve", env={"NEWSLETTER_WEB_SECRET": "short"})
    assert (short.code, "shorter than 32" in short.stderr) == (2, True)
    result = run_cli(
        publication,
        "serve",
        env={"NEWSLETTER_WEB_SECRET": "k" * 40, "NEWSLETTER_WEB__PUBLIC_URL": "null"},
    )
    assert result.code == 2 and "web.public_url: expected the public URL" in result.stderr


def test_serve_runs_waitress_and_stops_on_sigterm(publication: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    env = {
        **os.environ,
        "NEWSLETTER_WEB_SECRET": "k" * 40,
        "NEWSLETTER_WEB__PUBLIC_URL": f"http://127.0.0.1:{port}/",
    }
    (publication / "site").mkdir()
    (publication / "site" / "index.html").write_text("archive index")
    cli = "from newsletter.cli.main import main; main()"
    command = [sys.executable, "-c", cli, "--root", str(publication), "serve"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--archive", str(publication / "site")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    body = resp.read().decode()
                    server_header = resp.headers["Server"]
                break
            except OSError:
                time.sleep(0.05)
        assert body == "archive index"
        assert server_header == "newsletter"
        with open_store(load_config(publication)) as store:
            token = store.subscribers.add("ed@example.org", source="test", consent="t").subscriber
        assert token is not None
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/unsubscribe/{token.token}", data=ONE_CLICK, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"serving http://127.0.0.1:{port}/" in stderr
    with open_store(load_config(publication)) as store:
        assert store.subscribers.get_by_email("ed@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_the_rate_limiter_window_slides_and_its_memory_is_bounded() -> None:
    from newsletter.web.ratelimit import RateLimiter

    limiter = RateLimiter(2, 60)
    assert limiter.hit("a", now=0) is None
    assert limiter.hit("a", now=1) is None
    assert limiter.hit("a", now=2) == 58  # seconds until the first hit leaves the window
    assert limiter.hit("b", now=2) is None
    assert limiter.hit("a", now=60.5) is None
    small = RateLimiter(1, 60, max_keys=3)
    for key in "abcd":
        small.hit(key, now=0)
    assert small.hit("a", now=1) is None  # the oldest key was dropped to stay within max_keys
    assert small.hit("d", now=1) is not None
