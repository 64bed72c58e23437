"""``python -m demo [--data-dir ./demo-data] [--speed 60] [--port 8080] [--registers N]``; the port also
from ``$DEMO_PORT``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from demo.fleet import DEFAULT_REGISTERS, MAX_REGISTERS, MIN_REGISTERS

# A second signal within this many seconds is the same Ctrl-C (sent to the process and to its
# group, e.g. by `timeout`); a later one forces an immediate exit.
FORCE_AFTER = 1.0
PORT_ENV = "DEMO_PORT"  # `DEMO_PORT=8090 make demo`
DEFAULT_PORT = 8080


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run broker, collector, web app and a simulated fleet with one agent per register.",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("demo-data"), help="database, outboxes, log (default: %(default)s)")
    parser.add_argument(
        "--speed", type=float, default=60.0,
        help="register clocks run this many times faster than real time (default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=int, default=None,
        help=f"web app port on 127.0.0.1 (default: ${PORT_ENV} or {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--registers", type=int, default=DEFAULT_REGISTERS,
        help=f"simulated registers, {MIN_REGISTERS}-{MAX_REGISTERS} (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.port is None:
        given = os.environ.get(PORT_ENV, "").strip()
        if given and not given.isdigit():
            parser.error(f"{PORT_ENV}={given!r} is not a port number")
        args.port = int(given) if given else DEFAULT_PORT
    if not MIN_REGISTERS <= args.registers <= MAX_REGISTERS:
        parser.error(f"--registers must be between {MIN_REGISTERS} and {MAX_REGISTERS}")
    if not 0 < args.speed <= 100_000:
        parser.error("--speed must be above 0 and at most 100000")
    if not 0 < args.port < 65536:
        parser.error(f"--port (or {PORT_ENV}) must be 1-65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows at once, even piped
    stop = threading.Event()
    first_signal: list[float] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if not first_signal:
            first_signal.append(time.monotonic())
            stop.set()
        elif time.monotonic() - first_signal[0] > FORCE_AFTER:
            os._exit(130)  # Ctrl-C again: the user does not want to wait for the clean stop

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: its terminal was closed
        signal.signal(signum, request_stop)
    from demo.broker import BrokerStartError
    from demo.run import DemoOptions, run  # after the signals: importing the stack takes a moment

    options = DemoOptions(data_dir=args.data_dir, speed=args.speed, port=args.port, registers=args.registers)
    try:
        return run(options, stop)
    except (OSError, BrokerStartError) as exc:
        print(f"python -m demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
