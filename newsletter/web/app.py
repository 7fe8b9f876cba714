"""`newsletter serve`: one-click unsubscribe (RFC 8058), confirmed sign-up, the archive.

A small WSGI application (run by waitress, see cli/web.py) that routes each request to its
endpoints: the unsubscribe page and one-click POST (web/unsubscribe.py), the sign-up form and
its confirmation (web/signup.py), and, for any other GET, the built archive folder when one
is given (web/http.py serves its files).

An unknown token gets the same 404 as a malformed one. Rate limits live in this process's
memory (web/ratelimit.py): right for the one waitress process `serve` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter.config import Config
from newsletter.content.render import template_environment
from newsletter.errors import ConfigError, StoreError
from newsletter.mail import webmail
from newsletter.store.ratelimits import RateLimits
from newsletter.store.signups import Signups
from newsletter.store.subscribers import Subscribers
from newsletter.web.http import (
    MAX_BODY,
    REASONS,
    Pages,
    Request,
    Response,
    parse_form,
    security_headers,
    static_file,
)
from newsletter.web.signup import SignupFlow
from newsletter.web.tokens import Signer
from newsletter.web.unsubscribe import Unsubscribe

log = logging.getLogger("newsletter.web.app")
PAGES = ("unsubscribe.html", "unsubscribed.html", "subscribe.html", "confirm.html", "message.html")


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
        rate_limits: RateLimits | None = None,
    ) -> None:
        if not config.web.public_url:
            raise ConfigError(
                "expected the public URL of this server (mails link to it)", field="web.public_url"
            )
        self.config, self.clock = config, clock
        self.subscribers, self.signups = subscribers, signups
        self.base = config.web.public_url.rstrip("/") + "/"
        self._prefix = urlsplit(self.base).path.rstrip("/")
        self.archive_dir = archive_dir.resolve() if archive_dir else None
        page_env = template_environment(config, autoescape=True)
        mail_env = webmail.mail_environment(config)
        # A missing or broken template is a one-line error now, not a 500 for a reader later.
        webmail.check_templates(page_env, [f"web/{name}" for name in PAGES])
        webmail.check_templates(mail_env, webmail.MAIL_TEMPLATES)
        self.pages = Pages(config, page_env)
        signer = Signer(secret)
        self.mail = webmail.MailQueue(config)
        self.unsubscribes = Unsubscribe(config, subscribers, self.pages, signer, clock)
        self.signup = SignupFlow(
            config,
            subscribers,
            signups,
            base=self.base,
            pages=self.pages,
            signer=signer,
            clock=clock,
            mail_env=mail_env,
            mail=self.mail,
            archive_form=self._archive_form,
            rate_limits=rate_limits,
        )

    def close(self) -> None:
        self.mail.stop()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            response = self._dispatch(environ)
        except StoreError as exc:
            log.warning("store: %s", exc)
            response = self.pages.message(
                503, "Please try again", "The list is busy. Please try again in a minute."
            )
            response.headers.append(("Retry-After", "60"))
        except Exception:
            log.exception("%s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            response = self.pages.message(500, "Something went wrong", "Please try again later.")
        https = self.base.startswith("https://")
        headers = [*response.headers, *security_headers(response, https=https)]
        headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {REASONS.get(response.status, '')}", headers)
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
                return self.pages.message(413, "Too large", "That form was too large.")
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            form = parse_form(str(environ.get("CONTENT_TYPE", "")), body)
        else:
            form = {}
        request = Request(method, path, str(environ.get("REMOTE_ADDR", "")), form)
        get = method in ("GET", "HEAD")
        unsubscribes, signup = self.unsubscribes, self.signup
        if parts[0] == "unsubscribe" and len(parts) == 2:
            return self._route(
                request, get=unsubscribes.page, post=unsubscribes.unsubscribe, token=parts[1]
            )
        if parts[0] == "unsubscribe" and len(parts) == 3 and parts[2] == "undo":
            return self._route(request, post=unsubscribes.undo, token=parts[1])
        if parts[0] == "confirm" and len(parts) == 2:
            return self._route(
                request, get=signup.confirm_page, post=signup.confirm, token=parts[1]
            )
        if path.rstrip("/") == "/subscribe":
            return self._route(request, get=signup.form, post=signup.subscribe)
        if get and self.archive_dir is not None:
            return self._static(path)
        return self.pages.not_found()

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
            response = self.pages.message(
                405, "Not allowed", "That is not something this page does."
            )
            response.headers.append(("Allow", allowed))
            return response
        return handler(request, **kwargs)

    def _static(self, path: str) -> Response:
        assert self.archive_dir is not None
        return static_file(self.archive_dir, self._prefix, path) or self.pages.not_found()

    def _archive_form(self, request: Request) -> Response | None:
        """The archive's own sign-up page, when the archive served here has one."""
        if self.archive_dir and (self.archive_dir / "subscribe" / "index.html").is_file():
            return self._static(request.path)
        return None
