"""The unsubscribe endpoints: a page with one button, the one-click POST (RFC 8058), and an
undo that works only for a few minutes and only with a signed proof.

    GET  /unsubscribe/<token>        a page with one button; never changes anything (mail
                                     scanners prefetch links)
    POST /unsubscribe/<token>        unsubscribes at once, idempotent, 200; the RFC 8058 body
                                     `List-Unsubscribe=One-Click` or the page's button
    POST /unsubscribe/<token>/undo   re-activates only if this token unsubscribed through the
                                     link in the last `web.undo_minutes` (a signed proof)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from newsletter.config import Config
from newsletter.store.records import Subscriber
from newsletter.store.subscribers import Subscribers
from newsletter.web.http import Pages, Request, Response
from newsletter.web.tokens import TOKEN, Signer, mask, same


class Unsubscribe:
    def __init__(
        self,
        config: Config,
        subscribers: Subscribers,
        pages: Pages,
        signer: Signer,
        clock: Callable[[], datetime],
    ) -> None:
        self.config, self.subscribers, self.pages = config, subscribers, pages
        self.signer, self.clock = signer, clock

    def _reader(self, token: str) -> Subscriber | None:
        if not TOKEN.fullmatch(token):
            return None
        reader = self.subscribers.get_by_token(token)
        if reader is None or not same(reader.token, token.lower()):
            return None
        return reader

    def page(self, request: Request, *, token: str) -> Response:
        reader = self._reader(token)
        if reader is None:
            return self.pages.not_found()
        return self.pages.page(
            200, "unsubscribe.html", email=mask(reader.email), reader_status=reader.status
        )

    def unsubscribe(self, request: Request, *, token: str) -> Response:
        reader = self._reader(token)
        if reader is None:
            return self.pages.not_found()
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        how = "one-click (RFC 8058)" if one_click else "unsubscribe page"
        changed = self.subscribers.unsubscribe(reader, source="link", detail=how)
        undo = changed or reader.status == "unsubscribed"
        return self.pages.page(
            200,
            "unsubscribed.html",
            email=mask(reader.email),
            token=token,
            undo_proof=self._undo_proof(token) if undo else None,
        )

    def _undo_proof(self, token: str) -> str:
        stamp = str(int(self.clock().timestamp()))
        return f"{stamp}.{self.signer.sign('undo', token, stamp)}"

    def undo(self, request: Request, *, token: str) -> Response:
        reader = self._reader(token)
        if reader is None:
            return self.pages.not_found()
        stamp, _, mac = request.form.get("proof", "").partition(".")
        now = self.clock()
        window = timedelta(minutes=self.config.web.undo_minutes)
        fresh = stamp.isdigit() and now - window <= datetime.fromtimestamp(int(stamp), UTC) <= now
        genuine = same(mac, self.signer.sign("undo", token, stamp))
        if (
            fresh
            and genuine
            and self.subscribers.undo_unsubscribe(
                reader, since=now - window, detail="undo on the unsubscribe page"
            )
        ):
            return self.pages.message(200, "Welcome back", "You are subscribed again, as before.")
        return self.pages.message(
            409,
            "This can no longer be undone",
            f"Undo works for {self.config.web.undo_minutes} minutes after unsubscribing."
            " You can sign up again from the archive.",
        )
