"""Fault injection around any ``DeviceEndpoint``: damaged, lost, late, split or noisy answers.

``FaultyEndpoint`` decides per answer which faults fire (the next N answers, or each answer
with probability p from a seeded RNG, so a run is reproducible). Corruption, drops and garbage
change the bytes; delays and 1-byte splits are *pacing*, which the hosts honour through
:meth:`FaultyEndpoint.pacing` (see ``firmware_sim.hosts.pump``). Unplugging is a host-level
fault (``host.unplug()``/``host.replug()``), not an endpoint one.

CLI form (``kassa-sim --fault …``): ``KIND[:SELECT]`` where SELECT is an integer N (the next
N answers) or a fraction P < 1 or 1.0 (each answer with probability P); no SELECT = every answer.
``delay`` takes its seconds first: ``delay:0.3`` or ``delay:0.3:0.5``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import Enum

from firmware_sim.endpoint import DeviceEndpoint

GARBAGE_BYTES = 3
FLIP_SKIP_HEAD = 3  # Shtrih's ACK, STX and LEN: a flip there breaks framing instead of the data
SPLIT_GAP = 0.002  # seconds between the single bytes of a split answer


class FaultKind(Enum):
    CORRUPT = "corrupt"  # flip the last byte (the checksum in both protocols)
    DROP = "drop"  # the device stays silent
    DELAY = "delay"  # the answer leaves late
    SPLIT = "split"  # the answer leaves one byte per write
    GARBAGE = "garbage"  # line noise before the answer
    FLIP = "flip"  # the same bit flipped in two bytes: an XOR checksum (Shtrih LRC) does not see it


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = None  # the next N answers; None = not counted
    probability: float = 1.0  # when not counted: chance per answer
    seconds: float = 0.0  # DELAY only

    def fires(self, rng: random.Random) -> bool:
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
            return True
        return self.probability >= 1.0 or rng.random() < self.probability

    @property
    def spent(self) -> bool:
        return self.times is not None and self.times <= 0


def parse_fault(spec: str) -> Fault:
    """``corrupt:0.1``, ``drop:2``, ``delay:0.3``, ``delay:0.3:0.5``, ``split``, ``garbage:1`` → Fault."""
    kind_text, *args = spec.strip().split(":")
    try:
        kind = FaultKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise FaultSpecError(f"fault {spec!r}: unknown kind {kind_text!r} (known: {known})") from None
    seconds = 0.0
    if kind is FaultKind.DELAY:
        if not args:
            raise FaultSpecError(f"fault {spec!r}: delay needs seconds, e.g. delay:0.3")
        seconds = _number(args.pop(0), spec)
    if len(args) > 1:
        raise FaultSpecError(f"fault {spec!r}: too many ':' parts")
    fault = Fault(kind, seconds=seconds)
    if args:
        text = args[0]
        value = _number(text, spec)
        if "." in text:
            if not 0 < value <= 1:
                raise FaultSpecError(f"fault {spec!r}: a probability must be in (0, 1]")
            fault.probability = value
        elif value >= 1:
            fault.times = int(value)
        else:
            raise FaultSpecError(f"fault {spec!r}: a count must be ≥ 1 (write 0.5 for a probability)")
    return fault


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"fault {spec!r}: {text!r} is not a number") from None
    if value < 0:
        raise FaultSpecError(f"fault {spec!r}: {text!r} must not be negative")
    return value


class FaultyEndpoint:
    """A ``DeviceEndpoint`` passing through to ``device`` with the configured faults applied."""

    def __init__(self, device: DeviceEndpoint, faults: list[Fault] | None = None, *, seed: int = 0) -> None:
        self.device = device
        self.faults: list[Fault] = list(faults or [])
        self.fired: dict[FaultKind, int] = dict.fromkeys(FaultKind, 0)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._pending_pacing: list[tuple[float, bytes]] | None = None

    # -------------------------------------------------------------- scripting from tests

    def add(self, fault: Fault) -> FaultyEndpoint:
        with self._lock:
            self.faults.append(fault)
        return self

    def corrupt(self, times: int | None = 1, probability: float = 1.0) -> FaultyEndpoint:
        return self.add(Fault(FaultKind.CORRUPT, times, probability))

    def drop(self, times: int | None = 1, probability: float = 1.0) -> FaultyEndpoint:
        return self.add(Fault(FaultKind.DROP, times, probability))

    def delay(self, seconds: float, times: int | None = None, probability: float = 1.0) -> FaultyEndpoint:
        return self.add(Fault(FaultKind.DELAY, times, probability, seconds))

    def split(self, times: int | None = None, probability: float = 1.0) -> FaultyEndpoint:
        return self.add(Fault(FaultKind.SPLIT, times, probability))

    def garbage(self, times: int | None = 1, probability: float = 1.0) -> FaultyEndpoint:
        return self.add(Fault(FaultKind.GARBAGE, times, probability))

    def flip(self, times: int | None = 1, probability: float = 1.0) -> FaultyEndpoint:
        return self.add(Fault(FaultKind.FLIP, times, probability))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    # -------------------------------------------------------------- DeviceEndpoint

    def feed(self, data: bytes) -> bytes:
        answer = self.device.feed(data)
        with self._lock:
            self._pending_pacing = None
            if not answer:
                return answer  # faults apply to answers only: silence stays silence
            firing = {f.kind: f for f in self.faults if f.fires(self._rng)}
            self.faults = [f for f in self.faults if not f.spent]
            for kind in firing:
                self.fired[kind] += 1
            if FaultKind.DROP in firing:
                return b""
            if FaultKind.FLIP in firing:
                answer = self._flip_twice(answer)
            if FaultKind.CORRUPT in firing:
                answer = answer[:-1] + bytes([answer[-1] ^ 0xFF])
            if FaultKind.GARBAGE in firing:
                answer = self._rng.randbytes(GARBAGE_BYTES) + answer
            delay = firing[FaultKind.DELAY].seconds if FaultKind.DELAY in firing else 0.0
            if FaultKind.SPLIT in firing:
                self._pending_pacing = [(delay if i == 0 else SPLIT_GAP, answer[i : i + 1]) for i in range(len(answer))]
            else:
                self._pending_pacing = [(delay, answer)] if delay else None
        return answer

    def _flip_twice(self, answer: bytes) -> bytes:
        """Flip one bit in two bytes between the frame head and the checksum (last byte)."""
        body = range(min(FLIP_SKIP_HEAD, len(answer)), len(answer) - 1)
        if len(body) < 2:
            return answer
        first, second = self._rng.sample(body, 2)
        mask = 1 << self._rng.randrange(8)
        damaged = bytearray(answer)
        damaged[first] ^= mask
        damaged[second] ^= mask
        return bytes(damaged)

    def pacing(self, answer: bytes) -> list[tuple[float, bytes]]:
        """How the host should write ``answer`` (just returned by ``feed``): (sleep, bytes) steps."""
        with self._lock:
            steps, self._pending_pacing = self._pending_pacing, None
        return steps if steps is not None else [(0.0, answer)]

    def reset(self) -> None:
        self.device.reset()

    def idle(self) -> bytes:
        return self.device.idle()
