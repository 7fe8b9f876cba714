"""Complaints: ARF feedback reports (RFC 5965) and Amazon SES complaint notifications.

Mailbox providers' feedback loops send these when a reader presses "this is spam". The reader
is named by Original-Rcpt-To or Removal-Recipient, else by the enclosed message's To.
"""

from __future__ import annotations

from email import message_from_string
from email.message import Message
from email.utils import parseaddr

from newsletter.inbox.dsn import ses_notification_type
from newsletter.inbox.replytext import part_text


def parse_complaint(message: Message) -> tuple[str | None, str] | None:
    """(complaining reader, reason) for an ARF report or an SES complaint, else None."""
    ses = ses_notification_type(message)
    if ses is not None and ses[0] == "Complaint":
        complaint = ses[1].get("complaint")
        recipients = (
            complaint.get("complainedRecipients", []) if isinstance(complaint, dict) else []
        )
        address = recipients[0].get("emailAddress") if recipients else None
        kind = complaint.get("complaintFeedbackType", "") if isinstance(complaint, dict) else ""
        return (str(address).lower() if address else None, f"SES complaint {kind}".strip())
    report = next(
        (p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None
    )
    if report is None:
        return None
    fields = _report_fields(report)
    recipient = None
    for name in ("original-rcpt-to", "removal-recipient"):
        if fields.get(name):
            recipient = parseaddr(fields[name])[1].lower() or None
            break
    if recipient is None:
        enclosed = enclosed_headers(message)
        if enclosed is not None:
            recipient = parseaddr(str(enclosed.get("To", "")))[1].lower() or None
    return recipient, f"ARF feedback report: {fields.get('feedback-type', 'unknown')}"


def _report_fields(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    fields: dict[str, str] = {}
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                fields.update({k.lower(): str(v) for k, v in block.items()})
        return fields
    for line in part_text(part).splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


def enclosed_headers(message: Message) -> Message | None:
    """The headers of the message a report is about (message/rfc822 or text/rfc822-headers)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "text/rfc822-header"):
            return message_from_string(part_text(part))
    return None
