"""The sign-up flow: a form, a pending sign-up with a confirmation mail, then the reader's
confirmation, which activates them and sends the welcome (double opt-in).

    GET  /subscribe, POST /subscribe email, first_name, honeypot `website`: a pending sign-up
                                     and a confirmation mail with an expiring link
    GET  /confirm/<token>, POST      a button; its POST activates and sends the welcome mail

No enumeration: a sign-up gets the same page (and, mail being queued, the same timing) whether
the address is new, active, suppressed or rate-limited per address.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from newsletter.config import Config
from newsletter.links import unsubscribe_mailto, unsubscribe_web_url
from newsletter.mail import webmail
from newsletter.store.addresses import InvalidAddress, clean_name, normalise_address
from newsletter.store.ratelimits import RateLimits
from newsletter.store.records import Signup
from newsletter.store.signups import Signups
from newsletter.store.subscribers import Subscribers
from newsletter.web.http import Pages, Request, Response
from newsletter.web.ratelimit import Limiter, RateLimiter, SharedRateLimiter
from newsletter.web.tokens import TOKEN, Signer, mask, same

if TYPE_CHECKING:  # jinja2 is imported when the first template is, not at start-up
    import jinja2

log = logging.getLogger("newsletter.web.app")
HOUR = 3600.0


class SignupFlow:
    def __init__(
        self,
        config: Config,
        subscribers: Subscribers,
        signups: Signups,
        *,
        base: str,
        pages: Pages,
        signer: Signer,
        clock: Callable[[], datetime],
        mail_env: jinja2.Environment,
        mail: webmail.MailQueue,
        archive_form: Callable[[Request], Response | None],
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.config, self.subscribers, self.signups = config, subscribers, signups
        self.pages, self.signer, self.clock = pages, signer, clock
        self.mail_env, self.mail = mail_env, mail
        self.archive_form = archive_form  # the archive's own sign-up page, when it has one
        self.base = base  # the public URL the confirmation link starts with, ending in "/"
        per_client, per_address = (
            config.web.subscribe_per_client_hour,
            config.web.subscribe_per_address_hour,
        )
        # Several processes share a server store: count there, so they allow the limit once.
        self.per_client: Limiter = (
            SharedRateLimiter(rate_limits, "client", per_client, HOUR)
            if rate_limits is not None
            else RateLimiter(per_client, HOUR)
        )
        self.per_address: Limiter = (
            SharedRateLimiter(rate_limits, "address", per_address, HOUR)
            if rate_limits is not None
            else RateLimiter(per_address, HOUR)
        )

    def form(self, request: Request) -> Response:
        """The archive's own sign-up page when it is served here (one look), else ours."""
        archive = self.archive_form(request)
        if archive is not None:
            return archive
        return self.pages.page(200, "subscribe.html", state="form")

    def subscribe(self, request: Request) -> Response:
        retry = self.per_client.hit(request.client)
        if retry is not None:
            response = self.pages.message(429, "Too many sign-ups", "Please try again later.")
            response.headers.append(("Retry-After", str(int(retry) + 1)))
            return response
        if request.form.get("website", "").strip():
            log.info("sign-up honeypot filled from %s", request.client)
            return self.pages.page(200, "subscribe.html", state="sent")
        try:
            address = normalise_address(request.form.get("email", "")[:320])
        except InvalidAddress:
            return self.pages.page(
                400,
                "subscribe.html",
                state="form",
                error="That does not look like an email address.",
            )
        first_name = clean_name(request.form.get("first_name") or None)
        if self.per_address.hit(address.key) is None and self._may_join(address.email):
            token = secrets.token_urlsafe(24)  # 192 bits
            expires = self.clock() + timedelta(hours=self.config.web.confirm_hours)
            self.signups.add_signup(
                address.email,
                first_name,
                token_hash=self.signer.sign("confirm", token),
                client_ip=request.client,
                expires_at=expires,
            )
            self.mail.submit(
                webmail.compose(
                    self.config,
                    self.mail_env,
                    webmail.CONFIRM_TEMPLATE,
                    to=address.email,
                    now=self.clock(),
                    context={
                        "first_name": first_name,
                        "confirm_url": f"{self.base}confirm/{token}",
                        "expires_hours": self.config.web.confirm_hours,
                    },
                )
            )
        return self.pages.page(200, "subscribe.html", state="sent")

    def _may_join(self, email: str) -> bool:
        """Active readers need nothing; bounced, complained and forgotten addresses are never
        re-activated from the web. An unsubscribed reader may come back: only by confirming."""
        existing = self.subscribers.get_by_email(email)
        if existing is None:
            return not self.subscribers.is_forgotten(email)
        return existing.status == "unsubscribed"

    def _signup(self, token: str) -> tuple[Signup | None, str]:
        if not TOKEN.fullmatch(token):
            return None, ""
        hashed = self.signer.sign("confirm", token)
        signup = self.signups.get_signup(hashed)
        if signup is None or not same(signup.token_hash, hashed):
            return None, ""
        return signup, hashed

    def confirm_page(self, request: Request, *, token: str) -> Response:
        signup, _ = self._signup(token)
        if signup is None:
            return self.pages.not_found()
        if signup.confirmed_at is None and signup.expires_at <= self.clock():
            return self.pages.expired()
        done = signup.confirmed_at is not None
        return self.pages.page(
            200, "confirm.html", state="done" if done else "ask", email=mask(signup.email)
        )

    def confirm(self, request: Request, *, token: str) -> Response:
        signup, hashed = self._signup(token)
        if signup is None:
            return self.pages.not_found()
        if signup.confirmed_at is None and signup.expires_at <= self.clock():
            return self.pages.expired()
        result = self.signups.confirm_signup(hashed, client_ip=request.client)
        if (
            result is not None
            and result.subscriber is not None
            and result.outcome in ("added", "resubscribed")
        ):
            reader = result.subscriber
            self.mail.submit(
                webmail.compose(
                    self.config,
                    self.mail_env,
                    webmail.WELCOME_TEMPLATE,
                    to=reader.email,
                    now=self.clock(),
                    context={
                        "first_name": reader.first_name,
                        "resource_url": self.config.web.welcome_resource_url,
                        "unsubscribe_url": unsubscribe_web_url(self.config, reader.token),
                    },
                    unsubscribe=(
                        unsubscribe_mailto(self.config, reader.token),
                        unsubscribe_web_url(self.config, reader.token),
                    ),
                )
            )
        return self.pages.page(200, "confirm.html", state="done", email=mask(signup.email))
