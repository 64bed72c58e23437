"""The one CSV writer of every export: spreadsheet-safe cells, the format Russian Excel opens.

Much of what is exported comes from outside — serials, models and ФН numbers from agents, store
names from users — and a spreadsheet runs a cell starting with ``= + - @`` (or a tab or carriage
return before one) as a formula: ``@SUM(1+1)*cmd|'/C calc'!A0``. Such text cells get a leading
``'``, which spreadsheets show as text and do not display (OWASP's advice). Numbers, dates and
booleans come from our own code, never from a string, so a negative number stays a number.

``;`` separates cells (Excel's list separator under a Russian locale) and a UTF-8 byte-order mark
makes Cyrillic open correctly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime

CSV_MEDIA_TYPE = "text/csv"
DELIMITER = ";"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """``text`` as a spreadsheet will show it, never run it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return neutralise(str(value))


def csv_document(header: Iterable[str], rows: Iterable[Iterable[object]]) -> bytes:
    """The whole file: a header line, then one line per row, every cell through ``cell_text``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=DELIMITER, lineterminator="\r\n")
    writer.writerow(cell_text(name) for name in header)
    for row in rows:
        writer.writerow(cell_text(value) for value in row)
    return buffer.getvalue().encode("utf-8-sig")
