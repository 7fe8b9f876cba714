"""Where templates come from: the publication's `templates/` first, then the package's defaults.

The defaults ship inside the package (package data), so an installed `newsletter` works for a
publication with no `templates/` at all; a publication overrides any single file by putting
its own copy at the same relative path (`templates/email.html`, `templates/archive/style.css`).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from newsletter.settings import Config

PACKAGE_TEMPLATES = "templates"


def default_templates_dir() -> Path:
    """The package's own templates folder (a real directory: wheels install unzipped)."""
    return Path(str(importlib.resources.files("newsletter").joinpath(PACKAGE_TEMPLATES)))


def search_path(config: Config) -> list[Path]:
    """Folders a template name is looked up in, first match wins."""
    return [config.templates_dir, default_templates_dir()]


def template_file(config: Config, name: str) -> Path:
    """The file that serves `name` (e.g. "archive/style.css"): the override, else the default.

    A name in neither place returns the publication's path, so the error names where an
    override would go.
    """
    for folder in search_path(config):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return config.templates_dir / name


def template_names(config: Config, folder: str, pattern: str) -> list[str]:
    """Relative names under `folder` matching `pattern`, from both places, each once."""
    names: set[str] = set()
    for base in search_path(config):
        if (base / folder).is_dir():
            names.update(f"{folder}/{p.name}" for p in (base / folder).glob(pattern))
    return sorted(names)
