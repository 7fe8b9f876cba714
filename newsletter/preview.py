"""A local preview server for one issue: desktop and phone frames side by side, and the text.

Loopback only, and a development tool: the stdlib server is enough here (the public
endpoints of `newsletter serve` use waitress).
"""

from __future__ import annotations

import datetime as dt
import html
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.publication import load_publication
from newsletter.render import Personalised, PreviewReader, render_issue

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {title}</title>
<style>
body {{ margin: 0; font-family: system-ui, sans-serif; background: #e9e6e1; color: #222; }}
header {{ padding: 12px 20px; background: #2b2b2b; color: #fff; }}
main {{ display: flex; gap: 24px; padding: 20px; align-items: flex-start; flex-wrap: wrap; }}
section h2 {{ font-size: 14px; margin: 0 0 8px; }}
iframe {{ border: 1px solid #bbb; background: #fff; height: 1400px; }}
pre {{ background: #fff; padding: 16px; border: 1px solid #bbb; max-width: 80ch;
       white-space: pre-wrap; font-size: 13px; }}
</style></head><body>
<header>{title} &middot; reload to re-render &middot;
  <a style="color:#fc6" href="/email.txt">text part</a></header>
<main>
<section><h2>Desktop (700 px)</h2>
  <iframe src="/email.html" width="700" title="desktop"></iframe></section>
<section><h2>Phone (375 px)</h2>
  <iframe src="/email.html" width="375" title="phone"></iframe></section>
<section><h2>Plain text</h2><pre>{text}</pre></section>
</main></body></html>
"""


def render_preview(config: Config, issue_ref: str, today: dt.date) -> tuple[str, Personalised]:
    publication = load_publication(config, today)
    rendered = render_issue(config, publication.find(config, issue_ref), publication.issues)
    return rendered.subject, rendered.personalise(PreviewReader())


def make_server(
    config: Config, issue_ref: str, port: int, today: dt.date
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                subject, email = render_preview(config, issue_ref, today)
            except NewsletterError as exc:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", f"error: {exc}\n")
                return
            path = self.path.split("?", 1)[0]
            if path == "/":
                page = PAGE.format(title=html.escape(subject), text=html.escape(email.text))
                self._send(HTTPStatus.OK, "text/html", page)
            elif path == "/email.html":
                self._send(HTTPStatus.OK, "text/html", email.html)
            elif path == "/email.txt":
                self._send(HTTPStatus.OK, "text/plain", email.text)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", "not found\n")

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

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)
