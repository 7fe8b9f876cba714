"""Issue 13: bad input, bounded. Each case is exit 2 with one short line naming the file or
key, no traceback, in a real `newsletter` process (the YAML bombs would otherwise take many
seconds and gigabytes: the subprocess deadline catches a regression)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.archive.write import MANIFEST_NAME, ArchiveError, check_out_folder
from newsletter.config import load_config
from newsletter.store.store import open_store

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def newsletter(
    root: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [NEWSLETTER, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,  # a deadline: the unbounded versions ran 14 s and more, or ran out of memory
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, done.stderr[:500]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def billion_laughs(levels: int = 9) -> str:
    text = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for n in range(1, levels):
        text += f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]\n"
    return text


def test_an_alias_bomb_in_the_config_is_refused_at_once(publication: Path) -> None:
    config = publication / "newsletter.yaml"
    config.write_text(config.read_text() + "x_bomb:\n  " + billion_laughs().replace("\n", "\n  "))
    assert len(billion_laughs()) < 700
    one_line_error(
        newsletter(publication, "subscribers", "list"),
        "newsletter.yaml:",
        "aliases",
    )


def test_an_alias_bomb_in_front_matter_is_refused_at_once(publication: Path) -> None:
    issue = publication / "content" / "2026-07-your-first-customer-sits-next-to-you.md"
    text = issue.read_text()
    issue.write_text(text.replace("---\n", "---\n" + billion_laughs(), 1))
    one_line_error(newsletter(publication, "check"), issue.name, "aliases")


@pytest.mark.parametrize(
    ("key", "value"),
    [("from", "News <news@example.com>\\r\\nBcc: everyone@example.net"), ("name", "A\\nB")],
)
def test_control_characters_in_a_header_setting_file(
    publication: Path, key: str, value: str
) -> None:
    config = publication / "newsletter.yaml"
    config.write_text(config.read_text() + f'\n{key}: "{value}"\n'.replace(f"\n{key}:", "\nx:"))
    # replace the existing key's line rather than add a duplicate
    lines = [
        line for line in config.read_text().splitlines() if not line.startswith((f"{key}:", "x:"))
    ]
    config.write_text("\n".join([*lines, f'{key}: "{value}"']) + "\n")
    one_line_error(newsletter(publication, "subscribers", "list"), "newsletter.yaml:", f"{key}:")


def test_control_characters_in_a_header_setting_from_the_environment(publication: Path) -> None:
    done = newsletter(
        publication,
        "subscribers",
        "list",
        env={"NEWSLETTER_REPLY_TO": "news@example.com\r\nBcc: all@example.net"},
    )
    one_line_error(done, "$NEWSLETTER_REPLY_TO", "reply_to", "control character")
    imap = newsletter(
        publication,
        "subscribers",
        "list",
        env={"NEWSLETTER_INBOX__IMAP__FOLDER": "INBOX\r\nA1 DELETE INBOX"},
    )
    one_line_error(imap, "inbox.imap.folder")


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--now", "garbage", "status"), {}, "--now"),
        (("--now", "garbage"), {}, "--now"),  # before click's "Missing command"
        (("--now", "2026-13-01T09:00", "schedule", "--list", "1"), {}, "--now"),
        (("status",), {"NEWSLETTER_NOW": "garbage"}, "$NEWSLETTER_NOW"),
        (("schedule", "--list", "1", "--now", "garbage"), {}, "--now"),
    ],
)
def test_a_bad_now_is_one_line_naming_it(
    publication: Path, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    line = one_line_error(newsletter(publication, *args, env=env), named, "ISO 8601")
    bad = next((a for a in args if a.startswith(("garbage", "2026-13"))), "garbage")
    assert line.startswith(f"error: {named}: expected ") and line.endswith(f"got {bad!r}")
    assert "2026-12-01T09:00+01:00" in line  # the expected form, with an offset


def test_an_oversized_issue_is_refused_before_markdown(publication: Path) -> None:
    issue = publication / "content" / "2026-07-your-first-customer-sits-next-to-you.md"
    with issue.open("a") as fh:
        fh.write(("*emphasis* and `code` " * 50 + "\n") * 1500)  # ~1.6 MB
    one_line_error(newsletter(publication, "check"), issue.name, "limited to 1,000,000")
    # configurable: a smaller limit refuses the sample's ordinary issues too
    issue.unlink()
    smaller = newsletter(publication, "check", env={"NEWSLETTER_MAX_ISSUE_BYTES": "1000"})
    assert smaller.returncode == 2 and "Traceback" not in smaller.stderr
    lines = smaller.stderr.strip().splitlines()  # one line for each file, none stops the rest
    assert len(lines) == len(list((publication / "content").glob("*.md")))
    assert all(line.startswith("error: ") and "limited to 1,000 (max_issue_bytes)" in line
               and len(line) < 300 for line in lines)  # fmt: skip


def test_a_template_that_is_not_utf8_names_the_file(publication: Path, tmp_path: Path) -> None:
    template = publication / "templates" / "email.html"
    template.write_bytes(template.read_bytes() + b"<!-- caf\xe9 -->\n")
    one_line_error(
        newsletter(publication, "build", "--out", str(tmp_path / "out")),
        "templates/email.html:",
        "not UTF-8",
    )


def test_csv_export_neutralises_formulas_and_import_restores_them(
    publication: Path, tmp_path: Path
) -> None:
    names = ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)", "'=quoted", "Zoë"]
    config = load_config(publication)
    with open_store(config) as store:
        for n, name in enumerate(names):
            store.subscribers.add(f"r{n}@example.org", name, source="web", consent="test")
        store.subscribers.add("-dash@example.org", "Plain", source="web", consent="test")
    out = tmp_path / "export.csv"
    assert run_cli(publication, "subscribers", "export", str(out)).code == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    exported = {row[0]: row[1] for row in rows[1:]}
    assert exported["r0@example.org"] == "'" + names[0]
    assert exported["r4@example.org"] == "''=quoted"
    assert exported["'-dash@example.org"] == "Plain"
    # importing our own export into a fresh publication gives back the original values
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "newsletter.yaml").write_bytes((publication / "newsletter.yaml").read_bytes())
    result = run_cli(fresh, "subscribers", "import", str(out))
    assert result.code == 0, result.stdout + result.stderr
    with open_store(load_config(fresh)) as store:
        for n, name in enumerate(names):
            found = store.subscribers.get_by_email(f"r{n}@example.org")
            assert found is not None and found.first_name == name
        assert store.subscribers.get_by_email("-dash@example.org") is not None


def test_archive_out_refuses_root_home_and_the_publication(
    publication: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for target in (home, publication, publication.parent):
        done = newsletter(
            publication, "archive", "--out", str(target), "--force", env={"HOME": str(home)}
        )
        one_line_error(done, "refusing to write the archive into this folder")
    assert not (home / "index.html").exists() and not (publication / "index.html").exists()
    # `/` through the same check, without ever running a build that could write there
    with pytest.raises(ArchiveError, match="refusing"):
        check_out_folder(Path("/"), publication, (MANIFEST_NAME,), force=True)


def test_archive_out_needs_an_empty_or_own_folder_and_never_overwrites_foreign_files(
    publication: Path, tmp_path: Path
) -> None:
    site = tmp_path / "www"
    site.mkdir()
    (site / "index.html").write_text("<h1>someone else's site</h1>")
    one_line_error(newsletter(publication, "archive", "--out", str(site)), "not empty")
    forced = newsletter(publication, "archive", "--out", str(site), "--force")
    one_line_error(forced, "index.html", "not written by `newsletter archive`")
    assert (site / "index.html").read_text() == "<h1>someone else's site</h1>"
    assert sorted(p.name for p in site.iterdir()) == ["index.html"]
    # its own folder: built, then rebuilt without --force
    own = tmp_path / "own"
    assert newsletter(publication, "archive", "--out", str(own)).returncode == 0
    again = newsletter(publication, "archive", "--out", str(own))
    assert again.returncode == 0, again.stderr
