"""What the ФН itself reports in a state: refused-command codes and its 30h warning bits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.kkt.fn import FN_ERROR_ARCHIVE_FULL, FnWarning, fn_error_meaning

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState as RegisterState

# ФН result 14h: "исчерпан ресурс хранения документов для ОФД" — the archive is as good as full.
_FN_ERROR_OFD_STORAGE_EXHAUSTED = 0x14


def fn_reports_error(state: RegisterState | None, code: int) -> bool:
    """True when the ФН refused a command of this poll with result ``code``.

    Drivers list the codes in ``DeviceState.fn_errors``; states from agents that predate that
    field only carry the error *with its meaning* in ``last_error`` (no fixed format), so for them
    the meaning text from ``protocol.kkt.fn.FN_ERRORS`` is matched, case-insensitively.
    """
    if state is None:
        return False
    if code in state.device.fn_errors:
        return True
    if state.device.fn_errors or not state.device.last_error:
        return False
    return fn_error_meaning(code).casefold() in state.device.last_error.casefold()


def fn_flag(state: RegisterState | None, flag: FnWarning) -> bool | None:
    """A 30h warning bit: from the raw byte, else from the decoded names; None when not read."""
    if state is None:
        return None
    if state.fn.warning_flags is not None:
        return bool(state.fn.warning_flags & flag)
    if state.fn.warnings:
        return flag.name in state.fn.warnings
    return None


def fn_memory_exhausted(state: RegisterState | None) -> bool:
    if state is None:
        return False
    return (
        state.fn.documents_left == 0
        or fn_reports_error(state, FN_ERROR_ARCHIVE_FULL)
        or fn_reports_error(state, _FN_ERROR_OFD_STORAGE_EXHAUSTED)
    )
