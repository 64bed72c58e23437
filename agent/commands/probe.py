"""``kassa-agent probe URL``: one full poll of a register, printed as a table or JSON.

Without ``--protocol`` each known protocol is tried in turn (likeliest first for well-known TCP
ports). Failures print the cause and the fix and exit non-zero:
2 bad arguments, 3 port/link problem, 4 no register answered, 5 the poll itself failed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from msgspec.structs import replace

from agent.commands.no_answer import is_tcp, no_answer
from agent.commands.tcp_scan import likeliest_first
from agent.drivers.errors import DriverError, split_hint
from agent.drivers.link import LinkError
from agent.drivers.registry import (
    DEFAULT_RETRIES,
    DeviceConnection,
    DriverUnavailable,
    UnknownProtocol,
    available_protocols,
    detection_order,
)
from protocol.mqtt.wire import RegisterState, encode

EXIT_USAGE = 2
EXIT_LINK = 3
EXIT_NO_ANSWER = 4
EXIT_POLL_FAILED = 5

EXAMPLES = """\
examples:
  kassa-agent probe /dev/ttyACM0                       try every protocol at its default baud rate
  kassa-agent probe /dev/ttyUSB0 --protocol shtrih --baud 4800
  kassa-agent probe socket://192.168.1.50:7778         Shtrih over TCP
  kassa-agent probe usb://2912:0005 --json             ATOL over raw USB, machine-readable
  kassa-agent probe --device atol,/dev/ttyACM1,115200  same form as the config's devices
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "probe",
        help="poll one register once and show what the agent reads",
        description="Poll one register once and print what the agent would publish.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", nargs="?", help="port path, socket://HOST:PORT, usb://VID:PID or sim://…")
    parser.add_argument("--device", metavar="PROTOCOL,URL[,BAUD]", help="alternative to URL/--protocol/--baud")
    parser.add_argument("--protocol", "-p", choices=available_protocols(), help="skip auto-detection")
    parser.add_argument("--baud", "-b", type=int, help="baud rate (default: the protocol's usual one)")
    parser.add_argument("--timeout", type=float, default=1.0, metavar="S", help="answer timeout per command (default 1 s)")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries per command")
    parser.add_argument("--json", action="store_true", help="print the RegisterState as JSON")
    parser.set_defaults(func=probe_command)
    return parser


def fail(message: str, hint: str = "") -> None:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"fix:   {hint}", file=sys.stderr)


def protocols_to_try(url: str, chosen: str | None) -> list[str]:
    if chosen:
        return [chosen]
    if url.lower().startswith("usb://"):
        return ["atol"]  # raw USB access is only known for ATOL (VID 2912)
    return likeliest_first(url, detection_order())


def _split_device(spec: str) -> tuple[str, str, int | None]:
    parts = spec.split(",")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"--device {spec!r}: expected PROTOCOL,URL[,BAUD]")
    try:
        baud = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(f"--device {spec!r}: baud rate {parts[2]!r} is not a number") from None
    return parts[0], parts[1], baud


def probe_command(args: argparse.Namespace) -> int:
    url, protocol, baud = args.url, args.protocol, args.baud
    if args.device:
        try:
            protocol, url, baud = _split_device(args.device)
        except ValueError as exc:
            fail(str(exc))
            return EXIT_USAGE
    if not url:
        fail("no register given", "pass a port, e.g. `kassa-agent probe /dev/ttyACM0`, or run `kassa-agent detect`")
        return EXIT_USAGE
    failures: list[str] = []
    tried: list[str] = []
    for candidate in protocols_to_try(url, protocol):
        try:
            connection = DeviceConnection(candidate, url, baudrate=baud, timeout=args.timeout, retries=args.retries)
        except (UnknownProtocol, DriverUnavailable) as exc:
            fail(str(exc))
            return EXIT_USAGE
        with connection:
            try:
                connection.identify()
            except LinkError as exc:
                fail(*split_hint(exc))
                return EXIT_LINK
            except DriverError as exc:
                where = "" if is_tcp(url) else f" @ {connection.baudrate}"  # TCP has no baud rate
                failures.append(f"{candidate}{where}: {split_hint(exc)[0]}")
                tried.append(candidate)
                continue
            try:
                state = connection.poll()
            except (LinkError, DriverError) as exc:
                cause, hint = split_hint(exc)
                fail(f"the {candidate} register answered but the poll failed: {cause}", hint)
                return EXIT_POLL_FAILED
        state = replace(state, read_at=datetime.now(UTC))
        if args.json:
            print(msgspec.json.format(encode(state), indent=2).decode())
        else:
            print(render_state(state))
        return 0
    fail(*no_answer(url, tried, failures))
    return EXIT_NO_ANSWER


# --------------------------------------------------------------------------- rendering


def _unknown(value: object) -> str:
    return "unknown" if value is None else str(value)


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return ""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    text = f"{days} d {hours} h" if days else f"{hours} h {mins} min"
    return f" ({text} ago)"


def _flag(value: bool | None, yes: str, no: str) -> str:
    return "unknown" if value is None else (yes if value else no)


def state_rows(state: RegisterState) -> list[tuple[str, str]]:
    """The snapshot as (label, text) rows; unknown values are shown as such, never guessed."""
    fn, shift, ofd, dev = state.fn, state.shift, state.ofd, state.device
    clock = state.register_clock
    valid = _unknown(fn.valid_until)
    if fn.valid_until is not None and clock is not None:
        valid += f" ({(fn.valid_until - clock.date()).days} days left)"
    opened = f", opened {shift.opened_at:%Y-%m-%d %H:%M}{_age(state.shift_age())}" if shift.opened_at else ""
    oldest = (
        f", oldest #{ofd.first_unsent_number} from {ofd.first_unsent_at:%Y-%m-%d %H:%M}{_age(state.oldest_unsent_age())}"
        if ofd.unsent_count and ofd.first_unsent_at
        else ""
    )
    return [
        ("register", f"{state.protocol}: {_unknown(state.model)} (model id {_unknown(state.model_id)})"),
        ("register id", state.register_id),
        ("serial / RNM / INN", f"{_unknown(state.serial)} / {_unknown(state.rnm)} / {_unknown(state.inn)}"),
        ("firmware / FFD", f"{_unknown(state.firmware)} / {_unknown(state.ffd_version)}"),
        ("register clock", f"{clock:%Y-%m-%d %H:%M:%S}" if clock else "unknown"),
        ("shift", f"{shift.status.value} #{_unknown(shift.number)}, {_unknown(shift.receipts)} receipts{opened}"),
        ("last FD", _unknown(state.last_fd_number)),
        ("ФН", f"{_unknown(fn.serial)}, phase {_unknown(fn.phase)} {fn.phase_name or ''}".rstrip()),
        ("ФН valid until", valid),
        ("ФН resource", f"{_unknown(fn.documents_left)} documents, {_unknown(fn.free_memory_kb)} KB free"),
        ("ФН warnings", ", ".join(fn.warnings) or ("none" if fn.warning_flags is not None else "unknown")),
        ("OFD queue", f"{_unknown(ofd.unsent_count)} unsent{oldest}"),
        ("OFD link", _flag(ofd.transport_connected, "connected", "not connected")),
        ("paper / cover", f"{_flag(dev.paper_present, 'paper ok', 'PAPER OUT')} / {_flag(dev.cover_open, 'COVER OPEN', 'closed')}"),
        ("mode", f"{_unknown(dev.mode)}.{_unknown(dev.submode)}" + (f", last error: {dev.last_error}" if dev.last_error else "")),
    ]


def render_state(state: RegisterState) -> str:
    rows = state_rows(state)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)

