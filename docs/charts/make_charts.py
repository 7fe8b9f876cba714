"""Render the sample issues' charts: docs/charts/*.svg -> content/images/*.png at 2x.

The SVGs are the sources (labels, values and legend words in them, a light background baked
in so they read in any client, dark mode included). Run after editing one:

    .venv/bin/python docs/charts/make_charts.py

Uses Debian's Chromium through Playwright, as the browser tests do; never downloads a browser.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent.parent / "content" / "images"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(device_scale_factor=2)
        for source in sorted(HERE.glob("*.svg")):
            page.set_content(f'<body style="margin:0">{source.read_text(encoding="utf-8")}</body>')
            target = IMAGES / f"{source.stem}.png"
            page.locator("svg").screenshot(path=str(target))
            print(f"{source.name} -> {target}")
        browser.close()


if __name__ == "__main__":
    main()
