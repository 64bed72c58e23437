"""Agent footprint: RSS and CPU of one `kassa-agent run` polling one simulated register.

    .venv/bin/python bench/agent_footprint.py [--duration 60] [--poll 10] [--device SPEC] [--broker URL]

Starts a private mosquitto on a free loopback port unless --broker is given, a `kassa-sim`
register on a pty in its own process unless --device is given (an in-process sim:// register
would count the simulator's memory as the agent's), runs the agent as a subprocess, waits --warmup seconds (imports, first connect, first poll), then samples
/proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime+stime) for --duration seconds.
Target (issue 11): ≤ 35 MB RSS, ≤ 1 % of one core at a 10 s poll.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_RSS_MB = 35.0
TARGET_CPU_PCT = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("mosquitto")
    if binary is None:
        sys.exit("no mosquitto binary: pass --broker mqtt://host:port")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"mqtt://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    """A Shtrih-M register on a pty; kassa-sim prints the device path as its first line."""
    sim_bin = Path(sys.executable).with_name("kassa-sim")
    proc = subprocess.Popen(
        [str(sim_bin) if sim_bin.exists() else "kassa-sim", "--protocol", "shtrih", "--transport", "pty", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    if not endpoint:
        proc.kill()
        sys.exit("kassa-sim printed no endpoint")
    return proc, endpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--poll", type=float, default=10.0)
    parser.add_argument("--device", help="PROTOCOL,URL (default: a kassa-sim shtrih register on a pty)")
    parser.add_argument("--broker")
    parser.add_argument("--interval", type=float, default=1.0, help="sampling period, seconds")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kassa-footprint-"))
    broker_proc = None
    broker = args.broker
    if broker is None:
        broker_proc, broker = start_mosquitto(workdir)
    sim_proc = None
    if args.device is None:
        sim_proc, endpoint = start_simulator()
        args.device = f"shtrih,{endpoint}"
    agent_bin = Path(sys.executable).with_name("kassa-agent")
    command = [
        str(agent_bin) if agent_bin.exists() else "kassa-agent",
        "run", "--broker", broker, "--agent-id", "footprint-1", "--device", args.device,
        "--outbox", str(workdir / "outbox.sqlite"), "--poll", str(args.poll),
        "--health-file", str(workdir / "health.json"), "--log-level", "WARNING",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_AGENT_")}
    agent = subprocess.Popen(command, stderr=(workdir / "agent.log").open("wb"), env=env)
    try:
        time.sleep(args.warmup)
        if agent.poll() is not None:
            print((workdir / "agent.log").read_text(), file=sys.stderr)
            sys.exit(f"agent exited with {agent.returncode} during warm-up")
        cpu_start, wall_start = cpu_seconds(agent.pid), time.monotonic()
        samples: list[float] = []
        while time.monotonic() - wall_start < args.duration:
            samples.append(rss_mb(agent.pid))
            time.sleep(args.interval)
        cpu_used = cpu_seconds(agent.pid) - cpu_start
        wall = time.monotonic() - wall_start
        health_path = workdir / "health.json"  # read while running: on stop it says "disconnected"
        health = health_path.read_text() if health_path.exists() else "(none)"
    finally:
        agent.terminate()
        agent.wait(20)
        for proc in (broker_proc, sim_proc):
            if proc is not None:
                proc.kill()
    cpu_pct = 100.0 * cpu_used / wall
    peak, mean = max(samples), sum(samples) / len(samples)
    print(f"agent footprint: device {args.device}, poll {args.poll:g} s, sampled {wall:.0f} s after {args.warmup:g} s warm-up")
    print(f"  RSS  peak {peak:.1f} MB, mean {mean:.1f} MB   (target ≤ {TARGET_RSS_MB:g} MB): "
          f"{'OK' if peak <= TARGET_RSS_MB else 'OVER'}")
    print(f"  CPU  {cpu_pct:.2f} % of one core            (target ≤ {TARGET_CPU_PCT:g} %): "
          f"{'OK' if cpu_pct <= TARGET_CPU_PCT else 'OVER'}")
    print(f"  health file: {health[:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
