"""Subscriber CSV files: import rows (any common export's columns and delimiters), export.

No SQL here (the store's repositories have it). Each row's address and name go through
`newsletter.store.addresses`, the fast path first.
"""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, NamedTuple

from newsletter.errors import StoreError
from newsletter.store.addresses import (
    Address,
    InvalidAddress,
    clean_name,
    fast_address,
    normalise_address,
)
from newsletter.store.importformats import ExportFormat, detect

Status = Literal["active", "unsubscribed", "bounced", "complained"]
STATUSES: tuple[Status, ...] = ("active", "unsubscribed", "bounced", "complained")
_STATUS_BY_NAME: dict[str, Status] = {status: status for status in STATUSES}


class ImportRow(NamedTuple):
    """One valid CSV row: the line it started on, the address, name and (optional) status."""

    line: int
    address: Address
    first_name: str | None
    status: Status = "active"


@dataclass(frozen=True)
class RowProblem:
    path: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class ImportRejected(StoreError):
    """Rows were invalid and --skip-invalid was not given: nothing was imported."""

    def __init__(self, problems: list[RowProblem], total: int) -> None:
        first = problems[0]
        more = f" (and {total - 1} more invalid rows)" if total > 1 else ""
        super().__init__(first.message + more, path=first.path, line=first.line, field=first.field)
        self.problems = problems
        self.total = total


# Header cells (lower-cased, "_" as space) naming the columns, English and Excel's locales.
_EMAIL_HEADERS = frozenset(
    [
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "mail",
        "emailaddress",
        "e-mail-adresse",
        "email-adresse",
        "adresse e-mail",
        "courriel",
        "correo electrónico",
    ]
)
_NAME_HEADERS = frozenset(
    [
        "name",
        "first name",
        "firstname",
        "given name",
        "full name",
        "vorname",
        "prénom",
        "prenom",
        "nombre",
        "voornaam",
        "nome",
    ]
)
_DELIMITERS = (",", ";", "\t")
KEEP_PROBLEMS = 50


def _header_key(cell: str) -> str:
    return " ".join(cell.strip().strip("\ufeff").lower().replace("_", " ").split())


@dataclass
class CsvReader:
    """Streams ImportRows from a real-world CSV export; collects the invalid rows.

    Handles: a header or none (`email`/`e-mail`/`Email Address`, `name`/`first_name`, optional
    `status`), UTF-8 with or without BOM, comma, semicolon (Excel, with or without a `sep=;`
    line) or tab, CRLF, blank lines, rows of empty cells. Invalid rows are counted and the
    first KEEP_PROBLEMS kept; with `skip_invalid` False, rows stop coming after the first
    invalid one and ImportRejected is raised at the end, so the store's transaction rolls back.
    """

    path: Path
    skip_invalid: bool = False
    # `--status unsubscribed`: every row takes this status (a suppression list from elsewhere).
    force_status: Status | None = None
    problems: list[RowProblem] = field(default_factory=list)
    invalid: int = 0
    rows: int = 0
    service: str | None = None  # the service whose export this is (importformats.detect)
    # (the file's word for the row, what it became: a status or "skipped") -> rows.
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    _format: ExportFormat | None = None
    _keys: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[ImportRow]:
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as text:
                yield from self._rows(text)
        except OSError as exc:
            raise StoreError(f"cannot read: {exc.strerror}", path=self.path) from None
        except UnicodeDecodeError:
            line, byte = _first_bad_line(self.path)
            raise StoreError(
                f"not UTF-8 (byte 0x{byte:02x}); save the file as 'CSV UTF-8'",
                path=self.path,
                line=line,
            ) from None
        if self.invalid and not self.skip_invalid:
            raise ImportRejected(self.problems, self.invalid)

    def _problem(self, line: int, field_name: str, message: str) -> None:
        self.invalid += 1
        if len(self.problems) < KEEP_PROBLEMS:
            self.problems.append(RowProblem(self.path, line, field_name, message))

    def _rows(self, text: IO[str]) -> Iterator[ImportRow]:
        start, first = _first_content_line(text)
        if first is None:
            return
        delimiter = _sniff_delimiter(first)
        hint = first.strip().lower()
        if hint.startswith("sep=") and len(hint) == 5:
            delimiter = hint[4]  # Excel's "sep=;" line
            start, first = _first_content_line(text, start)
            if first is None:
                return
        reader = csv.reader(itertools.chain((first,), text), delimiter=delimiter)
        header = next(reader)
        email_col, name_col, status_col, has_header = _columns(header, self.path, start)
        if has_header:
            self._keys = [_header_key(cell) for cell in header]
            self._format = detect(self._keys)
            if self._format is not None:
                self.service = self._format.service
                email_col = self._keys.index(self._format.email_key)
                status_col = None  # the service's own columns say it
        row = self._row
        if not has_header and (found := row(header, start, email_col, name_col, status_col)):
            yield found
        end = start + reader.line_num - 1
        for cells in reader:
            begin, end = end + 1, start + reader.line_num - 1
            if found := row(cells, begin, email_col, name_col, status_col):
                yield found

    def _row(
        self,
        cells: list[str],
        line: int,
        email_col: int,
        name_col: int | None,
        status_col: int | None,
    ) -> ImportRow | None:
        """The row as an ImportRow; None for a blank or invalid row (the latter recorded)."""
        text = unneutralise(cells[email_col].strip()) if email_col < len(cells) else ""
        if not text and not "".join(cells).strip():
            return None  # a blank line, or a row of empty cells (Excel pads them)
        self.rows += 1
        address = fast_address(text)
        if address is None:
            try:
                address = normalise_address(text)
            except InvalidAddress as exc:
                self._problem(line, "email", f"{text!r}: {exc}" if text else str(exc))
                return None
        status: Status = "active"
        if status_col is not None and status_col < len(cells) and cells[status_col].strip():
            given = cells[status_col].strip().lower()
            if given not in _STATUS_BY_NAME:
                expected = ", ".join(STATUSES)
                self._problem(line, "status", f"expected one of {expected}, got {given!r}")
                return None
            status = _STATUS_BY_NAME[given]
        word: str = status
        if self._format is not None:
            cell = dict(zip(self._keys, cells, strict=False))
            word, mapped = self._format.status(cell)
            if mapped is None:  # e.g. never confirmed: no consent to carry over
                self.outcomes[(word, "skipped")] += 1
                return None
            status = mapped
        if self.force_status is not None:
            status = self.force_status
        self.outcomes[(word, status)] += 1
        if self.invalid and not self.skip_invalid:
            return None  # keep validating to report every bad row, but import nothing
        name = cells[name_col] if name_col is not None and name_col < len(cells) else None
        name = unneutralise(name) if name is not None else None
        return ImportRow(line, address, clean_name(name), status)


def _first_bad_line(path: Path) -> tuple[int, int]:
    """(line number, byte) of the first byte that is not UTF-8: the slow path, on error only."""
    with path.open("rb") as raw:
        for number, chunk in enumerate(raw, start=1):
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, chunk[exc.start]
    return 0, 0


def _first_content_line(text: IO[str], after: int = 0) -> tuple[int, str | None]:
    number = after
    for line in iter(text.readline, ""):
        number += 1
        if line.strip():
            return number, line
    return number, None


def _sniff_delimiter(line: str) -> str:
    """The separator splitting the first line into most cells (addresses never contain one)."""
    best = max(_DELIMITERS, key=lambda d: (len(next(csv.reader([line], delimiter=d))), d == ","))
    return best


def _columns(first: list[str], path: Path, line: int) -> tuple[int, int | None, int | None, bool]:
    """(email column, name column, status column, whether `first` is a header row)."""
    keys = [_header_key(cell) for cell in first]
    for index, key in enumerate(keys):
        if key in _EMAIL_HEADERS:
            name = next((i for i, k in enumerate(keys) if k in _NAME_HEADERS), None)
            status = next((i for i, k in enumerate(keys) if k == "status"), None)
            return index, name, status, True
    at = [i for i, cell in enumerate(first) if "@" in cell]
    if not at:
        raise StoreError(
            "no email column: expected a header naming email, e-mail or Email Address, "
            "or an address in the first row",
            path=path,
            line=line,
            field="header",
        )
    others = [i for i in range(len(first)) if i != at[0]]
    return at[0], (others[0] if len(others) == 1 else None), None, False


EXPORT_HEADER = ("email", "first_name", "status", "created_at", "consent_at", "consent_source")


# A cell starting with one of these is a formula to a spreadsheet (`=HYPERLINK(...)` typed
# into the web form as a name). OWASP's advice: prefix a single quote, which the spreadsheet
# shows as text; `unneutralise` takes it off again on import.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """`=1+1` -> `'=1+1`; a cell already looking neutralised (`'=x`) gets one more quote."""
    if cell.startswith(_FORMULA_START) or cell.lstrip("'").startswith(_FORMULA_START):
        return "'" + cell
    return cell


def unneutralise(cell: str) -> str:
    """The inverse of `neutralise` for a cell of our own export."""
    if cell.startswith("'") and cell.lstrip("'").startswith(_FORMULA_START):
        return cell[1:]
    return cell


def write_csv(out: IO[str], rows: Iterable[tuple[object, ...]]) -> int:
    """Write the export header and rows (streamed); returns the number of rows. Text cells a
    spreadsheet would run as formulas are neutralised (see `neutralise`)."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_HEADER)
    count = 0
    for row in rows:
        writer.writerow(
            "" if cell is None else neutralise(cell) if isinstance(cell, str) else cell
            for cell in row
        )
        count += 1
    return count
