"""WSGI plumbing for `newsletter serve`: requests and responses, forms, the pages rendered
from templates/web/, the archive's files, and the security headers every response carries."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import HTTP
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from newsletter.config import Config
from newsletter.content.render import render_template

if TYPE_CHECKING:  # jinja2 is imported when the first template is, not at start-up
    import jinja2

MAX_BODY = 16 * 1024  # also waitress's max_request_body_size: larger is refused unread
REASONS = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 404: "Not Found"}
REASONS |= {405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Content Too Large"}
REASONS |= {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
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


class Pages:
    """Our own pages (templates/web/), each with the same defaults and the config."""

    def __init__(self, config: Config, env: jinja2.Environment) -> None:
        self.config, self.env = config, env

    def page(self, code: int, template: str, **values: Any) -> Response:
        defaults = {"error": None, "undo_proof": None, "token": None, "email": None}
        context = {**defaults, "config": self.config, "archive_url": self.config.base_url}
        html = render_template(self.env, f"web/{template}", {**context, **values})
        return Response(code, html.encode("utf-8"), [("Content-Type", "text/html; charset=utf-8")])

    def message(self, status: int, title: str, text: str) -> Response:
        return self.page(status, "message.html", title=title, text=text)

    def not_found(self) -> Response:
        return self.message(
            404, "Not found", "This link is not valid. Please check that it was copied whole."
        )

    def expired(self) -> Response:
        return self.message(
            410, "This link has expired", "Please sign up again; a new link will be sent."
        )


def static_file(archive_dir: Path, prefix: str, path: str) -> Response | None:
    """A file of the built archive (a folder: its index.html); None when there is none."""
    if "\x00" in path or any(part.startswith(".") for part in path.split("/")):
        # Dot-files are the build's bookkeeping (.archive-manifest.json), never pages.
        return None
    target = (archive_dir / path.lstrip("/")).resolve()
    if not target.is_relative_to(archive_dir):
        return None
    if target.is_dir():
        if not path.endswith("/"):
            return Response(301, b"", [("Location", prefix + path + "/")])
        target = target / "index.html"
    if not target.is_file():
        return None
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/xml"):
        kind += "; charset=utf-8"
    return Response(200, target.read_bytes(), [("Content-Type", kind)], archive_file=True)


def security_headers(response: Response, *, https: bool) -> list[tuple[str, str]]:
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
    if https:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
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
