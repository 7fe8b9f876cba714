"""Issue numbers: fixed once readers have seen them, never renumbered afterwards.

An issue's number is fixed (recorded in the store) the first time it is sent or listed in the
archive. Ready issues whose number is not fixed yet continue the sequence in date order after
the fixed ones; a `number:` in the front-matter is honoured when it is free. Drafts have no
number: they may never go out, and a draft must not shift the numbers of the issues around it.

Pure functions of the issues and the fixed numbers; the store keeps the fixed ones
(`issue_numbers`), `newsletter.content.publication` brings the two together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # issues.py numbers what it loads with this module
    from newsletter.content.issues import Issue


@dataclass(frozen=True)
class Clash:
    """A `number:` that could not be honoured, and who holds that number."""

    issue: Issue
    number: int
    holder: str  # the slug holding the number (the issue itself: its number is already fixed)
    holder_fixed: bool  # the holder's number is fixed: `check` calls this an error

    @property
    def message(self) -> str:
        if self.holder == self.issue.slug:
            return (
                f"number: {self.number} is ignored: this issue's number was fixed as "
                f"No. {self.issue.number} when it was first sent or archived"
            )
        if self.holder_fixed:
            return (
                f"number: {self.number} is already the fixed number of {self.holder} (sent or "
                "archived, so it never changes); remove `number:` or choose a free one"
            )
        return (
            f"number: {self.number} is also asked for by {self.holder} (earlier); this issue "
            f"takes No. {self.issue.number} instead"
        )


def assign_numbers(
    issues: Sequence[Issue], fixed: Mapping[str, int]
) -> tuple[list[Issue], list[Clash]]:
    """Every issue with its number (None for drafts), in the given order, and the clashes."""
    ordered = sorted(issues, key=lambda i: (i.date, i.slug))
    taken = {number: slug for slug, number in fixed.items()}
    numbers: dict[str, int] = {}
    clashes: list[tuple[Issue, int, str]] = []
    for issue in ordered:
        wanted = issue.number_requested
        if issue.slug in fixed:
            numbers[issue.slug] = fixed[issue.slug]
            if wanted is not None and wanted != fixed[issue.slug]:
                clashes.append((issue, wanted, issue.slug))
        elif wanted is not None:
            holder = taken.get(wanted)
            if holder is not None and holder != issue.slug:
                clashes.append((issue, wanted, holder))
            elif issue.is_ready:
                taken[wanted] = issue.slug
                numbers[issue.slug] = wanted
    counter = max(fixed.values(), default=0)
    for issue in ordered:
        if not issue.is_ready or issue.slug in fixed:
            continue
        if issue.slug in numbers:  # an honoured `number:` moves the sequence on
            counter = max(counter, numbers[issue.slug])
            continue
        counter += 1
        while counter in taken:
            counter += 1
        taken[counter] = issue.slug
        numbers[issue.slug] = counter
    numbered = {
        i.slug: replace(i, number=numbers.get(i.slug) if i.is_ready or i.slug in fixed else None)
        for i in issues
    }
    found = [
        Clash(numbered[issue.slug], number, holder, holder in fixed)
        for issue, number, holder in clashes
    ]
    return [numbered[i.slug] for i in issues], found


def legacy_numbers(issues: Sequence[Issue]) -> dict[str, int]:
    """The numbers issues showed before numbers were fixed (drafts counted, date order, an
    explicit `number:` always won): what an upgraded store records for issues already sent."""
    numbers: dict[str, int] = {}
    previous = 0
    for issue in sorted(issues, key=lambda i: (i.date, i.slug)):
        previous = issue.number_requested or previous + 1
        numbers[issue.slug] = previous
    return numbers
