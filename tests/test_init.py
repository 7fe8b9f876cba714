"""`newsletter init` and the templates that ship in the package (issue 15, parts 1-2)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from newsletter.config import load_config
from newsletter.content.templatesource import default_templates_dir, template_file

IN_CI = os.environ.get("CI") == "true"
FLAGS = (
    "--name", "My Letter",
    "--from", "My Letter <news@letter.test>",
    "--base-url", "https://letter.test/archive/",
    "--postal-address", "1 High St, Town",
)  # fmt: skip


def init(tmp_path: Path, *extra: str, target: str = "pub") -> tuple[Path, int, str, str]:
    code, out, err = run_cli(tmp_path, "init", str(tmp_path / target), *FLAGS, *extra)
    return tmp_path / target, code, out, err


def test_package_ships_every_template_of_the_sample() -> None:
    shipped = sorted(p.relative_to(default_templates_dir()) for p in
                     default_templates_dir().rglob("*") if p.is_file())  # fmt: skip
    sample = sorted(p.relative_to(REPO / "templates") for p in
                    (REPO / "templates").rglob("*") if p.is_file())  # fmt: skip
    assert shipped == sample
    for name in shipped:  # the sample's folder is an override example: the same files today
        assert (default_templates_dir() / name).read_bytes() == (
            REPO / "templates" / name
        ).read_bytes()


def test_init_writes_a_publication_that_checks_and_builds(tmp_path: Path) -> None:
    root, code, out, err = init(tmp_path)
    assert code == 0, err
    assert not (root / "templates").exists()  # the package's defaults serve it
    drafts = list((root / "content").glob("*.md"))
    # First Tuesday after the pinned 2026-11-20 is 2026-12-01.
    assert [p.name for p in drafts] == ["2026-12-welcome-to-the-first-issue.md"]
    assert "date: 2026-12-01" in drafts[0].read_text()
    assert (root / "subscribers").is_dir()
    ignored = (root / ".gitignore").read_text()
    assert "subscribers/*.db" in ignored
    assert "subscribers/.send-*" in ignored  # a send's lock and claim journal (servers' replies)
    assert "send --due" in (root / "deploy" / "crontab").read_text()
    config = load_config(root)
    assert (config.sender, config.reply_to) == ("My Letter <news@letter.test>", "news@letter.test")
    assert config.timezone == "UTC" and config.schedule.weekday == "tuesday"
    assert config.dkim is None and config.web.public_url is None
    assert "wrote newsletter.yaml" in out
    code, out, err = run_cli(root, "check")
    assert code == 0, out + err
    code, out, err = run_cli(root, "build", "--out", str(tmp_path / "site"))
    assert code == 0, err
    assert (tmp_path / "site" / "archive" / "style.css").exists() or any(
        (tmp_path / "site").rglob("style.css")
    )


def test_init_takes_every_answer_as_a_flag(tmp_path: Path) -> None:
    root, code, _, err = init(
        tmp_path,
        "--reply-to", "letters@letter.test",
        "--timezone", "Europe/Paris",
        "--schedule", "2 thursday 07:30",
        "--dkim-selector", "s2027",
        "--web-url", "https://letter.test/web/",
    )  # fmt: skip
    assert code == 0, err
    config = load_config(root)
    assert config.reply_to == "letters@letter.test" and config.timezone == "Europe/Paris"
    assert (config.schedule.nth, config.schedule.weekday, config.schedule.time) == (
        2, "thursday", "07:30"
    )  # fmt: skip
    assert config.dkim is not None
    assert (config.dkim.selector, config.dkim.domain) == ("s2027", "letter.test")
    assert config.web.public_url == "https://letter.test/web/"
    # 2026-12-10 is the second Thursday of December, the first one after the pinned moment.
    assert [p.name[:7] for p in (root / "content").glob("*.md")] == ["2026-12"]
    assert "date: 2026-12-10" in next((root / "content").glob("*.md")).read_text()


def test_init_off_a_terminal_needs_the_required_answers(tmp_path: Path) -> None:
    code, _, err = run_cli(tmp_path, "init", str(tmp_path / "pub"), "--name", "X")
    assert code == 2
    assert "--from: required" in err and "Traceback" not in err
    assert not (tmp_path / "pub").exists()


def test_init_refuses_a_bad_answer_and_leaves_no_config(tmp_path: Path) -> None:
    root, code, _, err = init(tmp_path, "--timezone", "Mars/Olympus")
    assert code == 2 and "timezone" in err
    assert not (root / "newsletter.yaml").exists()


def test_init_refuses_a_non_empty_folder_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "notes.txt").write_text("mine")
    _, code, _, err = init(tmp_path)
    assert code == 2 and "not empty" in err and "--force" in err
    assert not (tmp_path / "pub" / "newsletter.yaml").exists()
    root, code, _, err = init(tmp_path, "--force")
    assert code == 0, err
    assert (root / "newsletter.yaml").exists() and (root / "notes.txt").read_text() == "mine"


def test_init_templates_copies_the_defaults(tmp_path: Path) -> None:
    root, code, _, err = init(tmp_path, "--templates")
    assert code == 0, err
    assert (root / "templates" / "email.html").read_bytes() == (
        default_templates_dir() / "email.html"
    ).read_bytes()
    assert (root / "templates" / "archive" / "style.css").exists()
    assert (root / "templates" / "web" / "unsubscribe.html").exists()


def test_one_override_file_wins_and_the_rest_come_from_the_package(tmp_path: Path) -> None:
    root, code, _, err = init(tmp_path)
    assert code == 0, err
    (root / "templates").mkdir()
    default_text = (default_templates_dir() / "email.txt").read_text()
    (root / "templates" / "email.txt").write_text("OVERRIDDEN TEXT PART\n" + default_text)
    config = load_config(root)
    assert template_file(config, "email.txt") == root / "templates" / "email.txt"
    assert template_file(config, "email.html") == default_templates_dir() / "email.html"
    code, _, err = run_cli(root, "build", "--out", str(tmp_path / "site"))
    assert code == 0, err
    texts = list((tmp_path / "site").rglob("*.txt"))
    assert texts and all(t.read_text().startswith("OVERRIDDEN TEXT PART") for t in texts)


def test_deploy_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing; CI installs systemd")
        pytest.skip("systemd-analyze is not installed")
    root, code, _, err = init(tmp_path)
    assert code == 0, err
    units = sorted(str(p) for p in (root / "deploy").glob("newsletter-*"))
    assert len(units) == 5  # send service+timer, inbox service+timer, serve service
    result = subprocess.run(
        [tool, "verify", *units], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "send --due" in (root / "deploy" / "newsletter-send.service").read_text()


def test_init_asks_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from newsletter.cli import init as cli_init
    from newsletter.cli import main

    monkeypatch.setattr(cli_init, "on_terminal", lambda: True)
    answers = "\n".join([
        "Asked Letter",                      # name
        "Asked <hello@asked.test>",          # from
        "",                                  # reply address: the From address
        "https://asked.test/letter/",        # base URL
        "2 Quay Road, Harbour",              # postal address
        "Europe/Dublin",                     # time zone
        "",                                  # schedule: the default
        "",                                  # DKIM selector: none
        "",                                  # one-click URL: none
    ]) + "\n"  # fmt: skip
    result = CliRunner().invoke(
        main, ["--root", str(tmp_path), "--now", "2026-11-20T12:00", "init",
               str(tmp_path / "pub")], input=answers, catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Publication name" in result.output and "Time zone [UTC]" in result.output
    config = load_config(tmp_path / "pub")
    assert (config.name, config.reply_to, config.timezone) == (
        "Asked Letter", "hello@asked.test", "Europe/Dublin"
    )  # fmt: skip
    assert config.postal_address == "2 Quay Road, Harbour" and config.dkim is None
