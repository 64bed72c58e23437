"""Fault injection: deterministic corruption, drops, garbage, pacing; drivers recover through them."""

from __future__ import annotations

import pytest

from firmware_sim.faults import Fault, FaultKind, FaultSpecError, FaultyEndpoint, parse_fault


class Echo:
    """Answers every write with ``<data>!`` so faults are easy to see."""

    def __init__(self) -> None:
        self.resets = 0

    def feed(self, data: bytes) -> bytes:
        return data + b"!" if data != b"quiet" else b""

    def reset(self) -> None:
        self.resets += 1


    def idle(self) -> None:
        pass


def test_corrupt_flips_the_last_byte_of_the_next_n_answers() -> None:
    faulty = FaultyEndpoint(Echo()).corrupt(times=2)
    assert faulty.feed(b"ab") == b"ab" + bytes([ord("!") ^ 0xFF])
    assert faulty.feed(b"cd") == b"cd" + bytes([ord("!") ^ 0xFF])
    assert faulty.feed(b"ef") == b"ef!"
    assert faulty.fired[FaultKind.CORRUPT] == 2
    assert faulty.faults == []  # spent faults are removed


def test_drop_silences_answers_and_silence_does_not_use_up_faults() -> None:
    faulty = FaultyEndpoint(Echo()).drop(times=1)
    assert faulty.feed(b"quiet") == b""
    assert faulty.feed(b"x") == b""
    assert faulty.feed(b"y") == b"y!"


def test_probabilistic_faults_are_deterministic_by_seed() -> None:
    def run(seed: int) -> list[bytes]:
        faulty = FaultyEndpoint(Echo(), [Fault(FaultKind.CORRUPT, probability=0.3)], seed=seed)
        return [faulty.feed(bytes([i])) for i in range(200)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    corrupted = sum(1 for i, answer in enumerate(first) if answer != bytes([i]) + b"!")
    assert 30 < corrupted < 90  # ~60 of 200


def test_garbage_goes_before_the_answer() -> None:
    faulty = FaultyEndpoint(Echo(), seed=1).garbage(times=1)
    answer = faulty.feed(b"z")
    assert answer.endswith(b"z!") and len(answer) == 2 + 3


def test_split_and_delay_are_pacing_for_the_host() -> None:
    faulty = FaultyEndpoint(Echo()).split().delay(0.25)
    answer = faulty.feed(b"ab")
    steps = faulty.pacing(answer)
    assert [chunk for _, chunk in steps] == [b"a", b"b", b"!"]
    assert steps[0][0] == 0.25 and all(0 < pause < 0.01 for pause, _ in steps[1:])
    plain = FaultyEndpoint(Echo())
    answer = plain.feed(b"q")
    assert plain.pacing(answer) == [(0.0, b"q!")]


def test_reset_passes_through() -> None:
    echo = Echo()
    FaultyEndpoint(echo).reset()
    assert echo.resets == 1


def test_flip_changes_two_data_bytes_that_the_shtrih_lrc_still_accepts() -> None:
    from datetime import datetime

    from firmware_sim.devices import make_device
    from firmware_sim.endpoint import DeviceEndpoint
    from firmware_sim.model import RegisterModel
    from protocol.kkt.shtrih.framing import encode_frame, lrc

    def register() -> DeviceEndpoint:
        return make_device("shtrih", RegisterModel(clock=lambda: datetime(2026, 12, 6, 12, 0)))

    request = encode_frame(bytes([0xFF, 0x03, 0x1E, 0, 0, 0]))  # ФН validity
    clean = register().feed(request)
    damaged = FaultyEndpoint(register(), seed=3).flip(times=1).feed(request)
    changed = [i for i, (a, b) in enumerate(zip(clean, damaged, strict=True)) if a != b]
    assert len(changed) == 2 and clean[changed[0]] ^ damaged[changed[0]] == clean[changed[1]] ^ damaged[changed[1]]
    assert changed[0] >= 3 and changed[1] < len(clean) - 1  # past ACK/STX/LEN, before the checksum
    payload = damaged[3:-1]
    assert lrc(payload) == damaged[-1]  # the frame still checks out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("corrupt", Fault(FaultKind.CORRUPT)),
        ("corrupt:0.1", Fault(FaultKind.CORRUPT, probability=0.1)),
        ("drop:3", Fault(FaultKind.DROP, times=3)),
        ("delay:0.3", Fault(FaultKind.DELAY, seconds=0.3)),
        ("delay:0.3:2", Fault(FaultKind.DELAY, times=2, seconds=0.3)),
        ("split:1.0", Fault(FaultKind.SPLIT, probability=1.0)),
        ("garbage:1", Fault(FaultKind.GARBAGE, times=1)),
        ("flip:0.05", Fault(FaultKind.FLIP, probability=0.05)),
    ],
)
def test_parse_fault(spec: str, expected: Fault) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize("spec", ["explode", "corrupt:1.5", "corrupt:0", "delay", "drop:x", "drop:1:2", "delay:-1"])
def test_parse_fault_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(FaultSpecError, match="fault"):
        parse_fault(spec)


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_drivers_recover_from_a_corrupted_and_a_dropped_answer(protocol: str) -> None:
    """Through sim:// and pyserial: the session's retries absorb single faults."""
    from datetime import datetime

    from agent.drivers.registry import DeviceConnection
    from firmware_sim.clock import ManualClock
    from firmware_sim.devices import make_device
    from firmware_sim.hosts import register_sim
    from firmware_sim.model import RegisterModel

    model = RegisterModel(clock=ManualClock(datetime(2026, 3, 2, 9, 0)))
    faulty = FaultyEndpoint(make_device(protocol, model))
    registration = register_sim(f"faults-{protocol}", faulty)
    try:
        with DeviceConnection(protocol, registration.address, timeout=0.2, retries=3) as connection:
            assert connection.poll().fn.serial == model.fn_serial
            faulty.corrupt(times=1)
            assert connection.poll().fn.serial == model.fn_serial
            faulty.drop(times=1)
            state = connection.poll()
        assert state.fn.serial == model.fn_serial
        assert faulty.fired[FaultKind.CORRUPT] == 1
        assert faulty.fired[FaultKind.DROP] == 1
    finally:
        registration.close()
