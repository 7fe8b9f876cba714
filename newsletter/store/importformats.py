"""Exports of other newsletter services, recognised by their columns, keeping readers' choices.

Coming from Mailchimp, Substack, Buttondown, listmonk, Ghost or Kit (ConvertKit), an
unsubscribed, cleaned or complaining reader must arrive suppressed, never active. Each service
says so in its own column and words; `detect` picks the service from the header row and its
`status` maps one row to our status, or to None for a row to leave out (an address that never
confirmed its subscription has given no consent to carry over).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

# The same as subscribers.Status (subscribers.py imports this module, so it is not imported).
Status = Literal["active", "unsubscribed", "bounced", "complained"]

# A row as header key (lower-case, "_" as space) -> cell.
Row = Mapping[str, str]
Outcome = tuple[str, Status | None]  # (the service's word for the row, our status or skip)

_TRUE = frozenset({"true", "1", "yes", "t"})


@dataclass(frozen=True)
class ExportFormat:
    service: str
    email_key: str
    status: Callable[[Row], Outcome]


def _lookup(
    column: str, table: Mapping[str, Status | None], default: Status | None
) -> Callable[[Row], Outcome]:
    def status(row: Row) -> Outcome:
        word = row.get(column, "").strip().lower()
        return word or "(empty)", table.get(word, default)

    return status


def _mailchimp(keys: set[str]) -> Callable[[Row], Outcome]:
    # Mailchimp exports each audience as three files with the same columns plus the event's:
    # subscribed_members, unsubscribed_members (UNSUB_TIME...), cleaned_members (CLEAN_TIME...).
    if "clean time" in keys:
        return lambda row: ("cleaned", "bounced")
    if "unsub time" in keys:
        return lambda row: ("unsubscribed", "unsubscribed")
    return lambda row: ("subscribed", "active")


def _substack(row: Row) -> Outcome:
    # active_subscription is about paid plans; email_disabled is whether mail goes out.
    if row.get("email disabled", "").strip().lower() in _TRUE:
        return "email_disabled", "unsubscribed"
    return "active", "active"


def _ghost(row: Row) -> Outcome:
    if row.get("subscribed to emails", "").strip().lower() in _TRUE:
        return "subscribed", "active"
    return "not subscribed to emails", "unsubscribed"


def detect(keys: list[str]) -> ExportFormat | None:
    """The service whose export has these header keys; None: a plain CSV."""
    have = set(keys)
    if "email address" in have and have & {"leid", "member rating", "euid"}:
        return ExportFormat("Mailchimp", "email address", _mailchimp(have))
    if {"email", "email disabled"} <= have:
        return ExportFormat("Substack", "email", _substack)
    if {"email", "subscribed to emails"} <= have:
        return ExportFormat("Ghost", "email", _ghost)
    if {"uuid", "email", "status", "attributes"} <= have:
        listmonk: dict[str, Status | None] = {
            "enabled": "active",
            "blocklisted": "unsubscribed",
            "disabled": None,  # listmonk mails them no more, yet they never unsubscribed
        }
        return ExportFormat("listmonk", "email", _lookup("status", listmonk, None))
    if "email" in have and have & {"subscriber type", "type"} and "creation date" in have:
        column = "subscriber type" if "subscriber type" in have else "type"
        buttondown: dict[str, Status | None] = {
            "unsubscribed": "unsubscribed",
            "removed": "unsubscribed",
            "undeliverable": "bounced",
            "complained": "complained",
            "unactivated": None,  # never confirmed
            "spammy": None,  # Buttondown's own verdict: a bot sign-up
        }
        return ExportFormat("Buttondown", "email", _lookup(column, buttondown, "active"))
    kit_email = "email address" if "email address" in have else "email"
    if kit_email in have and "state" in have:
        kit: dict[str, Status | None] = {
            "active": "active",
            "cancelled": "unsubscribed",
            "bounced": "bounced",
            "complained": "complained",
            "inactive": None,  # never confirmed
        }
        return ExportFormat("Kit", kit_email, _lookup("state", kit, None))
    return None
