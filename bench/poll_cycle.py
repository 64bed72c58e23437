"""One full ``poll()`` per protocol: over a real pty to an in-process simulated register, and over ``sim://``.

    .venv/bin/python bench/poll_cycle.py [--runs 100] [--scenario healthy] [--baud 115200] [--slow-reads-every-poll]

Prints median / p90 per poll in ms, the process CPU time per poll (driver and simulator alike:
steadier than wall time on a busy machine), polls/s, bytes on the wire per poll and the time
those bytes would take on a real serial line at ``--baud`` (8N1 = 10 bits per byte), which a pty
does not add. Target (DESIGN.md §7): ≤ 50 ms per poll cycle plus wire time.

``--slow-reads-every-poll`` makes the reads the drivers do once per 10 minutes (the OFD server:
Shtrih table 19, ATOL settings 273/274; the fiscalisation mode) happen on every poll: the
worst-case poll.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from agent.drivers import slow_reads
from agent.drivers.registry import DeviceConnection
from firmware_sim.clock import SimClock
from firmware_sim.devices import device_protocols, make_device
from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.hosts import register_sim
from firmware_sim.hosts.pty import PtyHost
from firmware_sim.scenario import ScenarioRunner, load_scenario

TARGET_MS = 50.0


class CountingEndpoint:
    """Counts bytes both ways, to estimate the wire time a real serial line would add."""

    def __init__(self, device: DeviceEndpoint) -> None:
        self.device = device
        self.bytes = 0

    def feed(self, data: bytes) -> bytes:
        answer = self.device.feed(data)
        self.bytes += len(data) + len(answer)
        return answer

    def reset(self) -> None:
        self.device.reset()

    def idle(self) -> bytes:
        # Unasked bytes (an ATOL async result) go to the host too: pass them on and count them.
        unasked = self.device.idle()
        self.bytes += len(unasked)
        return unasked

    def __getattr__(self, name: str) -> object:
        # Whatever else a host asks of its device (it grows with the protocols) goes straight through.
        return getattr(self.device, name)


@dataclass
class Result:
    protocol: str
    transport: str
    median_ms: float
    p90_ms: float
    cpu_ms: float
    polls_per_s: float
    bytes_per_poll: float

    def wire_ms(self, baud: int) -> float:
        return self.bytes_per_poll * 10 / baud * 1000


def make_endpoint(protocol: str, scenario: str) -> CountingEndpoint:
    loaded = load_scenario(scenario)
    model = loaded.build(SimClock(datetime.now().replace(microsecond=0)))
    return CountingEndpoint(ScenarioRunner(loaded, model).guard(make_device(protocol, model)))


def measure(protocol: str, url: str, endpoint: CountingEndpoint, runs: int) -> tuple[list[float], float, float]:
    """Wall time of each poll, bytes per poll and process CPU seconds per poll."""
    with DeviceConnection(protocol, url, timeout=1.0) as connection:
        connection.poll()  # warm-up: opens the port, fills the driver's per-shift caches
        endpoint.bytes = 0
        times = []
        cpu_started = time.process_time()
        for _ in range(runs):
            started = time.perf_counter()
            connection.poll()
            times.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu_started
    return times, endpoint.bytes / runs, cpu / runs


def bench(protocol: str, transport: str, runs: int, scenario: str) -> Result:
    endpoint = make_endpoint(protocol, scenario)
    cleanup: Callable[[], None]
    if transport == "pty":
        host = PtyHost(endpoint)
        url, cleanup = host.address, host.close
    else:
        registration = register_sim(f"bench-{protocol}", endpoint)
        url, cleanup = registration.address, registration.close
    try:
        times, per_poll, cpu = measure(protocol, url, endpoint, runs)
    finally:
        cleanup()
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return Result(protocol, transport, statistics.median(ms), p90, cpu * 1000, len(ms) / sum(times), per_poll)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="polls per protocol and transport (≥ 50)")
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument("--baud", type=int, default=115200, help="for the wire-time estimate")
    parser.add_argument("--slow-reads-every-poll", action="store_true", help="the worst case: no 10-minute cache")
    args = parser.parse_args()
    runs = max(args.runs, 50)
    if args.slow_reads_every_poll:
        slow_reads.SLOW_READ_INTERVAL = 0.0
    print(f"one full poll, {runs} runs each, scenario {args.scenario}; target ≤ {TARGET_MS:g} ms + wire time")
    header = f"{'protocol':<10} {'transport':<9} {'median ms':>9} {'p90 ms':>8} {'cpu ms':>7} {'polls/s':>8} {'bytes/poll':>10} {'wire ms@' + str(args.baud):>14}  verdict"
    print(header)
    print("-" * len(header))
    for protocol in device_protocols():
        for transport in ("pty", "sim://"):
            r = bench(protocol, "pty" if transport == "pty" else "sim", runs, args.scenario)
            verdict = "ok" if r.median_ms <= TARGET_MS else "OVER TARGET"
            print(
                f"{protocol:<10} {transport:<9} {r.median_ms:>9.2f} {r.p90_ms:>8.2f} {r.cpu_ms:>7.2f} {r.polls_per_s:>8.1f} "
                f"{r.bytes_per_poll:>10.0f} {r.wire_ms(args.baud):>14.1f}  {verdict}"
            )


if __name__ == "__main__":
    main()
