"""`newsletter report --html DIR`: one static page, charts as inline SVG, nothing to fetch.

pygal draws the charts: it writes SVG natively (text stays text, each bar has a <title>, so a
browser shows the value on hover and a screen reader reads it), it is pure Python with no
numpy; with `js=[]` it links no script, and the one it inlines is dropped. The page has no
JavaScript, no web font, no image file: it opens from a file:// URL on a phone in a train.
It is for the editor: it is never written inside the public archive folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pygal
from pygal.style import Style

from newsletter.archive.build import default_out_dir
from newsletter.archive.write import MANIFEST_NAME
from newsletter.errors import NewsletterError
from newsletter.fsutil import write_atomic
from newsletter.report.figures import SOURCES, IssueFigures, Report
from newsletter.settings import Config

PAGE_NAME = "index.html"
_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#111111",
    foreground_subtle="#666666",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=("#1b6ca8", "#e0a526", "#c0392b", "#7f8c8d", "#8e44ad", "#16a085"),
    title_font_size=18,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    value_font_size=13,
    tooltip_font_size=13,
)
# Small canvases: scaled to a 360 px phone, the 13 px labels stay readable.
_SIZE = {"width": 480, "height": 320}


class ReportPathError(NewsletterError):
    """The HTML report would land where it must not (the public archive)."""


def check_out_dir(config: Config, out: Path) -> Path:
    """The folder to write into, refused when it is (inside) a public archive folder: the
    default build/archive/ or any folder an archive build wrote (it holds the manifest)."""
    target = out.expanduser().resolve()
    archive = default_out_dir(config).resolve()
    if target == archive or archive in target.parents:
        raise ReportPathError(
            f"refusing to write the report inside the public archive ({archive}); "
            "choose a folder that is not published",
            path=out,
        )
    for folder in (target, *target.parents):
        if (folder / MANIFEST_NAME).is_file():
            raise ReportPathError(
                f"refusing to write the report inside a published archive ({folder} has "
                f"{MANIFEST_NAME}); choose a folder that is not published",
                path=out,
            )
    if target.exists() and not target.is_dir():
        raise ReportPathError("not a folder", path=out)
    return target


def write_html(config: Config, report: Report, out: Path) -> Path:
    """Write DIR/index.html (atomically); returns its path."""
    folder = check_out_dir(config, out)
    path = folder / PAGE_NAME
    write_atomic(path, render_html(config, report))
    return path


def render_html(config: Config, report: Report) -> str:
    charts = {
        "list_size": _list_chart(report),
        "outcomes": _outcomes_chart(report),
        "sources": _sources_chart(report),
    }
    return _TEMPLATE.render(
        name=config.name,
        report=report,
        charts=charts,
        sources=SOURCES,
        label=_label,
        percent=_percent,
    )


def _label(issue: IssueFigures) -> str:
    return f"#{issue.number}" if issue.number is not None else issue.started_at.strftime("%Y-%m")


def _ticks(top: int) -> list[int]:
    """Whole-number axis labels, about five: pygal's own scale puts 0.1 steps under a 1."""
    step = max(1, -(-top // 5))
    magnitude = 10 ** (len(str(step)) - 1)
    step = -(-step // magnitude) * magnitude  # 1, 2, ... 10, 20, ... 100, 200 ...
    return list(range(0, top + step, step))


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f} %"


def _chart(
    kind: type[pygal.graph.graph.Graph], title: str, labels: list[str], top: int
) -> pygal.Graph:
    chart = kind(
        y_labels=_ticks(top),
        value_formatter=lambda value: f"{value:,.0f}",
        js=[],  # pygal links a tooltip script by default: no script, no request
        style=_STYLE,
        disable_xml_declaration=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        x_label_rotation=0 if len(labels) <= 8 else 45,
        show_minor_x_labels=len(labels) <= 12,
        x_labels_major_every=max(1, len(labels) // 6),
        truncate_legend=-1,
        print_zeroes=False,
        **_SIZE,
    )
    chart.title = title
    chart.x_labels = labels
    return chart


def _svg(chart: pygal.Graph) -> str:
    text: str = chart.render(is_unicode=True)
    # pygal always inlines a <script> with its tooltip settings (js=[] only drops the linked
    # script): the page runs no script, so it goes. Its comments name the day it ran.
    text = re.sub(r"<script\b.*?</script>", "", text, flags=re.DOTALL)
    return re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)


def _list_chart(report: Report) -> str:
    labels = [p.at.strftime("%Y-%m-%d") for p in report.list_size]
    top = max((p.active for p in report.list_size), default=0)
    chart = _chart(pygal.Line, "Active readers at each send", labels, top)
    chart.add("readers", [p.active for p in report.list_size])
    chart.show_legend = False
    return _svg(chart)


def _outcomes_chart(report: Report) -> str:
    issues = report.issues
    top = max((i.targeted for i in issues), default=0)
    chart = _chart(pygal.StackedBar, "Deliveries per issue", [_label(i) for i in issues], top)
    for name in ("sent", "deferred", "failed", "unknown", "skipped"):
        chart.add(name, [getattr(i, name) or None for i in issues])
    return _svg(chart)


def _sources_chart(report: Report) -> str:
    issues = report.issues
    top = max((i.unsubscribes.total for i in issues), default=0)
    labels = [_label(i) for i in issues]
    chart = _chart(pygal.StackedBar, "Unsubscribes by source", labels, top)
    chart.no_data_text = "No unsubscribes"
    for source in SOURCES:
        values = [getattr(i.unsubscribes, source) or None for i in issues]
        if any(values) or source != "other":
            chart.add(source, values)
    return _svg(chart)


_TEMPLATE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ name }}: how the issues did</title>
<style>
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fff; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0.5rem 0; }
h2 { font-size: 1.2rem; margin: 2rem 0 0.5rem; }
p.note { color: #555; font-size: 0.9rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
figure { margin: 0; }
figure svg { display: block; width: 100%; height: auto; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25rem 0.5rem; border-bottom: 1px solid #ddd; text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
</style>
</head>
<body>
<main>
<h1>{{ name }}: how the issues did</h1>
<p>As of {{ report.as_of.strftime("%Y-%m-%d %H:%M %Z") }}:
<strong>{{ "{:,}".format(report.active_now) }}</strong> active readers,
{{ report.issues|length }} issue(s) sent.</p>
<p class="note">Counted: what the send log and the inbox recorded. Not counted, by design: opens
and clicks (no tracking pixels, no rewritten links). Unsubscribes, bounces, complaints and
replies belong to the issue they quote, else to the last issue the reader got, else to the issue
out at the time.</p>

<section class="charts" aria-label="Charts">
<figure>{{ charts.list_size|safe }}</figure>
<figure>{{ charts.outcomes|safe }}</figure>
<figure>{{ charts.sources|safe }}</figure>
</section>

<h2>Per issue</h2>
<div class="table"><table>
<thead><tr><th>Issue</th><th>Date</th><th>Targeted</th><th>Sent</th><th>Deferred</th><th>Failed</th>
<th>Unknown</th><th>Hard bounces</th><th>Soft bounces</th><th>Complaints</th>
{% for s in sources %}<th>Unsub. {{ s }}</th>{% endfor %}<th>Churn</th><th>Feedback</th>
<th>Duration</th><th>Rate</th></tr></thead>
<tbody>
{% for i in report.issues %}
<tr><td>{% if i.number is not none %}#{{ i.number }} {% endif %}{{ i.title or i.slug }}</td>
<td>{{ i.started_at.strftime("%Y-%m-%d") }}</td>
<td>{{ i.targeted }}</td><td>{{ i.sent }}</td><td>{{ i.deferred }}</td><td>{{ i.failed }}</td>
<td>{{ i.unknown }}</td><td>{{ i.hard_bounces }}</td><td>{{ i.soft_bounces }}</td>
<td>{{ i.complaints }}</td>
{% for s in sources %}<td>{{ i.unsubscribes[s] }}</td>{% endfor %}
<td>{{ percent(i.churn) }}</td><td>{{ i.feedback }}</td>
<td>{{ "–" if i.duration_seconds is none else "%.0f s"|format(i.duration_seconds) }}</td>
<td>{{ "–" if i.rate_per_second is none else "%.1f/s"|format(i.rate_per_second) }}</td></tr>
{% endfor %}
</tbody></table></div>

<h2>Per month (UTC)</h2>
<div class="table"><table>
<thead><tr><th>Month</th><th>Sign-ups</th><th>Imported</th><th>Unsubscribes</th><th>Bounced</th>
<th>Complaints</th></tr></thead>
<tbody>
{% for m in report.months %}
<tr><td>{{ m.month }}</td><td>{{ m.signups }}</td><td>{{ m.imports }}</td>
<td>{{ m.unsubscribes }}</td>
<td>{{ m.bounces }}</td><td>{{ m.complaints }}</td></tr>
{% endfor %}
</tbody></table></div>

{% if report.most_feedback %}
<h2>Most feedback</h2>
<ol>
{% for slug, count in report.most_feedback %}
<li>{{ slug }}: {{ count }} repl{{ "y" if count == 1 else "ies" }}</li>
{% endfor %}
</ol>
{% endif %}
{% if report.details %}
<h2>Who (--detail)</h2>
<div class="table"><table>
<thead><tr><th>Issue</th><th>What</th><th>Address</th></tr></thead>
<tbody>
{% for d in report.details %}
<tr><td>{{ d.slug or "before the first issue" }}</td><td>{{ d.what }}</td>
<td>{{ d.email }}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
</main>
</body>
</html>
"""
)
