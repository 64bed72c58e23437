"""Reading scenario files: TOML text → a validated :class:`Scenario` (the format: see :mod:`firmware_sim.scenario`).

Every bad value raises :class:`ScenarioError` naming the file and the offending key.
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from firmware_sim.action_faults import SimAction
from firmware_sim.scenario.actions import ACTIONS
from firmware_sim.scenario.definition import ActionFault, Life, Scenario, TimedAction
from firmware_sim.scenario.values import IDENTITY_KEYS, ScenarioError, parse_duration, parse_phase
from protocol.kkt.fn import FFD_VERSIONS

FORMAT_VERSION = 1
SCENARIO_DIR = Path(__file__).parent.parent / "scenarios"

_STATE_KEYS = frozenset(
    {
        "fn_valid_for", "fn_phase", "shift_opened", "shift_number", "receipts", "unsent",
        "ofd_connected", "paper", "cover_open", "documents_left", "fn_memory_full",
        "critical_error", "serial", "rnm", "inn", "model_name", "fn_serial", "ffd_version",
        "ofd_acks", "autonomous", "ofd_host", "ofd_port", "ofd_settings_changed",
    }
)
_LIFE_KEYS = frozenset({"sell_every", "ofd_drain_every", "amount", "opens", "closes"})
_TIME_OF_DAY = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")
_TOP_KEYS = frozenset({"format", "description", "start", "state", "life", "at", "action_faults"})
_FAULT_KEYS = frozenset({"action", "refuse", "drop", "executed"})
_PROTOCOL_FAMILIES = frozenset({"shtrih", "atol"})


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``"long-shift"``) or any scenario file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.toml"
        if not path.exists():
            known = ", ".join(available_scenarios())
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}: shipped ones are {known}, or pass a .toml path")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc.strerror or exc}") from exc
    return parse_scenario(text, source=str(path), name=path.stem)


def parse_scenario(text: str, *, source: str = "<scenario>", name: str = "custom") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return _from_dict(data, name)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def _from_dict(data: dict[str, Any], name: str) -> Scenario:
    _reject_unknown(data, _TOP_KEYS, "")
    if data.get("format") != FORMAT_VERSION:
        raise ScenarioError(f"format: expected format = {FORMAT_VERSION}, got {data.get('format')!r}")
    state = _table(data, "state")
    _reject_unknown(state, _STATE_KEYS, "state.")
    _validate_state(state)
    life_table = _table(data, "life")
    _reject_unknown(life_table, _LIFE_KEYS, "life.")
    opens, closes = _time_of_day(life_table, "opens"), _time_of_day(life_table, "closes")
    if (opens is None) != (closes is None) or (opens is not None and closes is not None and opens >= closes):
        raise ScenarioError('life.opens/life.closes: give both, opening first (e.g. opens = "08:00", closes = "22:00")')
    life = Life(
        sell_every=_positive_duration(life_table, "sell_every", "life."),
        ofd_drain_every=_positive_duration(life_table, "ofd_drain_every", "life."),
        amount=_int(life_table, "amount", "life.", default=10_000),
        opens=opens,
        closes=closes,
    )
    raw_timeline = data.get("at", [])
    if not isinstance(raw_timeline, list):
        raise ScenarioError("at: use [[at]] tables, one per timed action")
    timeline = tuple(sorted((_timed_action(i, entry) for i, entry in enumerate(raw_timeline)), key=lambda a: a.at))
    start = data.get("start")
    if start is not None and (not isinstance(start, datetime) or start.tzinfo is not None):
        raise ScenarioError("start: expected a local date-time without offset, e.g. start = 2026-03-02T09:00:00")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError("description: expected a string")
    raw_faults = data.get("action_faults", [])
    if not isinstance(raw_faults, list):
        raise ScenarioError("action_faults: use [[action_faults]] tables, one per scripted fault")
    faults = tuple(_action_fault(i, entry) for i, entry in enumerate(raw_faults))
    return Scenario(name, description, state, timeline, life, start, faults)


def _reject_unknown(table: dict[str, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ScenarioError(f"unknown key {prefix}{unknown[0]} (allowed: {', '.join(sorted(known))})")


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(f"{key}: expected a [{key}] table")
    return value


def _int(table: dict[str, Any], key: str, prefix: str, *, default: int, minimum: int = 0) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ScenarioError(f"{prefix}{key}: expected an integer ≥ {minimum}, got {value!r}")
    return value


def _bool(table: dict[str, Any], key: str, prefix: str) -> None:
    if key in table and not isinstance(table[key], bool):
        raise ScenarioError(f"{prefix}{key}: expected true or false, got {table[key]!r}")


def _positive_duration(table: dict[str, Any], key: str, prefix: str) -> timedelta | None:
    if key not in table:
        return None
    value = parse_duration(table[key], f"{prefix}{key}")
    if value <= timedelta(0):
        raise ScenarioError(f"{prefix}{key}: must be a positive duration, got {table[key]!r}")
    return value


def _time_of_day(table: dict[str, Any], key: str) -> time | None:
    if key not in table:
        return None
    match = _TIME_OF_DAY.match(str(table[key])) if isinstance(table[key], str) else None
    if match is None:
        raise ScenarioError(f'life.{key}: expected a time of day "HH:MM", e.g. "08:00", got {table[key]!r}')
    return time(int(match["h"]), int(match["m"]))


def _ofd_server(table: dict[str, Any], prefix: str) -> None:
    """``ofd_host`` (a name or address, ≤ 64 bytes) and ``ofd_port`` (1..65535), where given."""
    host = table.get("ofd_host", "localhost")
    if not isinstance(host, str) or not host or len(host.encode("cp1251", errors="replace")) > 64:
        raise ScenarioError(f"{prefix}ofd_host: expected a host name up to 64 characters, got {host!r}")
    if "ofd_port" in table:
        _int(table, "ofd_port", prefix, default=0, minimum=1)
        if table["ofd_port"] > 0xFFFF:
            raise ScenarioError(f"{prefix}ofd_port: expected a TCP port 1..65535, got {table['ofd_port']!r}")


def _validate_state(state: dict[str, Any]) -> None:
    for key in ("fn_valid_for", "shift_opened"):
        if key in state:
            parse_duration(state[key], f"state.{key}")
    if "shift_opened" in state and parse_duration(state["shift_opened"]) > timedelta(0):
        raise ScenarioError("state.shift_opened: must be in the past (e.g. \"-23h40m\")")
    for key in (
        "ofd_connected", "paper", "cover_open", "fn_memory_full", "critical_error", "ofd_acks", "autonomous",
        "ofd_settings_changed",
    ):
        _bool(state, key, "state.")
    _ofd_server(state, "state.")
    if state.get("autonomous") and "unsent" in state:
        raise ScenarioError("state.unsent: an autonomous register sends nothing to an OFD, so nothing is unsent")
    for key in ("shift_number", "receipts", "documents_left"):
        if key in state:
            _int(state, key, "state.", default=0)
    for key in IDENTITY_KEYS:
        if key in state and not isinstance(state[key], str):
            raise ScenarioError(f"state.{key}: expected a string, got {state[key]!r}")
    if state.get("ffd_version", "1.2") not in FFD_VERSIONS.values():
        raise ScenarioError(f"state.ffd_version: expected one of {', '.join(FFD_VERSIONS.values())}")
    if "fn_phase" in state:
        parse_phase(state["fn_phase"], "state.fn_phase")
    if "unsent" in state:
        unsent = state["unsent"]
        if not isinstance(unsent, dict) or set(unsent) != {"count", "oldest"}:
            raise ScenarioError('state.unsent: expected { count = 40, oldest = "-20d" }')
        _int(unsent, "count", "state.unsent.", default=0, minimum=1)
        if parse_duration(unsent["oldest"], "state.unsent.oldest") >= timedelta(0):
            raise ScenarioError("state.unsent.oldest: must be in the past (e.g. \"-20d\")")



def _timed_action(index: int, entry: Any) -> TimedAction:
    where = f"at[{index}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected a table with t and action")
    if "t" not in entry or "action" not in entry:
        raise ScenarioError(f"{where}: needs both t (e.g. \"+30s\") and action")
    at = parse_duration(entry["t"], f"{where}.t")
    if at < timedelta(0):
        raise ScenarioError(f"{where}.t: timeline times count from the start and must be ≥ 0, got {entry['t']!r}")
    action = entry["action"]
    if action not in ACTIONS:
        raise ScenarioError(f"{where}.action: unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
    allowed, _ = ACTIONS[action]
    params = {k: v for k, v in entry.items() if k not in ("t", "action")}
    extra = sorted(set(params) - allowed)
    if extra:
        raise ScenarioError(f"{where}.{extra[0]}: action {action!r} takes {', '.join(sorted(allowed)) or 'no parameters'}")
    for key in ("count", "amount"):
        if key in params:
            _int(params, key, f"{where}.", default=1, minimum=1)
    if "valid_for" in params:
        parse_duration(params["valid_for"], f"{where}.valid_for")
    _ofd_server(params, f"{where}.")
    return TimedAction(at, action, params, where)


def _action_fault(index: int, entry: Any) -> ActionFault:
    """``{action, refuse = CODE | {shtrih = CODE, atol = CODE}}`` or ``{action, drop = "2s", executed}``."""
    where = f"action_faults[{index}]"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: expected a table with action and refuse or drop")
    _reject_unknown(entry, _FAULT_KEYS, f"{where}.")
    try:
        action = SimAction(str(entry.get("action")))
    except ValueError:
        known = ", ".join(a.value for a in SimAction)
        raise ScenarioError(f"{where}.action: unknown action {entry.get('action')!r} (known: {known})") from None
    if ("refuse" in entry) == ("drop" in entry):
        raise ScenarioError(f"{where}: give either refuse (the register's error code) or drop (a duration)")
    if "drop" in entry:
        _bool(entry, "executed", f"{where}.")
        drop = _positive_duration(entry, "drop", f"{where}.")
        return ActionFault(action, drop=drop, executed=entry.get("executed", True))
    if "executed" in entry:
        raise ScenarioError(f"{where}.executed: only a drop carries the action out or not")
    refuse = entry["refuse"]
    codes = refuse if isinstance(refuse, dict) else {family: refuse for family in _PROTOCOL_FAMILIES}
    _reject_unknown(codes, _PROTOCOL_FAMILIES, f"{where}.refuse.")
    for family, code in codes.items():
        if not isinstance(code, int) or isinstance(code, bool) or not 1 <= code <= 0xFF:
            raise ScenarioError(f"{where}.refuse: {family} error code must be 1..255, got {code!r}")
    return ActionFault(action, refuse=dict(codes))
