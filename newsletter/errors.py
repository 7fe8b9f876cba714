"""The one exception root. Everything a user can cause derives from NewsletterError.

The CLI turns these into a single line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """A user-facing error: bad input, bad configuration, bad usage."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigError(NewsletterError):
    """newsletter.yaml or a NEWSLETTER_* environment variable is wrong."""


class IssueError(NewsletterError):
    """An issue file in content/ cannot be loaded."""


class TemplateError(NewsletterError):
    """A template in templates/ cannot be rendered."""


class StoreError(NewsletterError):
    """The subscriber store refused an operation (bad address, suppressed, locked...)."""


class DeliveryError(NewsletterError):
    """A send cannot start or must stop (refused content, unrecordable result...)."""


class InboxError(NewsletterError):
    """A mailbox cannot be read."""
