"""What a remote action costs at the register link: each action per protocol over ``sim://``.

    .venv/bin/python bench/actions.py [--runs 30]

Each run is one cycle on a fresh shift: open_shift → x_report → close_shift → set_datetime (the
clock only with the shift closed). Prints, per protocol and action, the median wall time and the
median CPU time of this process (driver + in-process simulator, ``time.process_time``), and the
bytes on the wire. Printing time on a real register (seconds for a Z-report) is not simulated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from agent.drivers.actions import OutcomeKind
from agent.drivers.registry import DeviceConnection
from firmware_sim.clock import ManualClock
from firmware_sim.devices import device_protocols, make_device
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from protocol.mqtt.actions import ActionName

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.poll_cycle import CountingEndpoint

CYCLE = (ActionName.OPEN_SHIFT, ActionName.X_REPORT, ActionName.CLOSE_SHIFT, ActionName.SET_DATETIME)



def bench(protocol: str, runs: int) -> dict[ActionName, tuple[float, float, float]]:
    model = RegisterModel(clock=ManualClock(datetime(2026, 3, 2, 9, 0, 0)))
    endpoint = CountingEndpoint(make_device(protocol, model))
    name = f"bench-{uuid.uuid4().hex[:8]}"
    register_sim(name, endpoint)
    samples: dict[ActionName, list[tuple[float, float, int]]] = defaultdict(list)
    try:
        with DeviceConnection(protocol, f"sim://{name}") as connection:
            connection.poll()  # open the link and settle the session first
            for _ in range(runs):
                for action in CYCLE:
                    wall, cpu, wire = time.perf_counter(), time.process_time(), endpoint.bytes
                    outcome = connection.perform(action, datetime(2026, 3, 2, 10, 0, 0))
                    if outcome.kind is not OutcomeKind.DONE:
                        raise RuntimeError(f"{protocol} {action}: {outcome}")
                    samples[action].append(
                        (time.perf_counter() - wall, time.process_time() - cpu, endpoint.bytes - wire)
                    )
    finally:
        unregister_sim(name)
    return {
        action: (
            statistics.median(s[0] for s in rows) * 1000,
            statistics.median(s[1] for s in rows) * 1000,
            statistics.median(s[2] for s in rows),
        )
        for action, rows in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    install_sim_url_handler()
    print(f"{'protocol':<11} {'action':<13} {'wall ms':>8} {'cpu ms':>7} {'bytes':>6}")
    for protocol in device_protocols():
        for action, (wall, cpu, wire) in bench(protocol, args.runs).items():
            print(f"{protocol:<11} {action:<13} {wall:8.2f} {cpu:7.2f} {wire:6.0f}")


if __name__ == "__main__":
    main()
