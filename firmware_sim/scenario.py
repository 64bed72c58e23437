"""Scenario files: the initial state of a simulated register and a timeline of what happens to it.

A scenario is a versioned TOML file (``format = 1``). Times are relative to the simulation
start, written as signed durations (``"10d"``, ``"-23h40m"``, ``"+30s"``). Example::

    format = 1
    description = "shift opened 23 h 40 min ago: expires 20 sim-minutes after start"

    [state]
    shift_opened = "-23h40m"
    unsent = { count = 40, oldest = "-20d" }
    ofd_connected = false

    [life]                 # optional background activity
    sell_every = "5m"      # one receipt every 5 sim-minutes
    ofd_drain_every = "1m" # the OFD takes the whole queue when connected
    opens = "08:00"        # the store's day on the register clock: the cashier opens the shift
    closes = "22:00"       # ... and closes it (Z-report); sales only in between

    [[at]]
    t = "+30s"
    action = "paper_out"

``[state]`` keys (all optional): ``fn_valid_for`` (duration, default 450d), ``fn_phase``
(setup/ready/fiscal/post-fiscal/archive or the phase byte), ``shift_opened`` (negative duration),
``shift_number`` (of the open shift, else of the last closed one), ``receipts`` (sold at start in
the open shift), ``unsent = {count, oldest}`` (``count`` is what the register reports at start,
this shift's open report and receipts included), ``ofd_connected``, ``paper``, ``cover_open``,
``documents_left``, ``fn_memory_full``, ``critical_error``, and the identity strings ``serial``,
``rnm``, ``inn``, ``model_name``, ``fn_serial``, ``ffd_version`` ("1.05", "1.1" or "1.2"). ``start`` (top level) pins the register clock's
start. Timeline actions: see :data:`ACTIONS` (``sell`` takes ``count``/``amount``,
``replace_fn`` takes ``serial``/``valid_for``).

Shipped scenarios live in ``firmware_sim/scenarios/``; :func:`load_scenario` takes a name
or a path. Bad files raise :class:`ScenarioError` naming the file and the offending key.
"""

from __future__ import annotations

import re
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.model import FiscalRefused, ReceiptState, RegisterModel
from protocol.kkt.fn import FFD_VERSIONS, FnPhase

FORMAT_VERSION = 1
SCENARIO_DIR = Path(__file__).with_name("scenarios")
DEFAULT_NEW_FN_LIFE = timedelta(days=450)  # a ФН-15 lasts 15 months
MAX_CATCH_UP_SALES = 500  # per tick: a huge speed-up must not freeze the device thread

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
_IDENTITY_KEYS = ("serial", "rnm", "inn", "model_name", "fn_serial", "ffd_version")
_STATE_KEYS = frozenset(
    {
        "fn_valid_for", "fn_phase", "shift_opened", "shift_number", "receipts", "unsent",
        "ofd_connected", "paper", "cover_open", "documents_left", "fn_memory_full",
        "critical_error", "serial", "rnm", "inn", "model_name", "fn_serial", "ffd_version",
    }
)
_LIFE_KEYS = frozenset({"sell_every", "ofd_drain_every", "amount", "opens", "closes"})
_TIME_OF_DAY = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")
_TOP_KEYS = frozenset({"format", "description", "start", "state", "life", "at"})


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


# --------------------------------------------------------------------------- typed file contents


@dataclass(frozen=True)
class Life:
    sell_every: timedelta | None = None
    ofd_drain_every: timedelta | None = None
    amount: int = 10_000  # kopecks per background sale
    opens: time | None = None  # the store's trading day on the register clock (both or neither)
    closes: time | None = None

    def trading(self, now: datetime) -> bool:
        """Inside the trading day (always, without a timetable)."""
        if self.opens is None or self.closes is None:
            return True
        return self.opens <= now.time() < self.closes

    def last_close(self, now: datetime) -> datetime | None:
        """The most recent closing time at or before ``now``; None without a timetable."""
        if self.closes is None:
            return None
        today = datetime.combine(now.date(), self.closes)
        return today if today <= now else today - timedelta(days=1)


@dataclass(frozen=True)
class TimedAction:
    at: timedelta
    action: str
    params: dict[str, Any]
    where: str  # "at[3]" for messages


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    state: dict[str, Any]
    timeline: tuple[TimedAction, ...] = ()
    life: Life = field(default_factory=Life)
    start: datetime | None = None  # fixed start time; None = whenever the simulation starts

    def build(self, clock: Callable[[], datetime]) -> RegisterModel:
        """A fresh model in this scenario's initial state, relative to ``clock()`` as the start."""
        return _build_model(self, clock)


# --------------------------------------------------------------------------- loading


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
    return Scenario(name, description, state, timeline, life, start)


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


def _validate_state(state: dict[str, Any]) -> None:
    for key in ("fn_valid_for", "shift_opened"):
        if key in state:
            parse_duration(state[key], f"state.{key}")
    if "shift_opened" in state and parse_duration(state["shift_opened"]) > timedelta(0):
        raise ScenarioError("state.shift_opened: must be in the past (e.g. \"-23h40m\")")
    for key in ("ofd_connected", "paper", "cover_open", "fn_memory_full", "critical_error"):
        _bool(state, key, "state.")
    for key in ("shift_number", "receipts", "documents_left"):
        if key in state:
            _int(state, key, "state.", default=0)
    for key in _IDENTITY_KEYS:
        if key in state and not isinstance(state[key], str):
            raise ScenarioError(f"state.{key}: expected a string, got {state[key]!r}")
    if state.get("ffd_version", "1.2") not in FFD_VERSIONS.values():
        raise ScenarioError(f"state.ffd_version: expected one of {', '.join(FFD_VERSIONS.values())}")
    if "fn_phase" in state:
        _phase(state["fn_phase"], "state.fn_phase")
    if "unsent" in state:
        unsent = state["unsent"]
        if not isinstance(unsent, dict) or set(unsent) != {"count", "oldest"}:
            raise ScenarioError('state.unsent: expected { count = 40, oldest = "-20d" }')
        _int(unsent, "count", "state.unsent.", default=0, minimum=1)
        if parse_duration(unsent["oldest"], "state.unsent.oldest") >= timedelta(0):
            raise ScenarioError("state.unsent.oldest: must be in the past (e.g. \"-20d\")")


def _phase(value: Any, where: str) -> FnPhase:
    if isinstance(value, str) and value in _PHASES:
        return _PHASES[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in {int(p) for p in FnPhase}:
        return FnPhase(value)
    raise ScenarioError(f"{where}: expected one of {', '.join(_PHASES)} (or the phase byte), got {value!r}")


# --------------------------------------------------------------------------- timeline actions

def _sell(model: RegisterModel, p: dict[str, Any]) -> str:
    for _ in range(p.get("count", 1)):
        model.sell(p.get("amount", 10_000))
    return f"sold {p.get('count', 1)} receipt(s), last FD {model.last_fd_number}"


def _replace_fn(model: RegisterModel, p: dict[str, Any]) -> str:
    valid_for = parse_duration(p["valid_for"]) if "valid_for" in p else DEFAULT_NEW_FN_LIFE
    serial = p.get("serial") or f"{int(model.fn_serial) + 1:016d}"
    model.replace_fn(serial, (model.now() + valid_for).date())
    return f"ФН replaced: {serial}, valid until {model.fn_valid_until}"


def _flag(attr: str, value: bool, text: str) -> Callable[[RegisterModel, dict[str, Any]], str]:
    def apply(model: RegisterModel, _: dict[str, Any]) -> str:
        setattr(model, attr, value)
        return text

    return apply


def _open_shift(model: RegisterModel, _: dict[str, Any]) -> str:
    document = model.open_shift()
    return f"shift {model.shift_number} opened, FD {document.number}"


def _close_shift(model: RegisterModel, _: dict[str, Any]) -> str:
    document = model.close_shift()
    return f"shift {model.shift_number} closed, FD {document.number}"


def _fn_memory_full(model: RegisterModel, _: dict[str, Any]) -> str:
    model.documents_left, model.memory_almost_full = 0, True
    return "ФН memory full"


# action name → (the parameters it takes, what it does to the model)
ACTIONS: dict[str, tuple[frozenset[str], Callable[[RegisterModel, dict[str, Any]], str]]] = {
    "paper_out": (frozenset(), _flag("paper_present", False, "paper out")),
    "paper_in": (frozenset(), _flag("paper_present", True, "paper loaded")),
    "cover_open": (frozenset(), _flag("cover_open", True, "cover opened")),
    "cover_close": (frozenset(), _flag("cover_open", False, "cover closed")),
    "ofd_down": (frozenset(), _flag("ofd_connected", False, "OFD unreachable")),
    "ofd_up": (frozenset(), _flag("ofd_connected", True, "OFD reachable")),
    "critical_error": (frozenset(), _flag("critical_error", True, "ФН critical error")),
    "fn_memory_full": (frozenset(), _fn_memory_full),
    "sell": (frozenset({"count", "amount"}), _sell),
    "open_shift": (frozenset(), _open_shift),
    "close_shift": (frozenset(), _close_shift),
    "deliver": (frozenset(), lambda m, _: f"OFD took {m.deliver_to_ofd()} document(s)"),
    "replace_fn": (frozenset({"serial", "valid_for"}), _replace_fn),
}


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
    return TimedAction(at, action, params, where)


# --------------------------------------------------------------------------- initial state


def _build_model(scenario: Scenario, clock: Callable[[], datetime]) -> RegisterModel:
    s = scenario.state
    start = clock()
    identity = {k: s[k] for k in _IDENTITY_KEYS if k in s}
    valid_until: date = (start + parse_duration(s.get("fn_valid_for", "450d"))).date()
    model = RegisterModel(clock=clock, fn_valid_until=valid_until, **identity)
    # open_shift() numbers the new shift last + 1, so step back when the file names the open one.
    model.shift_number = max(s.get("shift_number", 1 if "shift_opened" in s else 0) - ("shift_opened" in s), 0)
    # Unsent documents first: they are the oldest entries of the OFD queue, whose head the ФН reports.
    if "unsent" in s:
        # ``count`` is what a reader sees at start: the documents made below are unsent too.
        made_later = ("shift_opened" in s) + s.get("receipts", 0)
        backdated = s["unsent"]["count"] - made_later
        if backdated < 1:
            raise ScenarioError(
                f"{scenario.name}: state.unsent.count {s['unsent']['count']} must exceed the {made_later} "
                "document(s) the open shift and its receipts make (they are unsent too)"
            )
        model.backdate_unsent(backdated, start + parse_duration(s["unsent"]["oldest"]))
    try:
        if "shift_opened" in s:
            model.open_shift(at=start + parse_duration(s["shift_opened"]))
        for _ in range(s.get("receipts", 0)):
            model.sell()
    except (FiscalRefused, ReceiptState) as exc:
        raise ScenarioError(f"{scenario.name}: state.shift_opened/receipts: the register refuses: {exc}") from exc
    if s.get("ofd_connected", True) and "unsent" not in s:
        model.deliver_to_ofd()  # a connected register's past documents reached the OFD long ago
    model.ofd_connected = s.get("ofd_connected", True)
    model.paper_present = s.get("paper", True)
    model.cover_open = s.get("cover_open", False)
    model.critical_error = s.get("critical_error", False)
    if "documents_left" in s:
        model.documents_left = s["documents_left"]
    if s.get("fn_memory_full", False):
        _fn_memory_full(model, {})
    # The phase last: a ФН that is not fiscal would refuse the documents made above.
    if "fn_phase" in s:
        model.fn_phase = _phase(s["fn_phase"], "state.fn_phase")
    return model


# --------------------------------------------------------------------------- running it


class ScenarioRunner:
    """Applies a scenario's timeline and background life to a model as the clock passes them.

    Hosts pump the device from their own threads, so every change and every ``feed`` go
    through one lock: wrap the device with :meth:`guard` and call :meth:`tick` from anywhere.
    A refused action (e.g. a sale while the shift is expired) becomes a logged event, never
    an exception that would end the host loop.
    """

    def __init__(
        self, scenario: Scenario, model: RegisterModel, *, on_event: Callable[[str], None] | None = None
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.started = model.now()
        self.lock = threading.RLock()
        self._on_event = on_event or (lambda _: None)
        self._next_action = 0
        self._sales_done = 0
        self._drains_done = 0
        self.events: list[str] = []

    def elapsed(self) -> timedelta:
        return self.model.now() - self.started

    def tick(self) -> list[str]:
        """Apply everything due by now; returns the events it produced (also sent to on_event)."""
        with self.lock:
            elapsed = self.elapsed()
            produced: list[str] = []
            timeline = self.scenario.timeline
            while self._next_action < len(timeline) and timeline[self._next_action].at <= elapsed:
                item = timeline[self._next_action]
                self._next_action += 1
                produced.append(self._apply(item.action, item.params, f"{item.where} {item.action}"))
            produced += self._live(elapsed)
            for text in produced:
                self.events.append(text)
                self._on_event(text)
            return produced

    def _apply(self, action: str, params: dict[str, Any], label: str) -> str:
        try:
            return ACTIONS[action][1](self.model, params)
        except FiscalRefused as exc:
            return f"{label}: refused by the ФН (code {exc.code:#04x})"
        except ReceiptState as exc:
            return f"{label}: refused: {exc}"

    def _timetable(self) -> list[str]:
        """The cashier's day: close the shift outside trading hours or once it outlived a closing
        time (the register was off at the close), open it again when trading."""
        life, model = self.scenario.life, self.model
        out: list[str] = []
        now = model.now()
        last_close = life.last_close(now)
        if last_close is None:
            return out
        opened = model.shift_opened_at
        if model.shift_open and (not life.trading(now) or (opened is not None and opened < last_close)):
            if model.receipt_open:
                return out  # a cashier finishes the receipt first
            out.append(self._apply("close_shift", {}, "timetable close_shift"))
        if life.trading(now) and not model.shift_open and model.paper_present:
            out.append(self._apply("open_shift", {}, "timetable open_shift"))
        return out

    def _live(self, elapsed: timedelta) -> list[str]:
        life, out = self.scenario.life, self._timetable()
        if life.sell_every is not None:
            due = min(int(elapsed / life.sell_every) - self._sales_done, MAX_CATCH_UP_SALES)
            for _ in range(max(due, 0)):
                self._sales_done += 1
                text = self._background_sale(life.amount)
                if text:
                    out.append(text)
        if life.ofd_drain_every is not None:
            due_drains = int(elapsed / life.ofd_drain_every) - self._drains_done
            if due_drains > 0:
                self._drains_done += due_drains
                delivered = self.model.deliver_to_ofd()
                if delivered:
                    out.append(f"OFD took {delivered} document(s)")
        return out

    def _background_sale(self, amount: int) -> str | None:
        """A cashier's sale: opens a shift when none is open, waits while paper is out or the cover open."""
        model = self.model
        if not model.paper_present or model.cover_open or not self.scenario.life.trading(model.now()):
            return None
        try:
            opened = "" if model.shift_open else _open_shift(model, {}) + "; "
            return f"{opened}sale FD {model.sell(amount).number}"
        except FiscalRefused as exc:
            return f"background sale refused by the ФН (code {exc.code:#04x})"
        except ReceiptState as exc:
            return f"background sale refused: {exc}"

    def guard(self, device: DeviceEndpoint) -> DeviceEndpoint:
        """The device with every feed serialised against timeline changes (and ticking first)."""
        return _Guarded(device, self)


class _Guarded:
    def __init__(self, device: DeviceEndpoint, runner: ScenarioRunner) -> None:
        self.device = device
        self.runner = runner

    def feed(self, data: bytes) -> bytes:
        with self.runner.lock:
            self.runner.tick()
            return self.device.feed(data)

    def reset(self) -> None:
        with self.runner.lock:
            self.device.reset()

    def idle(self) -> bytes:
        with self.runner.lock:
            return self.device.idle()
