"""Render one issue once, then personalise it for 10,000 generated subscribers.

Prints the cost of rendering + CSS inlining once, the cost per subscriber of personalising the
rendered issue (a string join per reader), and the ratio against the naive way: a Jinja2 render
plus premailer for every subscriber, timed on a sample of them in the same run. Exits 1 when a
target is missed (>= 500x cheaper than naive, < 50 us per subscriber). The naive way is timed
with premailer alone (the stylesheet parsed for every reader, the comparison the target was set
against) and, for information, with the stylesheet parsed once (content/cssinline.py).

    .venv/bin/python bench/render.py [--root DIR] [--issue SLUG] [--subscribers N] [--naive N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from newsletter import links
from newsletter.config import load_config
from newsletter.content.emailbody import email_fragment
from newsletter.content.issues import Issue, find_issue, load_issues
from newsletter.content.markup import render_markdown
from newsletter.content.render import (
    RenderedIssue,
    inline_css,
    render_issue,
    render_template,
    template_context,
    template_environment,
    text_context,
)
from newsletter.settings import Config

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 500
TARGET_MICROSECONDS = 50
FIRST_NAMES = ["Amara", "Tomas", "Noor", "Keiko", "Sam", "Lena", "Rafael", "Priya", "Olu",
               "Zoë", "José", "Marta", "Dev", "Ines", "Björn", "O'Brien", "Anne-Marie"]  # fmt: skip

BENCH_DAY = dt.date(2026, 11, 20)  # between the sample's October and December issues


@dataclass(frozen=True)
class Subscriber:
    email: str
    first_name: str | None
    token: str


def generate_subscribers(count: int, seed: int = 2026) -> list[Subscriber]:
    """Deterministic readers: some without a first name, some with accents and apostrophes."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    readers = []
    for index in range(count):
        name = rng.choice(FIRST_NAMES) if rng.random() > 0.1 else None
        local = (name or "reader").lower().replace("'", "").replace(" ", "")
        token = "".join(rng.choice(alphabet) for _ in range(22))
        readers.append(Subscriber(f"{local}.{index}@example.org", name, token))
    return readers


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def personalise_all(rendered: RenderedIssue, readers: list[Subscriber]) -> None:
    personalise = rendered.personalise
    for reader in readers:
        personalise(reader)


class NaiveRenderer:
    """The way we do not do it: templates and premailer run again for every reader.

    The Markdown body is converted once (the naive way would too); per reader the HTML and
    text templates are rendered with that reader's values, and premailer inlines the CSS
    (`cached`: with each stylesheet parsed once per process, as render_issue does).
    """

    def __init__(
        self, config: Config, issue: Issue, issues: list[Issue], *, cached: bool = False
    ) -> None:
        self.config = config
        self.cached = cached
        body = render_markdown(config, issue, issues)
        self.html_content = Markup(email_fragment(body.html))
        self.text_context = text_context(body.html)
        self.html_env = template_environment(config)
        self.text_env = template_environment(config, autoescape=False)
        self.context: dict[str, Any] = template_context(config, issue, issues)

    def render(self, reader: Subscriber) -> tuple[str, str]:
        values = {
            "first_name": reader.first_name or self.config.greeting_fallback,
            "email": reader.email,
            "unsubscribe_url": links.unsubscribe_link(self.config, reader.token),
            "unsubscribe_address": links.unsubscribe_address(self.config, reader.token),
        }
        html_slots = {name: escape(value) for name, value in values.items()}
        page = render_template(
            self.html_env,
            "email.html",
            {**self.context, "slot": html_slots, "content": self.html_content},
        )
        inlined, _ = inline_css(page, cached=self.cached)
        text = render_template(
            self.text_env,
            "email.txt",
            {**self.context, "slot": values, **self.text_context},
        )
        return inlined, text


def naive_seconds(naive: NaiveRenderer, sample: list[Subscriber]) -> float:
    """Median seconds per reader of the naive way, after one warm-up render."""
    naive.render(sample[0])
    times = []
    for reader in sample:
        start = time.perf_counter()
        naive.render(reader)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=ROOT, help="publication (default: sample)")
    parser.add_argument("--issue", default="2026-08-handoffs-are-the-product")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=20, help="readers rendered the naive way")
    parser.add_argument("--repeat", type=int, default=7, help="runs of the personalisation")
    args = parser.parse_args(argv)

    config = load_config(args.root)
    issues = load_issues(config, BENCH_DAY)
    issue = find_issue(config, issues, args.issue)
    readers = generate_subscribers(args.subscribers)

    render_issue(config, issue, issues)  # warm-up: imports, template compilation
    render_once = median_seconds(lambda: render_issue(config, issue, issues), 5)
    rendered = render_issue(config, issue, issues)
    sample_email = rendered.personalise(readers[0])

    personalise_all(rendered, readers)  # warm-up
    per_run = median_seconds(lambda: personalise_all(rendered, readers), args.repeat)
    per_reader = per_run / len(readers)

    step = max(len(readers) // args.naive, 1)
    sample = readers[::step][: args.naive]
    naive = NaiveRenderer(config, issue, issues)
    naive_per_reader = naive_seconds(naive, sample)
    naive_cached = NaiveRenderer(config, issue, issues, cached=True)
    naive_cached_per_reader = naive_seconds(naive_cached, sample)
    ratio = naive_per_reader / per_reader

    # Both ways must produce the same email, or the comparison means nothing.
    plain = next(r for r in readers if r.first_name and r.first_name.isalpha())
    personal = rendered.personalise(plain)
    same = naive.render(plain) == (personal.html, personal.text)

    html_kb = len(sample_email.html.encode("utf-8")) / 1024
    text_kb = len(sample_email.text.encode("utf-8")) / 1024
    print(f"issue: {issue.slug} (HTML {html_kb:.1f} KB, text {text_kb:.1f} KB)")
    print(f"render + inline once: {render_once * 1000:.1f} ms (median of 5)")
    print(
        f"personalise: {per_reader * 1e6:.2f} µs per subscriber "
        f"(median of {args.repeat} runs x {len(readers):,} subscribers: "
        f"{per_run * 1000:.1f} ms per run)"
    )
    print(
        f"naive (Jinja2 + premailer per subscriber): {naive_per_reader * 1000:.1f} ms per "
        f"subscriber (median of {len(sample)}); with the stylesheet parsed once: "
        f"{naive_cached_per_reader * 1000:.1f} ms ({naive_cached_per_reader / per_reader:,.0f}x)"
    )
    print(f"ratio: personalisation is {ratio:,.0f}x cheaper per subscriber")
    print(f"same HTML and text both ways: {'yes' if same else 'NO'}")
    ok_ratio = ratio >= TARGET_RATIO
    ok_cost = per_reader * 1e6 < TARGET_MICROSECONDS
    print(
        f"targets: >= {TARGET_RATIO}x cheaper {'PASS' if ok_ratio else 'FAIL'}; "
        f"< {TARGET_MICROSECONDS} µs per subscriber {'PASS' if ok_cost else 'FAIL'}"
    )
    return 0 if ok_ratio and ok_cost and same else 1


if __name__ == "__main__":
    sys.exit(main())
