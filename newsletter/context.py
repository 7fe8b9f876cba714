"""What every command receives: the publication root and its lazily loaded config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from newsletter.config import Config, load_config


@dataclass
class AppContext:
    root: Path
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.root)
        return self._config


pass_app = click.make_pass_decorator(AppContext)
