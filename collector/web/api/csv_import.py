"""What the CSV imports of the JSON API share (tree, contracts): reading the ``text/csv`` body
within the size limit, the ``dry_run`` query and the line-by-line report."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from collector.accounts.csvrows import MAX_IMPORT_BYTES, ImportReport
from collector.web.api.models import InputModel
from collector.web.problems import InvalidParam, Problem

CSV_TYPES = frozenset({"text/csv", "text/plain", "application/csv"})


class ImportQuery(InputModel):
    dry_run: bool = Field(False, description="check every line and report, change nothing")


class LineErrorOut(BaseModel):
    line: int
    message: str


class ImportReportOut(BaseModel):
    ok: bool
    applied: bool
    errors: list[LineErrorOut]
    changes: list[str]


async def read_csv(request: web.Request) -> str:
    """The uploaded CSV text: ``text/csv`` (or plain text), UTF-8, at most the import limit."""
    if request.content_type not in CSV_TYPES:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"send the file as text/csv (got {request.content_type or 'nothing'})")
    too_large = Problem(413, "too-large", "File too large", f"the file is larger than {MAX_IMPORT_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_IMPORT_BYTES:
        raise too_large
    raw = await request.content.read(MAX_IMPORT_BYTES + 1)
    if len(raw) > MAX_IMPORT_BYTES:
        raise too_large
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "not-utf8", "Not UTF-8", "save the CSV as UTF-8 (Excel: CSV UTF-8)") from None


def report_out(report: ImportReport, dry_run: bool) -> ImportReportOut:
    """A dry run answers its report; a real import with errors is refused, naming every line."""
    if report.errors and not dry_run:
        raise Problem(
            422,
            "import-refused",
            "Import refused",
            f"{len(report.errors)} line(s) have errors; nothing was changed",
            invalid_params=[InvalidParam(name=f"line {e.line}", reason=e.message) for e in report.errors],
        )
    return ImportReportOut(
        ok=report.ok,
        applied=report.applied,
        errors=[LineErrorOut(line=e.line, message=e.message) for e in report.errors],
        changes=report.changes,
    )
