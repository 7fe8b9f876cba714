"""A publication's issues as commands see them: loaded, numbered from the store, and the
files that are broken kept apart, so one unfinished draft stops only what needs it.

`issues.py` parses one file at a time and `numbering.py` numbers; this module brings in the
numbers the store has fixed, and on the first run after an upgrade records the numbers that
already-sent issues showed under the old rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from newsletter.content.issues import Issue, find_issue, parse_issues
from newsletter.content.numbering import Clash, assign_numbers, legacy_numbers
from newsletter.errors import IssueError
from newsletter.settings import Config
from newsletter.store.store import open_store, store_exists


@dataclass(frozen=True)
class Publication:
    issues: list[Issue]  # the well-formed ones, by date, numbered
    broken: list[IssueError]  # one error per file that is not a usable issue
    clashes: list[Clash]  # `number:` values that could not be honoured
    fixed: dict[str, int]  # numbers fixed in the store

    def find(self, config: Config, ref: str) -> Issue:
        """The issue ISSUE names; a broken file named so raises its own error."""
        stem = Path(ref).stem if ref.endswith(".md") else ref
        for error in self.broken:
            if error.path is not None and Path(error.path).stem == stem:
                raise error
        return find_issue(config, self.issues, ref)

    def warnings(self) -> list[str]:
        """One line per broken file, for commands that carry on without it."""
        return [f"warning: skipped, not a usable issue: {error}" for error in self.broken]


def load_publication(config: Config, today: dt.date) -> Publication:
    """Every issue in content/ as of `today`, numbered with the store's fixed numbers.

    Reads the store only when its database exists (looking never creates one).
    """
    issues, broken = parse_issues(config, today)
    fixed: dict[str, int] = {}
    if store_exists(config):
        with open_store(config) as store:
            fixed = store.numbers.fixed_numbers()
            unrecorded = [slug for slug in store.sends.sent_slugs() if slug not in fixed]
            if unrecorded:
                # Sent before numbers were fixed: keep what readers saw then.
                legacy = legacy_numbers(issues)
                shown = {slug: legacy[slug] for slug in unrecorded if slug in legacy}
                fixed = store.numbers.fix_numbers(shown, how="upgrade")
    numbered, clashes = assign_numbers(issues, fixed)
    return Publication(numbered, broken, clashes, fixed)
