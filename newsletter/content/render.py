"""Render an Issue once: Markdown -> Jinja2 templates -> premailer -> `RenderedIssue`.

Per-reader values (first name, address, unsubscribe link) are left in the rendered output as
slot tokens, so personalising for one reader is a list join, not another Markdown, Jinja2 or
premailer pass. Tokens have no spaces or braces because lxml (inside premailer) URL-encodes
`{{ ... }}` found in an href.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from markupsafe import Markup

from newsletter import links
from newsletter.content.issues import Issue
from newsletter.errors import TemplateError
from newsletter.settings import Config
from newsletter.startup import loading

# What only rendering uses loads when an issue is rendered (a fast `send` start): jinja2,
# premailer, Markdown (markup.py), the text part's HTML parser (plaintext.py), the template
# search path (importlib.resources). A send that resumes or sends nothing never renders.
if TYPE_CHECKING:
    import jinja2

    from newsletter.content.markup import BodyLink

RECENT_COUNT = 12
SLOTS = ("first_name", "email", "unsubscribe_url", "unsubscribe_address")
_SLOT_TOKEN = "NLSLOT-{}-9f2c"
_SLOT_RE = re.compile(r"NLSLOT-([a-z_]+)-9f2c")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Languages written right to left (BCP 47 primary subtags): the email sets dir="rtl" for them.
_RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug",
                            "ur", "yi"})  # fmt: skip


class Reader(Protocol):
    """Anything with these attributes can be personalised for: a Subscriber, a test double."""

    @property
    def email(self) -> str: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def token(self) -> str: ...


@dataclass(frozen=True)
class PreviewReader:
    """The placeholder reader for previews and checks: no personal data, but as long as real
    ones get, so a preview (and `check`'s size) shows what readers get: a 32-character token
    like the store's and a long address, both of which must wrap on a phone."""

    email: str = "alexandra.featherstonehaugh-worthington@customer-operations.example.org"
    first_name: str | None = None
    token: str = "sampletokenofthirtytwocharacters"


@dataclass(frozen=True)
class Personalised:
    html: str
    text: str


@dataclass(frozen=True)
class SlotTemplate:
    """Text split once around slot tokens: literal, slot, literal, slot, ..., literal."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SlotTemplate:
        return cls(tuple(_SLOT_RE.split(text)))

    @property
    def slots(self) -> tuple[str, ...]:
        return self.parts[1::2]

    def fill(self, values: Mapping[str, str]) -> str:
        parts = list(self.parts)
        parts[1::2] = [values[name] for name in self.slots]
        return "".join(parts)


@dataclass(frozen=True)
class RecentIssue:
    number: int
    title: str
    date: dt.date
    url: str


@dataclass(frozen=True)
class RenderedIssue:
    config: Config
    issue: Issue
    subject: str
    preheader: str
    html_body_fragment: str  # the issue's Markdown as HTML, absolute URLs, not inlined
    body_links: tuple[BodyLink, ...]
    html: SlotTemplate  # the whole email, CSS inlined
    text: SlotTemplate
    inliner_warnings: tuple[str, ...]

    @property
    def web_url(self) -> str:
        return links.issue_url(self.config, self.issue.slug)

    def personalise(self, reader: Reader) -> Personalised:
        """The email for one reader: cheap string joins; every value is escaped for HTML."""
        raw = self.slot_values(reader)
        escaped = {name: html.escape(value, quote=True) for name, value in raw.items()}
        return Personalised(html=self.html.fill(escaped), text=self.text.fill(raw))

    def slot_values(self, reader: Reader) -> dict[str, str]:
        # Control characters (CR/LF above all) in a subscriber's name must not shape the text.
        name = _CONTROL.sub(" ", reader.first_name or "").strip()
        return {
            "first_name": name or self.config.greeting_fallback,
            "email": _CONTROL.sub("", reader.email),
            "unsubscribe_url": links.unsubscribe_link(self.config, reader.token),
            "unsubscribe_address": links.unsubscribe_address(self.config, reader.token),
        }


def recent_issues(config: Config, issue: Issue, issues: list[Issue]) -> list[RecentIssue]:
    """The 12 most recent published issues before this one, newest first."""
    earlier = [i for i in issues if i.is_ready and i.date < issue.date]
    earlier.sort(key=lambda i: i.date, reverse=True)
    return [
        RecentIssue(i.number, i.title, i.date, links.issue_url(config, i.slug))
        for i in earlier[:RECENT_COUNT]
        if i.number is not None
    ]


def template_environment(config: Config, *, autoescape: bool = True) -> jinja2.Environment:
    import jinja2

    from newsletter.content.templatefiles import Utf8Loader  # a jinja2 loader: jinja2 with it
    from newsletter.content.templatesource import search_path

    return jinja2.Environment(
        # The publication's templates/ overrides any single file of the package's defaults;
        # a non-UTF-8 file is a one-line error.
        loader=Utf8Loader(search_path(config)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _template_path(env: jinja2.Environment, name: str) -> str:
    folder = getattr(env.loader, "searchpath", ["templates"])[0]
    return f"{folder}/{name}"


def load_template(env: jinja2.Environment, name: str) -> jinja2.Template:
    """Load and compile one template; a missing or broken one is a TemplateError (file:line)."""
    import jinja2

    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            "template missing; expected it in templates/", path=_template_path(env, name)
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            exc.message or "syntax error",
            path=exc.filename or _template_path(env, name),
            line=exc.lineno,
        ) from None


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render one template; template mistakes become TemplateError naming file and line."""
    import jinja2

    template = load_template(env, name)
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"{exc.message} (available: {', '.join(sorted(context))})",
            path=_template_path(env, name),
            line=_template_line(exc, name),
        ) from None


def _template_line(exc: BaseException, name: str) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def subject_for(config: Config, issue: Issue) -> str:
    if issue.number is None:  # a draft (test copies only): it has no number yet
        return f"{config.name}: {issue.title}"
    return f"{config.name} #{issue.number}: {issue.title}"


def text_direction(language: str) -> str:
    """The text direction of `language`: "rtl" for "ar", "he-IL" and the like, else "ltr"."""
    return "rtl" if language.split("-")[0].lower() in _RTL_LANGUAGES else "ltr"


def forward_mailto(subject: str, web_url: str) -> str:
    """A `mailto:` that opens a new message with the subject and the web link filled in."""
    body = f"I thought you would like this: {web_url}"
    return f"mailto:?subject={quote(subject, safe='')}&body={quote(body, safe='')}"


def template_context(config: Config, issue: Issue, issues: list[Issue]) -> dict[str, Any]:
    """What email.html and email.txt see, except `content` and the per-reader `slot` values."""
    subject = subject_for(config, issue)
    web_url = links.issue_url(config, issue.slug)
    return {
        "config": config,
        "issue": issue,
        "subject": subject,
        "preheader": issue.summary,
        "recent": recent_issues(config, issue, issues),
        "web_url": web_url,
        "archive_url": config.base_url,
        "subscribe_url": config.archive_url("subscribe/"),
        "reply_to": config.reply_to,
        "year": issue.date.year,
        "text_dir": text_direction(config.language),
        "forward_mailto": forward_mailto(subject, web_url),
        # the footer's wording follows what the unsubscribe link really does
        "unsubscribe_on_web": bool(config.web.public_url),  # as links.unsubscribe_link decides
    }


def text_context(body_html: str, *, separate: bool = True) -> dict[str, str]:
    """email.txt's `content`, `notes` and `links`: the sign-off goes between notes and links.

    `separate=False` for an email.txt written before `notes` and `links` existed: then
    `content` holds all three, so an older publication's text part loses nothing."""
    from newsletter.content.plaintext import html_to_text, text_parts

    if not separate:
        return {"content": html_to_text(body_html), "notes": "", "links": ""}
    parts = text_parts(body_html)
    return {"content": parts.body, "notes": parts.notes, "links": parts.links}


def _uses_links(env: jinja2.Environment, name: str) -> bool:
    """Whether the template refers to `links` (parsed again: cheap, once per issue)."""
    import jinja2.meta

    load_template(env, name)  # a missing or broken template fails here with file and line
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    return "links" in jinja2.meta.find_undeclared_variables(env.parse(source))


def render_issue(config: Config, issue: Issue, issues: list[Issue]) -> RenderedIssue:
    """Markdown, both templates and premailer: once per issue."""
    if "premailer" in sys.modules:
        return _render(config, issue, issues)
    with loading():  # the process's first render: it loads the renderer's libraries
        return _render(config, issue, issues)


def _render(config: Config, issue: Issue, issues: list[Issue]) -> RenderedIssue:
    from newsletter.content.emailbody import email_fragment
    from newsletter.content.markup import render_markdown

    body = render_markdown(config, issue, issues)
    slot = {name: Markup(_SLOT_TOKEN.format(name)) for name in SLOTS}
    context = {**template_context(config, issue, issues), "slot": slot}
    html_env = template_environment(config)
    fragment = email_fragment(body.html)
    page = render_template(html_env, "email.html", {**context, "content": Markup(fragment)})
    inlined, warnings = inline_css(page)
    text_env = template_environment(config, autoescape=False)
    separate = _uses_links(text_env, "email.txt")
    text_vars = text_context(body.html, separate=separate)
    text = render_template(text_env, "email.txt", {**context, **text_vars})
    return RenderedIssue(
        config=config,
        issue=issue,
        subject=context["subject"],
        preheader=issue.summary,
        html_body_fragment=body.html,
        body_links=body.links,
        html=SlotTemplate.parse(inlined),
        text=SlotTemplate.parse(text),
        inliner_warnings=warnings,
    )


# Client-specific properties (Outlook's mso-*, -webkit-/-ms- prefixes) and the CSS 3 line
# breaking ones that let long addresses wrap are deliberate in email CSS; cssutils (CSS 2.1)
# does not know them, and a warning for each would bury real mistakes.
_VENDOR_PROPERTY = re.compile(
    r"Unknown Property name\. \[[\d:]+ (-webkit-|-ms-|mso-|overflow-wrap|word-wrap|word-break)"
)


def inline_css(page: str, *, cached: bool = True) -> tuple[str, tuple[str, ...]]:
    """premailer with `@media` rules (responsive, dark mode) kept, `!important` intact.

    `cached`: each `<style>` block is parsed once per process (cssinline.py), the same text as
    premailer alone gives, which `cached=False` runs (tests compare the two)."""
    import logging  # cssutils' warnings: render time, as premailer, which imports it anyway

    from premailer import Premailer  # ~0.3 s of imports (cssutils, requests): render time

    from newsletter.content.cssinline import SheetCachingPremailer

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    # cssutils prints every warning to stderr through its own handler; we collect them instead.
    cssutils_logger = logging.getLogger("CSSUTILS")
    cssutils_logger.handlers.clear()
    cssutils_logger.propagate = False
    collector = Collect()
    options: dict[str, Any] = dict(
        allow_network=False,
        keep_style_tags=False,
        strip_important=False,
        remove_classes=False,
        disable_validation=False,
        cssutils_logging_handler=collector,
        cssutils_logging_level=logging.WARNING,
        # premailer copies an inline `height:auto`/`width:100%` (fluid images) over the pixel
        # size attributes that Outlook needs; attributes set by markup.py must stay.
        disable_basic_attributes=["height", "width"],
        # premailer's process-wide parse cache reports a stylesheet's warnings only the first
        # time it is seen, so `check` lost them for later issues and in long-running processes;
        # SheetCachingPremailer keeps them with each parsed stylesheet instead.
        cache_css_parsing=False,
    )
    if cached:
        inliner = SheetCachingPremailer(page, warnings=collector.messages, **options)
    else:
        inliner = Premailer(page, **options)
    inlined: str = inliner.transform()
    cssutils_logger.removeHandler(collector)
    warnings = [m for m in collector.messages if not _VENDOR_PROPERTY.search(m)]
    return inlined, tuple(dict.fromkeys(warnings))
