"""Give the calling thread its Python name at the OS level too (Linux ``comm``, 15 bytes), so
``top -H``, ``/proc/<pid>/task/*/stat`` and ``bench/ingest.py`` can tell the ingest writer, the
alert evaluator and the MQTT loop apart instead of seeing ``python`` three times."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_PR_SET_NAME = 15
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if ctypes.util.find_library("c") else None


def name_os_thread(name: str | None = None) -> None:
    """Best effort: does nothing where ``prctl`` is not there (not Linux)."""
    if _libc is None or not hasattr(_libc, "prctl"):
        return
    label = (name or threading.current_thread().name).encode()[:15]
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(label), 0, 0, 0)
