"""``kassa-agent detect``: find registers on serial ports and ATOL USB, and say how to probe them.

Every port is tried with each protocol at each of its likely baud rates (``default_baudrates``
of the session class, likeliest first) with a short timeout and no retries, stopping at the
first answer. Progress goes to stderr; the findings (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from agent.commands.tcp_scan import UnknownHost, check_host, host_urls, likeliest_first
from agent.drivers.errors import DriverError, split_hint
from agent.drivers.link import LinkError, PortPermissionDenied
from agent.drivers.registry import DeviceConnection, available_protocols, detection_order, get_session_class

EXAMPLES = """\
examples:
  kassa-agent detect                                   scan every serial port and ATOL USB device
  kassa-agent detect --ports /dev/ttyACM0 /dev/ttyUSB0
  kassa-agent detect --ports socket://192.168.1.50:7778 --json
  kassa-agent detect --host 192.168.1.50               a network register: tries TCP ports 7778, 12345, 5555
"""
DETECT_TIMEOUT = 0.3  # a register answers ENQ/a status request within tens of ms


@dataclass
class Finding:
    port: str
    protocol: str | None = None
    baudrate: int | None = None
    model: str | None = None
    error: str | None = None
    hint: str | None = None

    @property
    def probe_command(self) -> str | None:
        if self.protocol is None:
            return None
        baud = f" --baud {self.baudrate}" if self.baudrate and "://" not in self.port else ""
        return f"kassa-agent probe {self.port} --protocol {self.protocol}{baud}"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "detect",
        help="find registers on serial ports and USB (protocol and baud rate)",
        description="Scan ports, try each protocol at its likely baud rates, and print what answered.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ports", nargs="+", metavar="URL", help="only these ports/URLs (default: scan)")
    parser.add_argument("--host", action="append", metavar="HOST",
                        help="a network register's address: its known TCP ports are tried (repeatable)")
    parser.add_argument("--protocol", "-p", choices=available_protocols(), action="append", help="only this protocol (repeatable)")
    parser.add_argument("--timeout", type=float, default=DETECT_TIMEOUT, metavar="S", help=f"answer timeout per try (default {DETECT_TIMEOUT} s)")
    parser.add_argument("--json", action="store_true", help="print findings as JSON")
    parser.set_defaults(func=detect_command)
    return parser


def scan_ports() -> list[str]:
    """Serial ports the OS lists, then ATOL raw-USB devices (when pyusb and a backend exist)."""
    from serial.tools import list_ports

    ports = sorted(info.device for info in list_ports.comports())
    try:
        from agent.drivers.usb import find_atol_usb_devices
    except ImportError:
        return ports
    return ports + find_atol_usb_devices()


def _attempts(port: str, protocols: list[str]) -> list[tuple[str, int | None]]:
    if port.lower().startswith("usb://"):
        return [("atol", None)]  # raw USB: no baud rate, ATOL only
    if "://" in port and not port.startswith("rfc2217://"):
        return [(p, None) for p in protocols]  # network/in-process: the baud rate means nothing
    return [(p, baud) for p in protocols for baud in get_session_class(p).default_baudrates]


def detect_port(port: str, protocols: list[str], timeout: float, progress: TextIO) -> Finding:
    last = Finding(port, error="no register answered", hint="check power and cable; try another port")
    for protocol, baud in _attempts(port, likeliest_first(port, protocols)):
        label = f"{protocol} @ {baud}" if baud else protocol
        progress.write(f"  {port}: trying {label} … ")
        progress.flush()
        try:
            with DeviceConnection(protocol, port, baudrate=baud, timeout=timeout, retries=0) as connection:
                model = connection.identify()
        except PortPermissionDenied as exc:
            progress.write("permission denied\n")
            cause, hint = split_hint(exc)
            return Finding(port, error=cause, hint=hint)
        except LinkError as exc:
            progress.write("port unusable\n")
            cause, hint = split_hint(exc)
            return Finding(port, error=cause, hint=hint)
        except DriverError as exc:
            progress.write(f"{type(exc).__name__}\n")
            continue
        except Exception as exc:  # a driver bug on garbage must not end the scan
            progress.write(f"failed ({type(exc).__name__}: {exc})\n")
            continue
        progress.write(f"found {model}\n")
        return Finding(port, protocol, connection.baudrate if baud else None, model)
    return last


def detect_command(args: argparse.Namespace) -> int:
    protocols = [p for p in detection_order() if not args.protocol or p in args.protocol]
    findings: list[Finding] = []
    ports = list(args.ports or [])
    for host in args.host or []:
        try:
            check_host(host)
        except UnknownHost as exc:
            print(f"  {host}: {exc}", file=sys.stderr)
            findings.append(Finding(host, error=str(exc), hint=exc.hint))
            continue
        ports += host_urls(host)
    if not ports and not args.host:
        ports = scan_ports()
    if not ports and not findings:
        print(
            "no serial ports or ATOL USB devices found.\n"
            "  - is the register on and its USB cable plugged in? (`dmesg | tail` shows new devices)\n"
            "  - a network register: `kassa-agent probe socket://IP:7778` (Shtrih) or socket://IP:5555 (ATOL)",
            file=sys.stderr,
        )
        return 1
    print(f"scanning {len(ports)} port(s) for {', '.join(protocols)} registers", file=sys.stderr)
    findings += [detect_port(port, protocols, args.timeout, sys.stderr) for port in ports]
    if args.json:
        print(json.dumps([asdict(f) | {"probe_command": f.probe_command} for f in findings], ensure_ascii=False, indent=2))
    else:
        print(render_findings(findings))
    return 0 if any(f.protocol for f in findings) else 1


def render_findings(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        if f.protocol:
            baud = f" at {f.baudrate} baud" if f.baudrate else ""
            lines.append(f"FOUND  {f.port}: {f.protocol} register {f.model!r}{baud}\n       run: {f.probe_command}")
        else:
            error = f.error if (f.error or "").startswith(f.port) else f"{f.port}: {f.error}"
            lines.append(f"none   {error}" + (f"\n       fix: {f.hint}" if f.hint else ""))
    return "\n".join(lines)
