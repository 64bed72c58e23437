"""Demo: two simulated registers on ptys, each read by ``kassa-agent probe`` in a subprocess.

A Shtrih-M register whose shift is 23 h 40 min old and an ATOL register whose OFD has been
unreachable for 20 days; then how to run ``kassa-sim`` and ``kassa-agent probe`` yourself.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

from firmware_sim.clock import SimClock
from firmware_sim.devices import make_device
from firmware_sim.hosts.pty import PtyHost
from firmware_sim.scenario import ScenarioRunner, load_scenario

REGISTERS = [("shtrih", "long-shift"), ("atol", "ofd-backlog")]
PROBE_TIMEOUT = 30


def start_register(protocol: str, scenario_name: str) -> PtyHost:
    scenario = load_scenario(scenario_name)
    model = scenario.build(SimClock(datetime.now().replace(microsecond=0)))
    return PtyHost(ScenarioRunner(scenario, model).guard(make_device(protocol, model)))


def main() -> int:
    hosts = [(protocol, scenario, start_register(protocol, scenario)) for protocol, scenario in REGISTERS]
    failures = 0
    try:
        for protocol, scenario, host in hosts:
            command = ["kassa-agent", "probe", host.slave_path, "--protocol", protocol]
            print(f"\n== {protocol} register, scenario {scenario!r}, on {host.slave_path}")
            print(f"$ {' '.join(command)}")
            result = subprocess.run(
                [sys.executable, "-m", "agent", *command[1:]], capture_output=True, text=True, timeout=PROBE_TIMEOUT
            )
            print(result.stdout.rstrip() or result.stderr.rstrip())
            failures += result.returncode != 0
    finally:
        for _, _, host in hosts:
            host.close()
    print(
        "\nTry it yourself:\n"
        "  kassa-sim --list-scenarios\n"
        "  kassa-sim --protocol shtrih --transport pty --scenario long-shift --speed 60   # prints the pty path\n"
        "  kassa-agent probe /dev/pts/N                    # in another terminal; --json for machine output\n"
        "  kassa-sim --protocol atol --transport tcp --port 5555 --scenario ofd-backlog\n"
        "  kassa-agent probe socket://127.0.0.1:5555\n"
        "  kassa-agent detect --ports /dev/pts/N socket://127.0.0.1:5555\n"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
