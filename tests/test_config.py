"""newsletter.yaml and NEWSLETTER_* overrides: validated, and wrong values named by key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.settings import Config

ERROR_LINE = re.compile(r"^error: (?P<where>.+?)(?::(?P<line>\d+))?: (?P<rest>.*)$")


REQUIRED_LINES = {
    "from": 'from: "Letter <news@letter.test>"',
    "postal_address": "postal_address: 1 High St",
    "base_url": "base_url: https://letter.test/",
}


def set_yaml(root: Path, text: str) -> Path:
    """Write newsletter.yaml; the required settings `text` lacks go after it (same lines)."""
    missing = [line for key, line in REQUIRED_LINES.items() if f"\n{key}:" not in "\n" + text]
    path = root / "newsletter.yaml"
    path.write_text(text + "".join(f"{line}\n" for line in missing), encoding="utf-8")
    return path


def append_yaml(root: Path, text: str) -> Path:
    path = root / "newsletter.yaml"
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")
    return path


def check_fails(root: Path, env: dict[str, str] | None = None) -> re.Match[str]:
    code, stdout, stderr = run_cli(root, "check", env=env)
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    match = ERROR_LINE.match(lines[0])
    assert match, lines[0]
    return match


def test_sample_config_loads() -> None:
    root = Path(__file__).resolve().parent.parent
    config = load_config(root, environ={})
    assert config.name == "Leader Notes"
    assert config.sender == "Leader Notes <news@example.com>"
    assert config.base_url.endswith("/")
    assert config.schedule.weekday == "tuesday"
    assert config.delivery.smtp.port == 25
    assert config.inbox.imap.security == "ssl"


MINIMAL = (
    'from: "Letter <news@letter.test>"\npostal_address: 1 High St\nbase_url: https://letter.test/\n'
)


def test_only_the_identity_is_required(tmp_path: Path) -> None:
    set_yaml(tmp_path, MINIMAL)
    config = load_config(tmp_path, environ={})
    assert config == Config(
        root=tmp_path,
        sender="Letter <news@letter.test>",
        postal_address="1 High St",
        base_url="https://letter.test/",
    )


def test_a_folder_without_newsletter_yaml_is_not_a_publication(tmp_path: Path) -> None:
    for command in (["check"], ["status"], ["subscribers", "list"]):
        code, stdout, stderr = run_cli(tmp_path, *command)
        assert code == 2, (command, stdout, stderr)
        assert stderr == (
            f"error: {tmp_path}: not a publication: no newsletter.yaml; run `newsletter init`\n"
        )
    assert list(tmp_path.iterdir()) == []  # `status` no longer creates subscribers/ there


@pytest.mark.parametrize("key", ["from", "postal_address", "base_url"])
def test_identity_settings_have_no_silent_default(tmp_path: Path, key: str) -> None:
    kept = [line for k, line in REQUIRED_LINES.items() if k != key]
    path = tmp_path / "newsletter.yaml"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    match = check_fails(tmp_path)
    assert match["where"] == str(path)
    assert match["rest"].startswith(f"{key}: required setting is missing")
    # The environment may give it (a deployment's override).
    values = {"from": "L <n@letter.test>", "postal_address": "x", "base_url": "https://l.test/"}
    env = {f"NEWSLETTER_{key.upper()}": values[key]}
    code, stdout, stderr = run_cli(tmp_path, "check", env=env)
    assert code == 0, stdout + stderr


def test_a_misspelt_variable_names_the_closest_setting(publication: Path) -> None:
    match = check_fails(publication, env={"NEWSLETTER_DELIVRY__TRANSPORT": "smtp"})
    assert match["where"] == "$NEWSLETTER_DELIVRY__TRANSPORT"
    assert (
        match["rest"]
        == "unknown environment variable; did you mean NEWSLETTER_DELIVERY__TRANSPORT?"
    )
    match = check_fails(publication, env={"NEWSLETTER_SMTP_PASWORD": "x"})
    assert "did you mean NEWSLETTER_SMTP_PASSWORD?" in match["rest"]


def test_the_secrets_the_config_names_are_known(publication: Path) -> None:
    append_yaml(publication, "\n")
    text = (publication / "newsletter.yaml").read_text()
    (publication / "newsletter.yaml").write_text(
        text.replace("password_env: NEWSLETTER_SMTP_PASSWORD", "password_env: NEWSLETTER_RELAY_PW")
    )
    env = {
        "NEWSLETTER_RELAY_PW": "secret",
        "NEWSLETTER_WEB_SECRET": "s",
        "NEWSLETTER_IMAP_PASSWORD": "p",
        "NEWSLETTER_DKIM_KEY": "/nonexistent.pem",
        "NEWSLETTER_ROOT": str(publication),
    }
    code, stdout, stderr = run_cli(publication, "check", env=env)
    assert code == 0, stdout + stderr
    # The default name is no longer a secret once the config names another.
    match = check_fails(publication, env={"NEWSLETTER_SMTP_PASSWORD": "x"})
    assert match["where"] == "$NEWSLETTER_SMTP_PASSWORD"


def test_check_warns_about_bulk_sender_rules_with_smtp(tmp_path: Path) -> None:
    set_yaml(tmp_path, MINIMAL + "delivery: {transport: smtp}\n")
    code, stdout, stderr = run_cli(tmp_path, "check")
    assert code == 0, stderr
    assert "dkim: not configured" in stdout and "web.public_url: not configured" in stdout
    set_yaml(
        tmp_path,
        MINIMAL
        + "delivery: {transport: smtp}\nweb: {public_url: https://letter.test/web/}\n"
        + "dkim: {selector: s1, domain: letter.test}\n",
    )
    code, stdout, _ = run_cli(tmp_path, "check")
    assert "not configured" not in stdout


def test_config_is_frozen(tmp_path: Path) -> None:
    set_yaml(tmp_path, MINIMAL)
    config = load_config(tmp_path, environ={})
    with pytest.raises(AttributeError):
        config.name = "Other"  # type: ignore[misc]


def test_unknown_top_level_key_lists_the_known_ones(publication: Path) -> None:
    path = append_yaml(publication, "colour: blue\n")
    match = check_fails(publication)
    assert match["where"] == str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert match["line"] == str(lines.index("colour: blue") + 1)
    assert match["rest"].startswith("colour: unknown setting; expected one of: ")
    for known in ("base_url", "delivery", "from", "reply_to", "schedule", "timezone"):
        assert known in match["rest"]


def test_unknown_nested_key_names_the_dotted_path(publication: Path) -> None:
    path = set_yaml(publication, "name: X\ndelivery:\n  smtp:\n    hots: mail.example.com\n")
    match = check_fails(publication)
    assert match["where"] == str(path)
    assert match["line"] == "4"
    assert match["rest"].startswith("delivery.smtp.hots: unknown setting")
    assert "host" in match["rest"] and "port" in match["rest"]


@pytest.mark.parametrize(
    ("text", "line", "key", "expected"),
    [
        ("name: X\ndelivery:\n  smtp:\n    port: twenty-five\n", 4, "delivery.smtp.port",
         "expected a whole number, got str 'twenty-five'"),
        ("name: X\ndelivery:\n  smtp:\n    port: true\n", 4, "delivery.smtp.port",
         "expected a whole number"),
        ("name: [a, b]\n", 1, "name", "expected text, got list"),
        ("schedule: every month\n", 1, "schedule", "expected a mapping"),
        ("delivery:\n  transport: pigeon\n", 2, "delivery.transport",
         "expected one of file | smtp, got 'pigeon'"),
        ("base_url: example.com/news\n", 1, "base_url", "expected an http(s) URL ending in '/'"),
        ("schedule: {weekday: caturday}\n", 1, "schedule.weekday", "expected a weekday name"),
        ("schedule:\n  time: '25:00'\n", 2, "schedule.time", "expected HH:MM"),
        ("schedule:\n  nth: 0\n", 2, "schedule.nth", "expected 1..5"),
        ("name: X\nfrom: Leader Notes\n", 2, "from", "expected an address like"),
        ("reply_to: news at example\n", 1, "reply_to", "expected an address like"),
        ("name: X\nname: Y\n", 2, "name", "duplicate key (also on line 1)"),
        # DKIM's names go into the DKIM-Signature header and DNS; a left-out one: its section
        ("dkim: {selector: 's1; x=y', domain: example.com}\n", 1, "dkim.selector",
         "expected a DNS name like news2026 or example.com, got 's1; x=y'"),
        ("dkim: {selector: s1, domain: exa mple.com}\n", 1, "dkim.domain", "expected a DNS name"),
        ("dkim:\n  selector: s1\n  domain: example.com\n  ed25519: {private_key_env: K}\n", 4,
         "dkim.ed25519.selector", "expected a DNS name like news2026 or example.com, got ''"),
        ("dkim:\n  domain: example.com\n", 1, "dkim.selector", "got ''"),
        ("dkim: {selector: s1, domain: example.com, canonicalization: loose}\n", 1,
         "dkim.canonicalization", "expected one of relaxed/relaxed | relaxed/simple"),
    ],
)  # fmt: skip
def test_wrong_type_or_value_names_key_and_line(
    publication: Path, text: str, line: int, key: str, expected: str
) -> None:
    path = set_yaml(publication, text)
    match = check_fails(publication)
    assert match["where"] == str(path)
    assert match["line"] == str(line)
    assert match["rest"].startswith(f"{key}: ")
    assert expected in match["rest"]


def test_bad_timezone(publication: Path) -> None:
    path = set_yaml(publication, "name: X\ntimezone: Mars/Olympus_Mons\n")
    match = check_fails(publication)
    assert match["where"] == str(path)
    assert match["line"] == "2"
    assert match["rest"].startswith("timezone: unknown time zone 'Mars/Olympus_Mons'")


def test_malformed_config_yaml(publication: Path) -> None:
    path = set_yaml(publication, "name: X\nschedule: {weekday: tuesday\nfrom: y\n")
    match = check_fails(publication)
    assert match["where"] == str(path)
    assert match["line"] in ("2", "3")
    assert "malformed YAML" in match["rest"]


def test_config_not_a_mapping(publication: Path) -> None:
    path = publication / "newsletter.yaml"
    path.write_text("- name\n- from\n", encoding="utf-8")
    match = check_fails(publication)
    assert match["where"] == str(path)
    assert match["line"] == "1"
    assert "expected a mapping" in match["rest"]


def test_non_utf8_config(publication: Path) -> None:
    (publication / "newsletter.yaml").write_bytes(b"name: Caf\xe9\n")
    code, _, stderr = run_cli(publication, "check")
    assert code == 2
    assert stderr.count("\n") == 1
    assert stderr.startswith(f"error: {publication / 'newsletter.yaml'}: not UTF-8")


def test_env_override_wins_over_the_file(publication: Path) -> None:
    assert "port: 25" in (publication / "newsletter.yaml").read_text(encoding="utf-8")
    env = {
        "NEWSLETTER_DELIVERY__SMTP__PORT": "2525",
        "NEWSLETTER_NAME": "Env Notes",
        "NEWSLETTER_DELIVERY__SMTP__MAX_PER_SECOND": "12.5",
        "NEWSLETTER_DELIVERY__VERP": "no",
        "NEWSLETTER_DELIVERY__SMTP__USERNAME": "null",
        "NEWSLETTER_WEB__PUBLIC_URL": "https://news.example.com",
        # Not settings: the root and secrets share the prefix and must be ignored.
        "NEWSLETTER_ROOT": "/elsewhere",
        "NEWSLETTER_SMTP_PASSWORD": "secret",
    }
    config = load_config(publication, environ=env)
    assert config.delivery.smtp.port == 2525
    assert config.delivery.smtp.host == "localhost"  # the file's neighbouring keys stay
    assert config.name == "Env Notes"
    assert config.delivery.smtp.max_per_second == 12.5
    assert config.delivery.verp is False
    assert config.delivery.smtp.username is None
    assert config.web.public_url == "https://news.example.com"


def test_env_override_through_the_cli(publication: Path) -> None:
    # A wrong value in the file is replaced by a good one from the environment.
    append_yaml(publication, "greeting_fallback: friend\n")
    text = (publication / "newsletter.yaml").read_text(encoding="utf-8")
    (publication / "newsletter.yaml").write_text(
        text.replace("timezone: Europe/London", "timezone: Nowhere/Atlantis"), encoding="utf-8"
    )
    assert run_cli(publication, "check").code == 2
    code, stdout, stderr = run_cli(publication, "check", env={"NEWSLETTER_TIMEZONE": "UTC"})
    assert code == 0, stderr
    assert "0 error(s)" in stdout


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NEWSLETTER_DELIVERY__SMTP__PORT", "twenty", "delivery.smtp.port: expected a whole"),
        ("NEWSLETTER_DELIVERY__VERP", "maybe", "delivery.verp: expected true or false"),
        ("NEWSLETTER_DELIVERY__TRANSPORT", "fax", "delivery.transport: expected one of file"),
        ("NEWSLETTER_DELIVERY__SMTP__PROT", "25", "delivery.smtp.prot: unknown setting"),
        ("NEWSLETTER_SCHEDULE__NTH", "1.5", "schedule.nth: expected a whole number"),
    ],
)
def test_bad_env_value_is_named_by_its_variable(
    publication: Path, variable: str, value: str, expected: str
) -> None:
    match = check_fails(publication, env={variable: value})
    assert match["where"] == f"${variable}"
    assert match["line"] is None
    assert match["rest"].startswith(expected)


def test_env_value_for_a_mapping_key_is_an_error(publication: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(publication, environ={"NEWSLETTER_DELIVERY__SMTP": "localhost"})
    assert caught.value.field == "delivery.smtp"
    assert caught.value.path == "$NEWSLETTER_DELIVERY__SMTP"
    assert caught.value.line is None
    assert "expected a mapping" in caught.value.message
