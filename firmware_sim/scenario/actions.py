"""Timeline actions: what an ``[[at]]`` entry (or the runner's cashier) does to the register model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from firmware_sim.model import RegisterModel
from firmware_sim.scenario.values import parse_duration

DEFAULT_NEW_FN_LIFE = timedelta(days=450)  # a ФН-15 lasts 15 months


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


def _ofd_server(model: RegisterModel, p: dict[str, Any]) -> str:
    model.ofd_host = p.get("ofd_host", model.ofd_host)
    model.ofd_port = p.get("ofd_port", model.ofd_port)
    return f"OFD server set to {model.ofd_host}:{model.ofd_port}"


def open_shift(model: RegisterModel, _: dict[str, Any]) -> str:
    document = model.open_shift()
    return f"shift {model.shift_number} opened, FD {document.number}"


def _close_shift(model: RegisterModel, _: dict[str, Any]) -> str:
    document = model.close_shift()
    return f"shift {model.shift_number} closed, FD {document.number}"


def fn_memory_full(model: RegisterModel, _: dict[str, Any]) -> str:
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
    "ofd_stops_acking": (frozenset(), _flag("ofd_acks", False, "OFD stops sending receipts")),
    "ofd_acks": (frozenset(), _flag("ofd_acks", True, "OFD sends receipts again")),
    "ofd_server": (frozenset({"ofd_host", "ofd_port"}), _ofd_server),
    "critical_error": (frozenset(), _flag("critical_error", True, "ФН critical error")),
    "fn_memory_full": (frozenset(), fn_memory_full),
    "sell": (frozenset({"count", "amount"}), _sell),
    "open_shift": (frozenset(), open_shift),
    "close_shift": (frozenset(), _close_shift),
    "deliver": (frozenset(), lambda m, _: f"OFD took {m.deliver_to_ofd()} document(s)"),
    "replace_fn": (frozenset({"serial", "valid_for"}), _replace_fn),
}
