"""Loading newsletter.yaml: every key overridable from the environment, converted by its
type and validated into the frozen `Config` of settings.py.

`NEWSLETTER_DELIVERY__SMTP__PORT=2525` sets `delivery.smtp.port`; the environment wins over the
file. Secrets never live here: the file names the environment variable that holds them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from newsletter.configcheck import (
    NO_PUBLICATION,
    check_variables,
    require_settings,
    setting_variables,
)
from newsletter.errors import ConfigError
from newsletter.settings import (
    WEEKDAYS,
    ArchiveConfig,
    Config,
    DeliveryConfig,
    DkimConfig,
    Ed25519Config,
    ImapConfig,
    InboxConfig,
    ScheduleConfig,
    SmtpConfig,
    WebConfig,
)
from newsletter.yamlio import KeyPath, LocatedYaml, load_located

# The settings' classes live in settings.py; they stay importable from here, where they were
# defined before, so a module may import them with load_config in one line.
__all__ = [
    "CONFIG_FILE",
    "ENV_PREFIX",
    "WEEKDAYS",
    "ArchiveConfig",
    "Config",
    "DeliveryConfig",
    "DkimConfig",
    "Ed25519Config",
    "ImapConfig",
    "InboxConfig",
    "ScheduleConfig",
    "SmtpConfig",
    "WebConfig",
    "load_config",
    "store_problem",
]

CONFIG_FILE = "newsletter.yaml"
# A DKIM selector or domain: dot-separated labels of letters, digits, hyphens (and the
# underscores some providers' selectors have), each starting and ending with a letter or digit.
_DNS_NAME = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*"
)
ENV_PREFIX = "NEWSLETTER_"


def load_config(root: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read `root/newsletter.yaml` plus the environment.

    The file must exist and name `from`, `postal_address` and `base_url`; every other key has
    a default. A NEWSLETTER_* variable that is neither a setting nor a secret the config names
    is an error naming the closest known one.
    """
    environ = os.environ if environ is None else environ
    path = root / CONFIG_FILE
    if not path.exists():
        raise ConfigError(NO_PUBLICATION, path=root)
    text = _read_text(path)
    located = load_located(text, path=path, error=ConfigError)
    if located.data is None:
        located = LocatedYaml({}, {})
    elif not isinstance(located.data, dict):
        raise ConfigError("expected a mapping of settings at the top level", path=path, line=1)
    data: dict[str, Any] = dict(located.data)
    unknown = _apply_environment(data, environ)
    require_settings(data, path)
    config: Config = _build(Config, data, (), path, located, extra={"root": root})
    secrets = [config.delivery.smtp.password_env, config.inbox.imap.password_env]
    dkim = config.dkim or DkimConfig()
    secrets += [config.web.secret_env, dkim.private_key_env]
    secrets.append((dkim.ed25519 or Ed25519Config()).private_key_env)
    secrets.append("NEWSLETTER_STORE_PASSWORD")  # the PostgreSQL store's (newsletter.store)
    check_variables(unknown, setting_variables(Config), secrets)
    _validate(config, path, located)
    return config


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from None


def _yaml_keys(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls) if f.name != "root"}


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Put NEWSLETTER_* settings into `data`; returns the names that are no setting."""
    unknown = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        # Other NEWSLETTER_* variables (NEWSLETTER_ROOT, the secrets) are not settings:
        # checked once the config names its secrets.
        if parts[0] not in _yaml_keys(Config):
            unknown.append(name)
            continue
        target = data
        for part in parts[:-1]:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = {}
                target[part] = existing
            target = existing
        target[parts[-1]] = _EnvValue(name, raw)
    return unknown


@dataclass(frozen=True)
class _EnvValue:
    """A string from the environment, converted to the field's type when the config is built."""

    variable: str
    raw: str


def _build(
    cls: type,
    data: Any,
    path: KeyPath,
    file: Path,
    located: LocatedYaml,
    extra: dict[str, Any] | None = None,
) -> Any:
    dotted = ".".join(path) or "(top level)"
    if not isinstance(data, dict):
        # A NEWSLETTER_* variable naming a section is reported as that variable, not the file.
        line = None if isinstance(data, _EnvValue) else located.line_of(*path)
        raise ConfigError("expected a mapping", path=_where(data, file), line=line, field=dotted)
    known = _yaml_keys(cls)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = dict(extra or {})
    for key, value in data.items():
        key = str(key)
        keypath = (*path, key)
        if key not in known:
            raise ConfigError(
                f"unknown setting; expected one of: {', '.join(sorted(known))}",
                path=_where(value, file),
                line=located.line_of(*keypath),
                field=".".join(keypath),
            )
        f = known[key]
        kwargs[f.name] = _convert(hints[f.name], value, keypath, file, located)
    return cls(**kwargs)


def _where(value: Any, file: Path) -> Path | str:
    return f"${value.variable}" if isinstance(value, _EnvValue) else file


def _convert(hint: Any, value: Any, keypath: KeyPath, file: Path, located: LocatedYaml) -> Any:
    dotted = ".".join(keypath)
    line = located.line_of(*keypath)
    where = _where(value, file)
    if isinstance(value, _EnvValue):
        line = None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, keypath, file, located)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        is_null = value is None or (
            isinstance(value, _EnvValue) and value.raw.lower() in ("", "null")
        )
        if is_null and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, keypath, file, located)
    if origin is tuple:  # a YAML list, or comma-separated in the environment
        items = value.raw.split(",") if isinstance(value, _EnvValue) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(
                "expected a list, e.g. [editor@example.com]", path=where, line=line, field=dotted
            )
        return tuple(i.strip() for i in items if i.strip())
    if origin is Literal:
        raw = value.raw if isinstance(value, _EnvValue) else value
        if raw not in args:
            choices = " | ".join(str(a) for a in args)
            raise ConfigError(
                f"expected one of {choices}, got {raw!r}", path=where, line=line, field=dotted
            )
        return raw
    expected = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    if isinstance(value, _EnvValue):
        value = _parse_env(value.raw, hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # `port: 25` style numbers where text is fine (a postal code)
    if hint is str and isinstance(value, str):
        _refuse_control_characters(value, dotted, where, line)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        # Never echo a huge value: the error is one short line.
        got = "nothing" if value is None else f"{type(value).__name__} {_short(value)}"
        raise ConfigError(
            f"expected {expected.get(hint, hint.__name__)}, got {got}",
            path=where,
            line=line,
            field=dotted,
        )
    return value


# Free text that may span lines (an address block); everything else is one line.
_MULTILINE_KEYS = frozenset({"postal_address", "tagline"})


def _refuse_control_characters(
    value: str, dotted: str, where: Path | str, line: int | None
) -> None:
    """CR/LF and other control characters: in `from`, `reply_to`, hosts, folders... they
    would inject headers or protocol commands (SMTP, IMAP), so no setting may hold them."""
    allowed = "\n\t" if dotted in _MULTILINE_KEYS else ""
    for index, char in enumerate(value):
        if (
            char < " " or "\x7f" <= char <= "\x9f" or char in "\u2028\u2029"
        ) and char not in allowed:
            raise ConfigError(
                f"control character {char!r} at position {index + 1} is not allowed here",
                path=where,
                line=line,
                field=dotted,
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_env(raw: str, hint: Any) -> Any:
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return raw
    for kind in (int, float):
        if hint is kind:
            try:
                return kind(raw)
            except ValueError:
                return raw
    return raw


def store_problem(value: str) -> str | None:
    """Why a `store:` value cannot work, or None."""
    if value == "sqlite" or (value.startswith("sqlite:") and len(value) > len("sqlite:")):
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        return f"expected sqlite, sqlite:PATH or postgresql://user@host/db, got {value!r}"
    if parts.password is not None:
        return "the password goes in $NEWSLETTER_STORE_PASSWORD, not in the file"
    if not parts.path.strip("/") or any(c.isspace() for c in value):
        return f"expected postgresql://user@host/db with a database name, got {value!r}"
    return None


def _validate(config: Config, file: Path, located: LocatedYaml) -> None:
    """Checks beyond types: values that parse but cannot work."""

    def fail(message: str, *keypath: str, line: int | None = None) -> None:
        line = located.line_of(*keypath) if line is None else line
        raise ConfigError(message, path=file, line=line, field=".".join(keypath))

    if not config.base_url.startswith(("http://", "https://")) or not config.base_url.endswith("/"):
        fail("expected an http(s) URL ending in '/'", "base_url")
    try:
        zoneinfo.ZoneInfo(config.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail(f"unknown time zone {config.timezone!r} (expected e.g. Europe/London)", "timezone")
    if config.schedule.weekday.lower() not in WEEKDAYS:
        fail(f"expected a weekday name ({', '.join(WEEKDAYS)})", "schedule", "weekday")
    if not -5 <= config.schedule.nth <= 5 or config.schedule.nth == 0:
        fail("expected 1..5 (or -1 for the last one in the month)", "schedule", "nth")
    hour, _, minute = config.schedule.time.partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        fail(f"expected HH:MM, got {config.schedule.time!r}", "schedule", "time")
    if config.schedule.catch_up_days < 0:
        fail("expected 0 or more days", "schedule", "catch_up_days")
    addresses = [(("from",), config.sender), (("reply_to",), config.reply_to)]
    if config.bounce_address is not None:
        addresses.append((("bounce_address",), config.bounce_address))
    for keypath, value in addresses:
        _, address = parseaddr(value)
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain or any(c.isspace() for c in address):
            fail(f"expected an address like 'Name <news@example.com>', got {value!r}", *keypath)
    for address in config.test_recipients:
        if "@" not in address or any(c.isspace() or ord(c) < 32 for c in address):
            fail(f"expected addresses like editor@example.com, got {address!r}", "test_recipients")
        if "+" in local and keypath == ("bounce_address",):
            fail("expected an address without '+': the token goes there", *keypath)
    if config.delivery.smtp.connections < 1:
        fail("expected at least 1", "delivery", "smtp", "connections")
    if config.store is not None and (problem := store_problem(config.store)):
        fail(problem, "store")
    for key in ("relay_pause_after", "refusals_pause_after"):
        if getattr(config.delivery, key) < 1:
            fail("expected at least 1", "delivery", key)
    if config.max_issue_bytes < 1:
        fail("expected a size in bytes, at least 1", "max_issue_bytes")
    if config.web.public_url is not None and not config.web.public_url.startswith(
        ("http://", "https://")
    ):
        fail("expected an http(s) URL", "web", "public_url")
    action = config.archive.subscribe_action
    if action is not None and not action.startswith(("http://", "https://")):
        fail("expected an http(s) URL for the subscribe form", "archive", "subscribe_action")
    if config.dkim is not None:
        names: list[tuple[tuple[str, ...], str]] = [
            (("dkim", "selector"), config.dkim.selector),
            (("dkim", "domain"), config.dkim.domain),
        ]
        if config.dkim.ed25519 is not None:
            names.append((("dkim", "ed25519", "selector"), config.dkim.ed25519.selector))
        for where, name in names:  # each goes into the DKIM-Signature header and a DNS name
            if not _DNS_NAME.fullmatch(name):
                line = located.line_of(*where) or located.line_of(*where[:-1])  # left out
                expected = "expected a DNS name like news2026 or example.com"
                fail(f"{expected}, got {name!r}", *where, line=line)
