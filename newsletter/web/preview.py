"""A local preview server for one issue: what a reader gets, in the views that differ.

The email personalised for the sample reader (`PreviewReader`: a long address and a real
token's length), at phone and desktop width side by side, in dark mode, "as Gmail" (its
`<style>` block dropped, as Gmail does for some accounts and for blocks above ~16 KB, so
only the inlined CSS counts), and the text part. Every view re-renders on reload.

The dark view rewrites the email's `@media (prefers-color-scheme: dark)` into `@media all`,
so it is dark whatever the editor's own setting: an iframe follows the browser's scheme.

Loopback only, and a development tool: the stdlib server is enough here (the public
endpoints of `newsletter serve` use waitress).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from newsletter.config import Config
from newsletter.content.publication import load_publication
from newsletter.content.render import Personalised, PreviewReader, render_issue
from newsletter.errors import ConfigError, NewsletterError

_STYLE_BLOCK = re.compile(r"<style\b[^>]*>.*?</style>", re.S | re.I)
_DARK_QUERY = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.I)

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {title}</title>
<style>
* {{ box-sizing: border-box; }}
body {{ margin: 0; font-family: system-ui, sans-serif; background: #e9e6e1; color: #222; }}
header {{ padding: 12px 20px; background: #2b2b2b; color: #fff; overflow-wrap: anywhere; }}
header p {{ margin: 4px 0; }}
header a {{ color: #fc6; }}
main {{ display: flex; flex-wrap: wrap; gap: 24px; padding: 20px; align-items: flex-start; }}
section {{ max-width: 100%; }}
section h2 {{ font-size: 14px; margin: 0 0 8px; }}
/* A frame never widens the page: on a narrow window it shrinks to fit. */
iframe {{ display: block; max-width: 100%; height: 1400px; border: 1px solid #bbb;
          background: #fff; }}
pre {{ margin: 0; max-width: 100%; padding: 16px; background: #fff; border: 1px solid #bbb;
       font-size: 13px; white-space: pre-wrap; overflow-wrap: anywhere; }}
</style></head><body>
<header>
  <p><strong>{title}</strong> &middot; reload to re-render</p>
  <p>As received by {email} (a sample reader with a long address) &middot;
    open alone: <a href="/email.html">email</a>, <a href="/email-dark.html">dark</a>,
    <a href="/email-gmail.html">as Gmail</a>, <a href="/email.txt">text part</a></p>
</header>
<main>
<section><h2>Phone (375 px)</h2>
  <iframe src="/email.html" width="375" title="phone"></iframe></section>
<section><h2>Desktop (700 px)</h2>
  <iframe src="/email.html" width="700" title="desktop"></iframe></section>
<section><h2>Phone, dark mode</h2>
  <iframe src="/email-dark.html" width="375" title="phone, dark mode"></iframe></section>
<section><h2>Phone, as Gmail (no &lt;style&gt;)</h2>
  <iframe src="/email-gmail.html" width="375" title="phone, as Gmail"></iframe></section>
<section><h2>Plain text</h2><pre>{text}</pre></section>
</main></body></html>
"""


def render_preview(config: Config, issue_ref: str, today: dt.date) -> tuple[str, Personalised]:
    publication = load_publication(config, today)
    rendered = render_issue(config, publication.find(config, issue_ref), publication.issues)
    return rendered.subject, rendered.personalise(PreviewReader())


def as_dark(page: str) -> str:
    """The email with its dark-mode rules always on."""
    return _DARK_QUERY.sub("@media all", page)


def as_gmail(page: str) -> str:
    """The email without its `<style>` blocks: only the inlined CSS remains."""
    return _STYLE_BLOCK.sub("", page)


def _views(subject: str, email: Personalised) -> dict[str, tuple[str, Callable[[], str]]]:
    page = PAGE.format(
        title=html.escape(subject),
        email=html.escape(PreviewReader().email),
        text=html.escape(email.text),
    )
    return {
        "/": ("text/html", lambda: page),
        "/email.html": ("text/html", lambda: email.html),
        "/email-dark.html": ("text/html", lambda: as_dark(email.html)),
        "/email-gmail.html": ("text/html", lambda: as_gmail(email.html)),
        "/email.txt": ("text/plain", lambda: email.text),
    }


def make_server(config: Config, issue_ref: str, port: int, today: dt.date) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                subject, email = render_preview(config, issue_ref, today)
            except NewsletterError as exc:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", f"error: {exc}\n")
                return
            view = _views(subject, email).get(self.path.split("?", 1)[0])
            if view is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", "not found\n")
                return
            kind, body = view
            self._send(HTTPStatus.OK, kind, body())

        def _send(self, status: HTTPStatus, kind: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the editor's terminal shows the URL, not a line per request

    try:
        return ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:  # the port is taken (or not ours to bind): one line, no traceback
        raise ConfigError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; choose another --port "
            "(0: any free one)",
            field="--port",
        ) from None
