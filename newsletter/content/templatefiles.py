"""Template files are UTF-8: a file that is not is a one-line error naming it and the line.

Jinja2's FileSystemLoader lets the UnicodeDecodeError through, which the CLI would show as a
traceback; a Latin-1 byte from an old editor is a user's mistake, not a bug.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2

from newsletter.errors import TemplateError


class Utf8Loader(jinja2.FileSystemLoader):
    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            return super().get_source(environment, template)
        except UnicodeDecodeError as exc:
            data = exc.object if isinstance(exc.object, bytes) else b""
            line = data[: exc.start].count(b"\n") + 1
            byte = f" (byte 0x{data[exc.start]:02x})" if exc.start < len(data) else ""
            raise TemplateError(
                f"not UTF-8 text{byte}; save the file as UTF-8",
                path=self._file_of(template),
                line=line,
            ) from None

    def _file_of(self, template: str) -> Path:
        """The file that served `template`: the first folder holding it (overrides first)."""
        folders = [Path(str(folder)) for folder in self.searchpath]
        for folder in folders:
            if (folder / template).is_file():
                return folder / template
        return folders[0] / template
