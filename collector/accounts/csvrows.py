"""CSV imports shared by the tree and the contract registry: read with line numbers, collect
every error by line, and apply all rows in one transaction or none (``ImportReport``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Set
from dataclasses import dataclass, field

MAX_IMPORT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LineError:
    line: int  # 1 = the header
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    """Errors by line, the changes that were (or in a dry run would be) made, and whether applied."""

    errors: list[LineError] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, line: int, message: str) -> None:
        self.errors.append(LineError(line, message))


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    values: dict[str, str]  # stripped; a missing cell is ""


def read_rows(
    text: str, report: ImportReport, *, required: Set[str], optional: Set[str] = frozenset()
) -> Iterator[CsvRow]:
    """Rows of a CSV text with a header; header problems go into ``report`` as line 1 errors.

    Accepts ``,`` or ``;`` as separator (Russian Excel writes ``;``) and a UTF-8 BOM.
    """
    if len(text.encode()) > MAX_IMPORT_BYTES:
        report.error(1, f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it")
        return
    text = text.removeprefix("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        report.error(1, "the file is empty; expected a header line")
        return
    missing = sorted(required - set(header))
    unknown = sorted(set(header) - required - optional)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if missing:
        report.error(1, f"missing column(s): {', '.join(missing)}")
    if unknown:
        report.error(
            1, f"unknown column(s): {', '.join(unknown)}; allowed: {', '.join(sorted(required | optional))}"
        )
    if duplicated:
        report.error(1, f"repeated column(s): {', '.join(duplicated)}")
    if missing or unknown or duplicated:
        return
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                report.error(line, f"{len(cells)} cells but the header has {len(header)} columns")
                continue
            if any("\x00" in c for c in cells):  # valid UTF-8, but PostgreSQL text cannot hold it
                report.error(line, "a cell contains a NUL character (\\0)")
                continue
            values = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
            yield CsvRow(line, values)
    except csv.Error as exc:
        report.error(reader.line_num, f"unreadable CSV: {exc}")
