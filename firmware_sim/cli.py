"""``kassa-sim``: run a simulated register on a pty or a TCP port until SIGINT/SIGTERM.

The first line of stdout is what to connect to (a pty path or ``socket://127.0.0.1:PORT``),
flushed at once so scripts can read it; state changes are logged to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from types import FrameType

from firmware_sim.clock import SimClock
from firmware_sim.devices import device_protocols, make_device
from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.faults import FaultSpecError, FaultyEndpoint, parse_fault
from firmware_sim.hosts import Host
from firmware_sim.model import RegisterModel
from firmware_sim.scenario import ScenarioError, ScenarioRunner, available_scenarios, load_scenario
from protocol.kkt.fn import FnWarning

log = logging.getLogger("kassa-sim")
TICK_SECONDS = 0.2  # real seconds between timeline checks and state-change logs

EPILOG = """\
examples:
  kassa-sim --protocol shtrih --transport pty
      prints e.g. /dev/pts/5; then: kassa-agent probe /dev/pts/5 --protocol shtrih
  kassa-sim --protocol atol --transport tcp --port 5555 --scenario ofd-backlog
      prints socket://127.0.0.1:5555; then: kassa-agent probe socket://127.0.0.1:5555
  kassa-sim --protocol shtrih --transport tcp --scenario long-shift --speed 60
      the 23 h 40 min old shift passes 24 h after 20 real seconds
  kassa-sim --protocol shtrih --transport pty --fault corrupt:0.1 --fault delay:0.05
  kassa-sim --list-scenarios

scenarios: a shipped name (see --list-scenarios) or a path to a TOML file (format = 1);
see firmware_sim/scenario.py for the keys and timeline actions.

faults (repeatable): KIND[:SELECT] with KIND one of corrupt (flip the answer's checksum byte),
drop (no answer), split (answer one byte per write), garbage (noise before the answer),
flip (the same bit in two data bytes: Shtrih's LRC misses it), delay:SECONDS; SELECT is N (the next N answers) or a probability like 0.1; none = every answer.

action faults (repeatable, each fires once): ACTION:refuse:CODE refuses the next ACTION (x_report,
z_report, open_shift, set_datetime, reboot) with the register's error CODE; ACTION:drop:SECONDS
goes silent in the middle of it (done, answer lost), ACTION:drop:SECONDS:lost before it runs.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kassa-sim",
        description="Simulated cash register (ККТ) speaking the real Shtrih-M or ATOL v3 protocol.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--protocol", choices=device_protocols(), default="shtrih", help="wire protocol (default shtrih)")
    parser.add_argument("--transport", choices=("pty", "tcp"), default="pty", help="pty device or TCP listener (default pty)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one)")
    parser.add_argument("--scenario", default="healthy", help="scenario name or TOML path (default healthy)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--start", type=datetime.fromisoformat, help="register clock at start (default: now, local)")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC", help="inject a fault (repeatable)")
    parser.add_argument(
        "--action-fault", action="append", default=[], metavar="SPEC",
        help="script the next remote action of a kind to fail (repeatable; see below)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults (default 0)")
    parser.add_argument("--list-scenarios", action="store_true", help="list the shipped scenarios and exit")
    parser.add_argument("--quiet", action="store_true", help="log only warnings")
    return parser


def state_summary(model: RegisterModel) -> dict[str, object]:
    """What an operator would notice: logged whenever any of it changes."""
    blocking = model.blocking_error()
    warnings = model.warnings()
    return {
        "shift": f"{model.shift_status().value} #{model.shift_number}",
        "warnings": ", ".join(f.name for f in FnWarning if f in warnings and f.name) or "none",
        "blocked": f"ФН code {blocking:#04x}" if blocking is not None else "no",
        "unsent": len(model.ofd_queue),
        "ofd": _ofd_summary(model),
        "paper": "ok" if model.paper_present else "OUT",
        "cover": "open" if model.cover_open else "closed",
    }


def _ofd_summary(model: RegisterModel) -> str:
    if model.autonomous:
        return "autonomous (no OFD exchange)"
    link = "up" if model.ofd_connected else "down"
    acks = "" if model.ofd_acks else ", no receipts"
    return f"{link} to {model.ofd_host}:{model.ofd_port}{acks}"


def make_host(transport: str, endpoint: DeviceEndpoint, port: int) -> Host:
    if transport == "tcp":
        from firmware_sim.hosts.tcp import TcpHost

        return TcpHost(endpoint, port)
    from firmware_sim.hosts.pty import PtyHost

    return PtyHost(endpoint)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr, format="%(message)s"
    )
    if args.list_scenarios:
        for name in available_scenarios():
            print(f"{name:<16} {load_scenario(name).description}")
        return 0
    try:
        scenario = load_scenario(args.scenario)
        faults = [parse_fault(spec) for spec in args.fault]
        clock = SimClock(args.start or scenario.start or datetime.now().replace(microsecond=0), args.speed)
        model = scenario.build(clock)
    except (ScenarioError, FaultSpecError, ValueError) as exc:
        print(f"kassa-sim: {exc}", file=sys.stderr)
        return 2
    runner = ScenarioRunner(scenario, model, on_event=lambda text: log.info("[%s] %s", f"{clock():%Y-%m-%d %H:%M:%S}", text))
    device = make_device(args.protocol, model, tcp=args.transport == "tcp")
    scenario.arm_action_faults(device.action_faults, args.protocol)  # type: ignore[attr-defined]
    try:
        for spec in args.action_fault:
            device.action_faults.add_spec(spec)  # type: ignore[attr-defined]
    except ValueError as exc:
        print(f"kassa-sim: {exc}", file=sys.stderr)
        return 2
    endpoint: DeviceEndpoint = runner.guard(device)
    if faults:
        endpoint = FaultyEndpoint(endpoint, faults, seed=args.seed)
    try:
        host = make_host(args.transport, endpoint, args.port)
    except OSError as exc:
        print(f"kassa-sim: cannot listen on port {args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(host.address, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("%s register, scenario %s, speed ×%g, on %s", args.protocol, scenario.name, args.speed, host.address)
    last: dict[str, object] = {}
    try:
        while True:
            with runner.lock:
                runner.tick()
                summary = state_summary(model)
            if summary != last:
                changed = {k: v for k, v in summary.items() if last.get(k) != v}
                log.info("[%s] %s", f"{clock():%Y-%m-%d %H:%M:%S}", ", ".join(f"{k}: {v}" for k, v in changed.items()))
                last = summary
            if stop.wait(TICK_SECONDS):
                break
    finally:
        host.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
