"""What newsletter.yaml must hold, and which NEWSLETTER_* variables mean something.

A publication's identity (who mails, from where, where the archive lives) has no sensible
default: a silent `news@example.com` would go out to real readers. And a misspelt override
(`NEWSLETTER_DELIVRY__TRANSPORT`) silently ignored is a send through the wrong transport, so
every NEWSLETTER_* variable must be a setting, a secret the config names, or one of ours.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError

# Settings with no default: `newsletter init` asks for each.
REQUIRED = ("from", "postal_address", "base_url")
# NEWSLETTER_* variables that are not settings: the publication root, the --now clock, and
# where the tests find the peers' mail corpus.
NOT_SETTINGS = frozenset({"NEWSLETTER_ROOT", "NEWSLETTER_NOW", "NEWSLETTER_PEER_CORPUS"})
NO_PUBLICATION = "not a publication: no newsletter.yaml; run `newsletter init`"


def require_settings(data: Mapping[str, Any], path: Path) -> None:
    for key in REQUIRED:
        value = data.get(key)
        raw = getattr(value, "raw", value)  # a value from the environment
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ConfigError(
                "required setting is missing; set it in newsletter.yaml "
                "(`newsletter init` writes one)",
                path=path,
                field=key,
            )


def setting_variables(cls: type, prefix: str = "NEWSLETTER_") -> Iterator[str]:
    """Every NEWSLETTER_A__B variable a settings dataclass accepts."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "root":
            continue
        name = prefix + str(f.metadata.get("key", f.name)).upper()
        yield name
        inner = [a for a in (hints[f.name], *typing.get_args(hints[f.name])) if isinstance(a, type)]
        for kind in inner:
            if dataclasses.is_dataclass(kind):
                yield from setting_variables(kind, name + "__")


def check_variables(
    unknown: Iterable[str], settings: Iterable[str], secrets: Iterable[str]
) -> None:
    """`unknown`: NEWSLETTER_* names that matched no top-level setting."""
    allowed = set(secrets) | NOT_SETTINGS
    for name in sorted(unknown):
        if name in allowed:
            continue
        import difflib  # only to word the error

        known = sorted({*settings, *allowed})
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; it is no setting or known secret"
        raise ConfigError(f"unknown environment variable{hint}", path=f"${name}")
