"""One access-log line per request of `newsletter serve`, never a token.

Unsubscribe and confirm links carry the reader's token in the path (`/unsubscribe/TOKEN`):
whoever reads the log must not be able to unsubscribe anyone, so the segment after
`unsubscribe`/`confirm` is logged as `…`, and query strings never are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("newsletter.access")
_TOKEN_ROUTES = frozenset({"unsubscribe", "confirm"})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def redact(path: str) -> str:
    """The path with every token segment replaced by `…`."""
    parts = path.split("/")
    for index in range(1, len(parts)):
        if parts[index - 1] in _TOKEN_ROUTES and parts[index]:
            parts[index] = "…"
    return "/".join(parts)


class AccessLog:
    """WSGI middleware: `client "METHOD /path" status bytes ms` after each response."""

    def __init__(self, app: WsgiApp, write: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.write = write or log.info

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        status = ["-"]

        def start(code: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, *exc)

        result = self.app(environ, start)
        try:
            body = list(result)  # the endpoints' pages are small; the size goes in the line
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        size = sum(len(chunk) for chunk in body)
        path = redact(str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "/")))
        method = str(environ.get("REQUEST_METHOD", "-"))
        client = str(environ.get("REMOTE_ADDR", "-"))
        ms = (time.monotonic() - started) * 1000
        self.write(f'{client} "{method} {path}" {status[0]} {size} {ms:.0f}ms')
        return body
