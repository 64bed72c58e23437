"""The values scenario files are written in: signed durations and ФН phases, and the error a bad one raises."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from protocol.kkt.fn import FnPhase

_DURATION = re.compile(r"^(?P<sign>[+-])?(?P<body>(?:\d+(?:\.\d+)?[dhms])+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}

_PHASES = {
    "setup": FnPhase.SETUP,
    "ready": FnPhase.READY_FOR_FISCALISATION,
    "fiscal": FnPhase.FISCAL,
    "post-fiscal": FnPhase.POST_FISCAL,
    "archive": FnPhase.ARCHIVE,
}
IDENTITY_KEYS = ("serial", "rnm", "inn", "model_name", "fn_serial", "ffd_version")


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or wrong; the message names the file and the key."""


def parse_duration(text: str, where: str = "duration") -> timedelta:
    """``"10d"``, ``"-23h40m"``, ``"+30s"``, ``"1.5h"`` → timedelta (sign optional)."""
    if not isinstance(text, str):
        raise ScenarioError(f"{where}: expected a duration string like \"-23h40m\", got {text!r}")
    match = _DURATION.match(text.strip())
    if match is None:
        raise ScenarioError(f"{where}: {text!r} is not a duration (use d/h/m/s, e.g. \"10d\", \"-23h40m\", \"+30s\")")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(match["body"]))
    return timedelta(seconds=-seconds if match["sign"] == "-" else seconds)


def parse_phase(value: Any, where: str) -> FnPhase:
    if isinstance(value, str) and value in _PHASES:
        return _PHASES[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in {int(p) for p in FnPhase}:
        return FnPhase(value)
    raise ScenarioError(f"{where}: expected one of {', '.join(_PHASES)} (or the phase byte), got {value!r}")
