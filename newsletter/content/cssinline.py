"""premailer with each `<style>` block parsed once per process, not once per issue.

cssutils parses and validates every declaration of a stylesheet: ~75% of `newsletter check`'s
time went there, for the same template CSS in every issue. `SheetCachingPremailer` keeps what
premailer derives from one block (the rules it inlines, the `@media`/pseudo-class rules it
leaves in `<style>`, already serialised, and the warnings cssutils gave) in a small cache keyed
by the block's text, so an edited stylesheet is parsed afresh. premailer's own parse cache is
not used: it hands out one mutable cssutils sheet to every caller (and premailer writes into
it when it serialises the `@media` rules), and a hit loses the stylesheet's warnings, which
`check` must report for every issue. Only premailer's own steps run on a miss, so the output
is the same text as without the cache (tests/test_render.py checks both ways).

Loaded when an issue is rendered, like premailer itself (a fast `send` start).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from premailer import Premailer

# Stylesheets kept: a publication has one email template; a long-running process that sees the
# template edited, or several publications, still holds only this many (each ~100 KB parsed).
MAX_SHEETS = 16

_Rule = tuple[tuple[int, ...], str, str]  # (specificity, selector, declarations): premailer's


@dataclass(frozen=True)
class _Sheet:
    rules: tuple[_Rule, ...]
    leftover: str | None  # the `<style>` text premailer keeps; None: it drops the block
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Serialised:
    """Stands in premailer's leftover list for rules already turned into text."""

    text: str


_sheets: OrderedDict[tuple[Any, ...], _Sheet] = OrderedDict()
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every parsed stylesheet (tests compare cached with uncached output)."""
    with _lock:
        _sheets.clear()


class SheetCachingPremailer(Premailer):  # type: ignore[misc]  # premailer has no types
    """`Premailer` whose per-`<style>` parse is cached; `warnings` receives cssutils' warnings
    for each block, as a fresh parse would log them, on a hit as on a miss."""

    def __init__(self, html: str, *, warnings: list[str], **options: Any) -> None:
        super().__init__(html, **options)
        self._warnings = warnings

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[Any], list[Any]]:
        if not css_body:
            return [], []
        # Everything _parse_style_rules reads besides its arguments is part of the key.
        key = (css_body, ruleset_index, self.disable_validation, self.strip_important,
               self.exclude_pseudoclasses, self.include_star_selectors)  # fmt: skip
        with _lock:
            sheet = _sheets.get(key)
            if sheet is not None:
                _sheets.move_to_end(key)
        if sheet is None:
            seen = len(self._warnings)  # cssutils logs to the caller's handler as it parses
            rules, leftover = super()._parse_style_rules(css_body, ruleset_index)
            # Serialised now, while the parsed rules are this call's own: premailer marks every
            # property `!important` in place as it serialises them.
            text = super()._css_rules_to_string(leftover) if leftover else None
            sheet = _Sheet(tuple(rules), text, tuple(self._warnings[seen:]))
            with _lock:
                _sheets[key] = sheet
                while len(_sheets) > MAX_SHEETS:
                    _sheets.popitem(last=False)
        else:
            self._warnings.extend(sheet.warnings)
        leftover_out = [] if sheet.leftover is None else [_Serialised(sheet.leftover)]
        return list(sheet.rules), leftover_out

    def _css_rules_to_string(self, rules: list[Any]) -> str:
        if len(rules) == 1 and isinstance(rules[0], _Serialised):
            return rules[0].text
        text: str = super()._css_rules_to_string(rules)
        return text
