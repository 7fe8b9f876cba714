"""Issue 15's rough edges: a busy preview port, serve's access log, a CLI without fcntl."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import run_cli

from newsletter.locks import exclusive
from newsletter.web.accesslog import AccessLog, redact


def test_a_busy_preview_port_is_one_line(publication: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_cli(
            publication, "preview", "2026-10-listening-rounds", "--port", str(port)
        )
    assert code == 2, out + err
    assert err.startswith(f"error: --port: cannot listen on 127.0.0.1:{port}: ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_access_log_has_one_line_per_request_and_no_token() -> None:
    lines: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("303 See Other", [("Content-Type", "text/plain")])
        return [b"moved"]

    logged = AccessLog(app, lines.append)
    token = "s3cr3t-T0ken_abcdefghijklmnop"
    for method, path in (("GET", f"/unsubscribe/{token}"), ("POST", f"/confirm/{token}")):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "REMOTE_ADDR": "192.0.2.7",
                   "QUERY_STRING": f"t={token}"}  # fmt: skip
        assert list(logged(environ, lambda *a: None)) == [b"moved"]
    assert len(lines) == 2
    assert lines[0].startswith('192.0.2.7 "GET /unsubscribe/…" 303 5 ')
    assert lines[1].startswith('192.0.2.7 "POST /confirm/…" 303 5 ')
    assert all(token not in line for line in lines)
    assert redact("/unsubscribe/TOKEN/undo") == "/unsubscribe/…/undo"
    assert redact("/2026-10-x/index.html") == "/2026-10-x/index.html"


def test_the_cli_starts_without_fcntl(tmp_path: Path) -> None:
    # Windows has no fcntl: with the module blocked, the CLI still imports and runs --help.
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from newsletter.cli import main\n"
        "main(['--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "init" in result.stdout and "send" in result.stdout


def test_a_held_lock_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with exclusive(path, RuntimeError):
        try:
            with exclusive(path, RuntimeError):
                raise AssertionError("a second holder got the lock")
        except RuntimeError as exc:
            assert str(exc).startswith("pid ")
    with exclusive(path, RuntimeError):  # released: free again
        pass
