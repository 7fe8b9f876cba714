"""`newsletter serve`: the web endpoints (newsletter/web.py) behind waitress.

waitress is a production WSGI server (pure Python, threads, HTTP/1.1 keep-alive, request size
limits); the stdlib's wsgiref server is for development only. Put a TLS-terminating reverse
proxy in front (RFC 8058 wants https), and set `web.trusted_proxy` to its address so the rate
limits see the reader's IP instead of the proxy's.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click
import waitress
from waitress import wasyncore

from newsletter.cli.context import AppContext, pass_app
from newsletter.mail import dkim
from newsletter.store.store import open_store
from newsletter.web.accesslog import AccessLog
from newsletter.web.app import MAX_BODY, WebApp, web_secret


def create_server(
    app: Any, host: str, port: int, *, trusted_proxy: str | None = None, threads: int = 8
) -> Any:
    """A bound (not yet running) waitress server; `.effective_port` is the real port."""
    # A body larger than any form is refused by waitress from its Content-Length, before a
    # byte is buffered (its default, 1 GiB, spooled a declared 600 MiB to a temp file first).
    options: dict[str, Any] = {
        "threads": threads,
        "ident": "newsletter",
        "max_request_body_size": MAX_BODY,
    }
    if trusted_proxy:
        options.update(
            trusted_proxy=trusted_proxy,
            trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
            clear_untrusted_proxy_headers=True,
        )
    return waitress.create_server(app, host=host, port=port, **options)


class ServerThread:
    """waitress in a background thread (tests, embedding): `start()`, `.port`, `stop()`."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 8,
        trusted_proxy: str | None = None,
    ) -> None:
        self.server = create_server(app, host, port, threads=threads, trusted_proxy=trusted_proxy)
        self.host = host
        self.port = int(self.server.effective_port)
        self._thread = threading.Thread(target=self.server.run, name="waitress", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection from inside the server's own loop (closing
        sockets under a running select() from here fails with EBADF); the loop ends when no
        socket is left, then the worker threads are joined."""
        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        except OSError:  # the wake-up pipe is gone: close from here
            wasyncore.close_all(self.server._map, ignore_all=True)
        self._thread.join(timeout=10)
        self.server.task_dispatcher.shutdown()


@click.command()
@click.option("--host", default=None, help="Interface to listen on. Default: web.host (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port. Default: web.port (8025).")
@click.option(
    "--archive",
    "archive_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Also serve this built archive folder (newsletter archive --out DIR) for other paths.",
)
@click.option("--threads", type=int, default=8, show_default=True, help="Worker threads.")
@pass_app
def serve(
    app: AppContext, host: str | None, port: int | None, archive_dir: Path | None, threads: int
) -> None:
    """Serve one-click unsubscribe (RFC 8058), confirmed sign-up and the archive.

    Needs web.public_url in newsletter.yaml (mails link to it) and a link-signing key of at
    least 32 characters in $NEWSLETTER_WEB_SECRET (the variable web.secret_env names).
    Stops cleanly on Ctrl-C or SIGTERM.

    \b
    Example:
        export NEWSLETTER_WEB_SECRET="$(openssl rand -base64 32)"
        newsletter archive --out build/archive
        newsletter serve --port 8025 --archive build/archive
    """
    config = app.config
    secret = web_secret(config, os.environ)
    dkim.check(config)
    with open_store(config) as store:
        webapp = WebApp(
            config, store.subscribers, store.signups, secret=secret, archive_dir=archive_dir
        )
        try:
            server = create_server(
                AccessLog(webapp, lambda line: click.echo(line, err=True)),
                host or config.web.host,
                config.web.port if port is None else port,
                trusted_proxy=config.web.trusted_proxy,
                threads=threads,
            )
        except OSError as exc:
            webapp.close()
            raise click.ClickException(f"cannot listen: {exc.strerror}") from None

        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(0)  # waitress's loop catches it and shuts down its threads

        signal.signal(signal.SIGTERM, stop)
        click.echo(
            f"serving http://{server.effective_host}:{server.effective_port}/"
            f" as {config.web.public_url} (Ctrl-C stops)",
            err=True,
        )
        try:
            server.run()
        finally:
            webapp.close()
    sys.stderr.flush()
