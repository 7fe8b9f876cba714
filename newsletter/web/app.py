"""`newsletter serve`: one-click unsubscribe (RFC 8058), confirmed sign-up, the archive.

A small WSGI application (run by waitress, see cli_web.py):

    GET  /unsubscribe/<token>        a page with one button; never changes anything (mail
                                     scanners prefetch links)
    POST /unsubscribe/<token>        unsubscribes at once, idempotent, 200; the RFC 8058 body
                                     `List-Unsubscribe=One-Click` or the page's button
    POST /unsubscribe/<token>/undo   re-activates only if this token unsubscribed through the
                                     link in the last `web.undo_minutes` (a signed proof)
    GET  /subscribe, POST /subscribe email, first_name, honeypot `website`: a pending sign-up
                                     and a confirmation mail with an expiring link
    GET  /confirm/<token>, POST      a button; its POST activates and sends the welcome mail
    GET  anything else               the built archive folder, when one is given

No enumeration: a sign-up gets the same page (and, mail being queued, the same timing) whether
the address is new, active, suppressed or rate-limited per address. An unknown token gets the
same 404 as a malformed one. Rate limits live in this process's memory: right for the one
waitress process `serve` runs; several processes would each allow the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import mimetypes
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from newsletter.config import Config
from newsletter.content.render import render_template, template_environment
from newsletter.errors import ConfigError, StoreError
from newsletter.links import unsubscribe_mailto, unsubscribe_web_url
from newsletter.mail import webmail
from newsletter.store.csvio import InvalidAddress, clean_name, normalise_address
from newsletter.store.records import Signup, Subscriber
from newsletter.store.signups import Signups
from newsletter.store.subscribers import Subscribers

log = logging.getLogger("newsletter.web.app")
PAGES = ("unsubscribe.html", "unsubscribed.html", "subscribe.html", "confirm.html", "message.html")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAX_BODY = 16 * 1024  # also waitress's max_request_body_size: larger is refused unread
_SECRET_MIN = 32
_REASONS = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 404: "Not Found"}
_REASONS |= {405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Content Too Large"}
_REASONS |= {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The archive's own files: its scripts (search) and styles come from itself, its images may
# be anywhere on https, its sign-up form may post to another https host.
_ARCHIVE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: data:; object-src 'none'; form-action 'self' https:; "
    "frame-ancestors 'none'; base-uri 'self'"
)


def web_secret(config: Config, environ: Mapping[str, str]) -> bytes:
    """The link-signing key from `$web.secret_env`; serve refuses to start without one."""
    value = environ.get(config.web.secret_env, "")
    if len(value) < _SECRET_MIN:
        state = "is not set" if not value else f"is shorter than {_SECRET_MIN} characters"
        raise ConfigError(
            f"the web secret is read from ${config.web.secret_env}, which {state}"
            " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            field="web.secret_env",
        )
    return value.encode()


class RateLimiter:
    """At most `limit` hits per key in a sliding `window` (seconds), in memory."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Count a hit; None if allowed, else the seconds until the next one would be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            self._hits[key] = hits  # most recently used last
            if len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    archive_file: bool = False  # a file of the built archive, not one of our pages


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    client: str
    form: dict[str, str]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebApp:
    """The WSGI application. `clock` is injectable so tests can expire links."""

    def __init__(
        self,
        config: Config,
        subscribers: Subscribers,
        signups: Signups,
        *,
        secret: bytes,
        archive_dir: Path | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not config.web.public_url:
            raise ConfigError(
                "expected the public URL of this server (mails link to it)", field="web.public_url"
            )
        self.config, self.clock = config, clock
        self.subscribers, self.signups = subscribers, signups
        self._secret = secret
        self.base = config.web.public_url.rstrip("/") + "/"
        self._prefix = urlsplit(self.base).path.rstrip("/")
        self.archive_dir = archive_dir.resolve() if archive_dir else None
        self.pages = template_environment(config, autoescape=True)
        self.mail_env = webmail.mail_environment(config)
        # A missing or broken template is a one-line error now, not a 500 for a reader later.
        webmail.check_templates(self.pages, [f"web/{name}" for name in PAGES])
        webmail.check_templates(self.mail_env, webmail.MAIL_TEMPLATES)
        hour = 3600.0
        self.per_client = RateLimiter(config.web.subscribe_per_client_hour, hour)
        self.per_address = RateLimiter(config.web.subscribe_per_address_hour, hour)
        self.mail = webmail.MailQueue(config)

    def close(self) -> None:
        self.mail.stop()

    # -- WSGI -----------------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            response = self._dispatch(environ)
        except StoreError as exc:
            log.warning("store: %s", exc)
            response = self._message(
                503, "Please try again", "The list is busy. Please try again in a minute."
            )
            response.headers.append(("Retry-After", "60"))
        except Exception:
            log.exception("%s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            response = self._message(500, "Something went wrong", "Please try again later.")
        headers = [*response.headers, *self._security_headers(response)]
        headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    def _dispatch(self, environ: dict[str, Any]) -> Response:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/"))
        if self._prefix and (path == self._prefix or path.startswith(self._prefix + "/")):
            path = path[len(self._prefix) :] or "/"
        parts = path.strip("/").split("/")
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)  # waitress checked the digits
            if length > MAX_BODY:
                return self._message(413, "Too large", "That form was too large.")
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            form = _parse_form(str(environ.get("CONTENT_TYPE", "")), body)
        else:
            form = {}
        request = Request(method, path, str(environ.get("REMOTE_ADDR", "")), form)
        get = method in ("GET", "HEAD")
        if parts[0] == "unsubscribe" and len(parts) == 2:
            return self._route(
                request, get=self.unsubscribe_page, post=self.unsubscribe, token=parts[1]
            )
        if parts[0] == "unsubscribe" and len(parts) == 3 and parts[2] == "undo":
            return self._route(request, post=self.undo, token=parts[1])
        if parts[0] == "confirm" and len(parts) == 2:
            return self._route(request, get=self.confirm_page, post=self.confirm, token=parts[1])
        if path.rstrip("/") == "/subscribe":
            return self._route(request, get=self.subscribe_form, post=self.subscribe)
        if get and self.archive_dir is not None:
            return self._static(path)
        return self._not_found()

    def _route(
        self,
        request: Request,
        *,
        get: Callable[..., Response] | None = None,
        post: Callable[..., Response] | None = None,
        **kwargs: str,
    ) -> Response:
        handler = (
            get if request.method in ("GET", "HEAD") else post if request.method == "POST" else None
        )
        if handler is None:
            allowed = ", ".join(name for name, h in (("GET, HEAD", get), ("POST", post)) if h)
            response = self._message(405, "Not allowed", "That is not something this page does.")
            response.headers.append(("Allow", allowed))
            return response
        return handler(request, **kwargs)

    # -- unsubscribe ----------------------------------------------------------------------

    def _reader(self, token: str) -> Subscriber | None:
        if not _TOKEN.fullmatch(token):
            return None
        reader = self.subscribers.get_by_token(token)
        if reader is None or not hmac.compare_digest(reader.token.encode(), token.lower().encode()):
            return None
        return reader

    def unsubscribe_page(self, request: Request, *, token: str) -> Response:
        reader = self._reader(token)
        if reader is None:
            return self._not_found()
        return self._page(
            200, "unsubscribe.html", email=_mask(reader.email), reader_status=reader.status
        )

    def unsubscribe(self, request: Request, *, token: str) -> Response:
        reader = self._reader(token)
        if reader is None:
            return self._not_found()
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        how = "one-click (RFC 8058)" if one_click else "unsubscribe page"
        changed = self.subscribers.unsubscribe(reader, source="link", detail=how)
        undo = changed or reader.status == "unsubscribed"
        return self._page(
            200,
            "unsubscribed.html",
            email=_mask(reader.email),
            token=token,
            undo_proof=self._undo_proof(token) if undo else None,
        )

    def _undo_proof(self, token: str) -> str:
        stamp = str(int(self.clock().timestamp()))
        return f"{stamp}.{self._sign('undo', token, stamp)}"

    def undo(self, request: Request, *, token: str) -> Response:
        reader = self._reader(token)
        if reader is None:
            return self._not_found()
        stamp, _, mac = request.form.get("proof", "").partition(".")
        now = self.clock()
        window = timedelta(minutes=self.config.web.undo_minutes)
        fresh = stamp.isdigit() and now - window <= datetime.fromtimestamp(int(stamp), UTC) <= now
        genuine = hmac.compare_digest(mac.encode(), self._sign("undo", token, stamp).encode())
        if (
            fresh
            and genuine
            and self.subscribers.undo_unsubscribe(
                reader, since=now - window, detail="undo on the unsubscribe page"
            )
        ):
            return self._message(200, "Welcome back", "You are subscribed again, as before.")
        return self._message(
            409,
            "This can no longer be undone",
            f"Undo works for {self.config.web.undo_minutes} minutes after unsubscribing."
            " You can sign up again from the archive.",
        )

    # -- sign-up --------------------------------------------------------------------------

    def subscribe_form(self, request: Request) -> Response:
        """The archive's own sign-up page when it is served here (one look), else ours."""
        if self.archive_dir and (self.archive_dir / "subscribe" / "index.html").is_file():
            return self._static(request.path)
        return self._page(200, "subscribe.html", state="form")

    def subscribe(self, request: Request) -> Response:
        retry = self.per_client.hit(request.client)
        if retry is not None:
            response = self._message(429, "Too many sign-ups", "Please try again later.")
            response.headers.append(("Retry-After", str(int(retry) + 1)))
            return response
        if request.form.get("website", "").strip():
            log.info("sign-up honeypot filled from %s", request.client)
            return self._page(200, "subscribe.html", state="sent")
        try:
            address = normalise_address(request.form.get("email", "")[:320])
        except InvalidAddress:
            return self._page(
                400,
                "subscribe.html",
                state="form",
                error="That does not look like an email address.",
            )
        first_name = clean_name(request.form.get("first_name") or None)
        if self.per_address.hit(address.key) is None and self._may_join(address.email):
            token = secrets.token_urlsafe(24)  # 192 bits
            expires = self.clock() + timedelta(hours=self.config.web.confirm_hours)
            self.signups.add_signup(
                address.email,
                first_name,
                token_hash=self._sign("confirm", token),
                client_ip=request.client,
                expires_at=expires,
            )
            self.mail.submit(
                webmail.compose(
                    self.config,
                    self.mail_env,
                    webmail.CONFIRM_TEMPLATE,
                    to=address.email,
                    now=self.clock(),
                    context={
                        "first_name": first_name,
                        "confirm_url": f"{self.base}confirm/{token}",
                        "expires_hours": self.config.web.confirm_hours,
                    },
                )
            )
        return self._page(200, "subscribe.html", state="sent")

    def _may_join(self, email: str) -> bool:
        """Active readers need nothing; bounced, complained and forgotten addresses are never
        re-activated from the web. An unsubscribed reader may come back: only by confirming."""
        existing = self.subscribers.get_by_email(email)
        if existing is None:
            return not self.subscribers.is_forgotten(email)
        return existing.status == "unsubscribed"

    def _signup(self, token: str) -> tuple[Signup | None, str]:
        if not _TOKEN.fullmatch(token):
            return None, ""
        hashed = self._sign("confirm", token)
        signup = self.signups.get_signup(hashed)
        if signup is None or not hmac.compare_digest(signup.token_hash.encode(), hashed.encode()):
            return None, ""
        return signup, hashed

    def confirm_page(self, request: Request, *, token: str) -> Response:
        signup, _ = self._signup(token)
        if signup is None:
            return self._not_found()
        if signup.confirmed_at is None and signup.expires_at <= self.clock():
            return self._expired()
        done = signup.confirmed_at is not None
        return self._page(
            200, "confirm.html", state="done" if done else "ask", email=_mask(signup.email)
        )

    def confirm(self, request: Request, *, token: str) -> Response:
        signup, hashed = self._signup(token)
        if signup is None:
            return self._not_found()
        if signup.confirmed_at is None and signup.expires_at <= self.clock():
            return self._expired()
        result = self.signups.confirm_signup(hashed, client_ip=request.client)
        if (
            result is not None
            and result.subscriber is not None
            and result.outcome in ("added", "resubscribed")
        ):
            reader = result.subscriber
            self.mail.submit(
                webmail.compose(
                    self.config,
                    self.mail_env,
                    webmail.WELCOME_TEMPLATE,
                    to=reader.email,
                    now=self.clock(),
                    context={
                        "first_name": reader.first_name,
                        "resource_url": self.config.web.welcome_resource_url,
                        "unsubscribe_url": unsubscribe_web_url(self.config, reader.token),
                    },
                    unsubscribe=(
                        unsubscribe_mailto(self.config, reader.token),
                        unsubscribe_web_url(self.config, reader.token),
                    ),
                )
            )
        return self._page(200, "confirm.html", state="done", email=_mask(signup.email))

    # -- pages and files ------------------------------------------------------------------

    def _sign(self, purpose: str, *values: str) -> str:
        message = "\x00".join((purpose, *values)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _context(self, values: dict[str, Any]) -> dict[str, Any]:
        defaults = {"error": None, "undo_proof": None, "token": None, "email": None}
        return {**defaults, "config": self.config, "archive_url": self.config.base_url, **values}

    def _page(self, code: int, template: str, **values: Any) -> Response:
        html = render_template(self.pages, f"web/{template}", self._context(values))
        return Response(code, html.encode("utf-8"), [("Content-Type", "text/html; charset=utf-8")])

    def _message(self, status: int, title: str, text: str) -> Response:
        return self._page(status, "message.html", title=title, text=text)

    def _not_found(self) -> Response:
        return self._message(
            404, "Not found", "This link is not valid. Please check that it was copied whole."
        )

    def _expired(self) -> Response:
        return self._message(
            410, "This link has expired", "Please sign up again; a new link will be sent."
        )

    def _static(self, path: str) -> Response:
        assert self.archive_dir is not None
        if "\x00" in path or any(part.startswith(".") for part in path.split("/")):
            # Dot-files are the build's bookkeeping (.archive-manifest.json), never pages.
            return self._not_found()
        target = (self.archive_dir / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.archive_dir):
            return self._not_found()
        if target.is_dir():
            if not path.endswith("/"):
                location = self._prefix + path + "/"
                return Response(301, b"", [("Location", location)])
            target = target / "index.html"
        if not target.is_file():
            return self._not_found()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/xml"):
            kind += "; charset=utf-8"
        return Response(200, target.read_bytes(), [("Content-Type", kind)], archive_file=True)

    def _security_headers(self, response: Response) -> list[tuple[str, str]]:
        headers = [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ]
        if response.archive_file:
            headers += [
                ("Referrer-Policy", "strict-origin-when-cross-origin"),
                ("Cache-Control", "public, max-age=300"),
                ("Content-Security-Policy", _ARCHIVE_CSP),
            ]
        else:
            # Pages carry tokens in their URL: never cached, never sent on as a Referer.
            headers += [
                ("Referrer-Policy", "no-referrer"),
                ("Cache-Control", "no-store"),
                ("Content-Security-Policy", _PAGE_CSP),
                ("X-Robots-Tag", "noindex, nofollow"),
            ]
        if self.base.startswith("https://"):
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        return headers


def _parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded or multipart/form-data (RFC 8058 allows both)."""
    if content_type.lower().startswith("multipart/form-data"):
        message = message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body, policy=HTTP
        )
        form: dict[str, str] = {}
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                form.setdefault(name, payload.decode("utf-8", "replace"))
        return form
    text = body.decode("utf-8", "replace")
    return dict(reversed(parse_qsl(text, keep_blank_values=True)))


def _mask(email: str) -> str:
    """`j•••@example.com`: enough for the reader to recognise, little for anyone else."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"
