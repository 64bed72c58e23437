"""Where a collector's CPU goes per state message, without MQTT: the writer and the alert engine
driven in this thread over the messages ``bench/ingest.py`` publishes.

    .venv/bin/python bench/ingest_profile.py [--messages 5000] [--agents 1000] [--db sqlite,postgresql]
                                             [--warmup-rounds 1] [--repeat 3] [--profile sqlite] [--top 25]
                                             [--sort cumulative|tottime] [--default-gc]

Per database: decode+write+commit (``IngestWriter.process`` on batches of ``--batch`` (500), acks to a
recording downlink) and ingest-triggered alert evaluation (``AlertEngine.evaluate`` with
``skip_unchanged``, as ``EvaluationWorker`` calls it), each as CPU µs per message
(``time.process_time``; the least of ``--repeat`` runs, each on a fresh database, since a busy
machine only ever adds to it). ``--profile`` also prints a cProfile (CPU time) of one
backend's run, sorted by cumulative (or ``--sort tottime``, own) time. The garbage collector is
set as ``kassa-collector run`` sets it (``collector.gc_tuning``) unless ``--default-gc``.

Each agent's first message is a new register (a first-time full evaluation, a ``first`` history
row); a real fleet is past that. So the first ``--warmup-rounds`` messages per agent are also left
out of a second, *steady-state* figure (messages to registers the process has seen before), and
``--profile`` covers only the steady state (``--profile-warmup`` includes the warm-up). Last, one
periodic sweeps (every register evaluated in full, as ``EvaluationWorker.sweep``) are timed per
register, with the verdict rows each rewrote (``EvaluationReport.written``): the first sweep meets
the states and verdicts the run's messages left (a fleet that sends between sweeps), the later ones
(the least of them) an unchanged fleet. Last, one sweep as the worker runs nine in ten (``skip_quiet``:
registers in their quiet period passed over), per register of the fleet, and how many it evaluated.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import bench_company, database, load
from collector.gc_tuning import tune_for_ingest
from collector.ingest.batcher import IngestWriter, WriterSettings
from collector.ingest.consumer import InboundMessage
from collector.ingest.engine import AlertEngine
from collector.storage import create_engine_from_url, migrate

BATCH = 500


class RecordingDownlink:
    """Counts what the writer would send to the broker."""

    def __init__(self) -> None:
        self.acks = 0
        self.published = 0

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        self.acks += len(messages)
        return len(messages)

    def publish_acks(self, acks: Sequence[tuple[str, bytes]]) -> int:
        self.published += len(acks)
        return len(acks)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        self.published += 1
        return True


def inbound(messages: list[tuple[str, bytes]]) -> list[InboundMessage]:
    return [
        InboundMessage(topic=topic, payload=payload, mid=index % 65535 + 1, qos=1,
                       received_at=datetime.now(UTC), generation=1)
        for index, (topic, payload) in enumerate(messages)
    ]


@dataclass(frozen=True, slots=True)
class Figures:
    """CPU µs per message: over all messages, and over the steady state (after the warm-up)."""

    write: float
    evaluate: float
    steady_write: float
    steady_evaluate: float
    sweep_first: float  # CPU µs per register of the first periodic sweep (every register evaluated in full) after the run
    sweep: float  # the same, the least of the later sweeps
    sweep_written: tuple[int, ...]  # verdict rows each sweep rewrote
    quiet_sweep: float  # CPU µs per register of the fleet, of a sweep passing over quiet registers
    quiet_evaluated: int  # how many that one evaluated
    registers: int


def run(
    db_url: str, messages: list[InboundMessage], profiler: cProfile.Profile | None, *, warmup: int,
    profile_warmup: bool, batch: int = BATCH, collectors: int = 1, sweeps: int = 3, profile_sweep: bool = False,
) -> Figures:
    """CPU per message; ``warmup`` messages (a whole number of batches) are left out of the steady figures.

    ``collectors`` > 1: as many writers and alert engines, each with its own memory, on the one
    database, dealt the messages in turn as a shared subscription deals them (so each sees every
    n-th message of a register, as ``bench/ingest.py --collectors n`` without the processes)."""
    migrate(db_url)
    company = bench_company(db_url)
    engine = create_engine_from_url(db_url)
    try:
        shared = WriterSettings(company=company, contiguous_acks=collectors == 1)
        pipelines = [(IngestWriter(engine, RecordingDownlink(), settings=shared), AlertEngine(engine)) for _ in range(collectors)]
        dealt = [messages[index::collectors] for index in range(collectors)]
        write_s = evaluate_s = steady_write_s = steady_evaluate_s = 0.0
        for start in range(0, len(dealt[0]), batch):
            steady = start * collectors >= warmup
            profiling = profiler if (steady or profile_warmup) and not profile_sweep else None
            for (writer, alerts), own in zip(pipelines, dealt, strict=True):
                if profiling is not None:
                    profiling.enable()
                t0 = time.process_time()
                result = writer.process(own[start : start + batch])
                t1 = time.process_time()
                alerts.evaluate(result.changed_registers, skip_unchanged=True, states=result.fresh_states)
                t2 = time.process_time()
                if profiling is not None:
                    profiling.disable()
                write_s += t1 - t0
                evaluate_s += t2 - t1
                if steady:
                    steady_write_s += t1 - t0
                    steady_evaluate_s += t2 - t1
        steady_count = max(len(messages) - warmup, 1)
        alerts = pipelines[0][1]
        every = alerts.all_registers()
        sweep_s: list[float] = []
        written: list[int] = []
        for _ in range(sweeps):
            if profiler is not None and profile_sweep:
                profiler.enable()
            t0 = time.process_time()
            report = alerts.evaluate(every)  # as ``EvaluationWorker.sweep`` does, in chunks
            sweep_s.append(time.process_time() - t0)
            if profiler is not None and profile_sweep:
                profiler.disable()
            written.append(report.written)
        t0 = time.process_time()
        quiet = alerts.evaluate(every, skip_quiet=True)
        quiet_s = time.process_time() - t0
        return Figures(
            write_s / len(messages) * 1e6, evaluate_s / len(messages) * 1e6,
            steady_write_s / steady_count * 1e6, steady_evaluate_s / steady_count * 1e6,
            sweep_s[0] / max(len(every), 1) * 1e6, min(sweep_s[1:] or sweep_s) / max(len(every), 1) * 1e6,
            tuple(written), quiet_s / max(len(every), 1) * 1e6, quiet.registers, len(every),
        )
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--warmup-rounds", type=int, default=1,
                        help="messages per agent left out of the steady-state figures (first sight of a register)")
    parser.add_argument("--profile-warmup", action="store_true", help="profile the warm-up rounds too")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--collectors", type=int, default=1,
                        help="writers sharing the database, dealt the messages in turn (a shared subscription)")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="messages per writer batch (a collector sharing the stream with others gets smaller ones)")
    parser.add_argument("--profile", default="", help="backend to profile (cProfile, cumulative)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"], help="profile order")
    parser.add_argument("--default-gc", action="store_true", help="CPython's GC thresholds, not the collector's")
    parser.add_argument("--sweeps", type=int, default=3, help="sweeps after the run (at least 1)")
    parser.add_argument("--profile-sweep", action="store_true",
                        help="profile only the sweeps (of --profile's backend), not the messages")
    args = parser.parse_args()
    if not args.default_gc:
        tune_for_ingest()  # as ``kassa-collector run`` does
    messages = inbound(load(args.messages, args.agents, "a"))
    # Whole batches only, so that no batch mixes new registers and known ones.
    # Each of n collectors sees a register first in its own first round: n rounds of warm-up.
    rounds = args.batch * args.collectors
    warmup = -(-args.warmup_rounds * args.agents * args.collectors // rounds) * rounds
    if warmup >= len(messages):
        parser.error(f"--messages must exceed the warm-up ({warmup} messages): no steady state to measure")
    for kind in args.db.split(","):
        profiler = cProfile.Profile(time.process_time) if kind == args.profile else None
        runs = []
        for _ in range(1 if profiler else args.repeat):
            with tempfile.TemporaryDirectory(prefix="kassa-profile-") as tmp, database(kind, Path(tmp)) as url:
                runs.append(run(url, messages, profiler, warmup=warmup, profile_warmup=args.profile_warmup, batch=args.batch,
                                collectors=args.collectors, sweeps=args.sweeps, profile_sweep=args.profile_sweep))
        write_us, evaluate_us = min(f.write for f in runs), min(f.evaluate for f in runs)
        steady_write_us, steady_evaluate_us = min(f.steady_write for f in runs), min(f.steady_evaluate for f in runs)
        print(f"{kind:10} write {write_us:6.1f} µs/msg, evaluate {evaluate_us:6.1f} µs/msg, "
              f"together {write_us + evaluate_us:6.1f} µs/msg (CPU, this thread)", flush=True)
        print(f"{'':10} steady state (after {warmup} msgs): write {steady_write_us:6.1f} µs/msg, "
              f"evaluate {steady_evaluate_us:6.1f} µs/msg, "
              f"together {steady_write_us + steady_evaluate_us:6.1f} µs/msg", flush=True)
        print(f"{'':10} sweep: {min(f.sweep_first for f in runs):6.1f} µs/register after the messages, "
              f"{min(f.sweep for f in runs):6.1f} µs/register again (CPU, every register evaluated); "
              f"verdict rows rewritten per sweep of {runs[0].registers}: {runs[0].sweep_written}", flush=True)
        print(f"{'':10} quiet sweep: {min(f.quiet_sweep for f in runs):6.1f} µs/register of the fleet, "
              f"{runs[0].quiet_evaluated} of {runs[0].registers} evaluated", flush=True)
        if profiler is not None:
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
