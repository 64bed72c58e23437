"""``AtolSession`` against the simulated register through an in-memory ``ByteLink``.

The driver and the simulator share only ``protocol.kkt.atol``, so these tests prove the codec
symmetric and the session's retry/timeout handling against real device behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from msgspec.structs import replace

from agent.drivers.atol import AtolSession, AtolV2Session
from agent.drivers.errors import ChecksumError, DeviceRefused, NoAnswer, ProtocolViolation
from firmware_sim.atol import SIMULATED_MODEL_ID, AtolDevice, AtolV2Device
from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.model import RegisterModel
from protocol.kkt.atol.link import Deframer, Packet, encode_packet
from protocol.kkt.atol.messages import OpenShift
from protocol.kkt.atol.task_device import TaskResult
from protocol.kkt.fn import FN_ERROR_SHIFT_OVER_24H
from protocol.kkt.vocabulary import ShiftStatus, Vendor
from protocol.mqtt.wire import RegisterState

NOW = datetime(2026, 11, 27, 15, 30, 0)
FAST = {"timeout": 0.02, "retries": 2}

Mangle = Callable[[bytes], bytes]


class AtolLoopback:
    """A ``ByteLink`` that pumps a ``DeviceEndpoint`` in-process.

    ``mangle`` rewrites each device answer (fault injection). A read with nothing to deliver
    waits out its timeout like a real port, so timeouts cost real (small) time.
    """

    url = "loopback://atol"

    def __init__(self, device: DeviceEndpoint, mangle: Mangle | None = None) -> None:
        self.device = device
        self.mangle = mangle
        self.written: list[bytes] = []
        self._incoming = bytearray()
        self._open = False

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def write(self, data: bytes) -> None:
        assert self._open, "session wrote to a closed link"
        self.written.append(bytes(data))
        answer = self.device.feed(bytes(data))
        self._incoming += self.mangle(answer) if self.mangle and answer else answer

    def read(self, size: int, timeout: float) -> bytes:
        if not self._incoming:
            time.sleep(timeout)
            return b""
        out = bytes(self._incoming[:size])
        del self._incoming[:size]
        return out

    def discard_input(self) -> None:
        self._incoming.clear()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def model(clock: Clock) -> RegisterModel:
    """A register three hours into shift 4 with two receipts, one of them not yet sent to the OFD."""
    m = RegisterModel(
        clock=clock,
        serial="0012345678901234",
        model_name="АТОЛ 30Ф",
        firmware="3.0.8012",
        fn_serial="9999078900054321",
        fn_valid_until=date(2026, 12, 20),  # 23 days left: "replace within 30 days"
        registrations_left=10,
        registrations_done=2,
        shift_number=3,
        cover_open=True,
    )
    m.open_shift(at=NOW - timedelta(hours=3))
    m.sell(5_000)
    m.deliver_to_ofd()
    clock.now = NOW - timedelta(minutes=40)
    m.sell(7_000)
    clock.now = NOW
    return m


def session_for(
    device: DeviceEndpoint, mangle: Mangle | None = None, *, async_results: bool = False, **kwargs: float
) -> AtolSession:
    options = {**FAST, **kwargs}
    return AtolSession(
        AtolLoopback(device, mangle),
        timeout=options["timeout"],
        retries=int(options["retries"]),
        async_results=async_results,
    )


def test_poll_fills_every_field(model: RegisterModel) -> None:
    state = session_for(AtolDevice(model)).poll()

    assert state.vendor is Vendor.ATOL and state.protocol == "atol"
    assert state.model == "АТОЛ 30Ф" and state.model_id == SIMULATED_MODEL_ID
    assert state.serial == "78901234"
    assert state.firmware == "3.0.8012"
    assert state.rnm is None and state.inn is None  # not in these commands
    assert state.ffd_version == "1.2"  # A4 44, tag 1209
    assert state.register_clock == NOW
    assert state.read_at is None  # the agent's job
    assert state.last_fd_number == 3

    assert state.shift.status is ShiftStatus.OPEN
    assert state.shift.number == 4 and state.shift.receipts == 2
    assert state.shift.opened_at == NOW - timedelta(hours=3)
    assert state.shift_age() == timedelta(hours=3)

    assert state.fn.serial == "9999078900054321"
    assert state.fn.phase == 3 and state.fn.fiscal is True and state.fn.phase_name == "фискальный режим"
    assert state.fn.valid_until == date(2026, 12, 20)
    assert state.fn.registrations_left == 10 and state.fn.registrations_done == 2
    assert state.fn.warning_flags == 0x02 and state.fn.warnings == ["REPLACE_SOON"]
    assert state.fn.documents_left is None and state.fn.free_memory_kb is None and state.fn.firmware is None

    assert state.ofd.unsent_count == 1
    assert state.ofd.first_unsent_number == 3
    assert state.ofd.first_unsent_at == NOW - timedelta(minutes=40)
    assert state.ofd.transport_connected is True
    assert state.oldest_unsent_age() == timedelta(minutes=40)

    assert state.device.paper_present is True and state.device.cover_open is True
    assert state.device.mode == 0 and state.device.submode == 0
    assert state.device.last_error is None


def test_closed_shift_and_no_paper(model: RegisterModel) -> None:
    model.close_shift()
    model.paper_present = False
    model.cover_open = False
    state = session_for(AtolDevice(model)).poll()
    assert state.shift.status is ShiftStatus.CLOSED
    assert state.shift.number == 4 and state.shift.opened_at is None
    assert state.device.paper_present is False and state.device.cover_open is False


def test_shift_past_24h_is_expired_from_the_shift_open_document(model: RegisterModel, clock: Clock) -> None:
    clock.now = NOW + timedelta(hours=21, minutes=5)
    state = session_for(AtolDevice(model)).poll()
    assert state.shift.status is ShiftStatus.EXPIRED
    assert state.shift.opened_at == NOW - timedelta(hours=3)


def test_shift_open_time_is_walked_once_per_shift(model: RegisterModel) -> None:
    device = AtolDevice(model)
    session = session_for(device)
    session.poll()
    first = device.commands_executed
    session.poll()
    assert device.commands_executed - first == 10  # nine status commands and the ФФД, no document walk
    model.sell()
    model.close_shift()
    model.open_shift()
    assert session.poll().shift.opened_at == NOW  # a new shift is looked up again


def test_unreadable_shift_open_time_stays_unknown_and_open(model: RegisterModel, clock: Clock) -> None:
    model.documents.clear()  # the archive look-up finds nothing (A4 40 answers 218)
    clock.now = NOW + timedelta(hours=30)
    state = session_for(AtolDevice(model)).poll()
    assert state.shift.status is ShiftStatus.OPEN and state.shift.opened_at is None


def test_register_refusing_with_240_means_expired(model: RegisterModel) -> None:
    class ShiftOverFn(AtolDevice):
        """The ФН pass-through for the OFD status answers 240 (ФН shift > 24 h)."""

        def _execute(self, raw: bytes) -> TaskResult:
            if raw[2:4] == b"\xa4\x20":
                return TaskResult(False, bytes((0x55, 240, 0)))
            return super()._execute(raw)

    model.documents.clear()  # and the shift-open time cannot be read
    state = session_for(ShiftOverFn(model)).poll()
    assert state.shift.status is ShiftStatus.EXPIRED and state.shift.opened_at is None
    assert state.ofd.unsent_count is None and "240" in (state.device.last_error or "")
    assert state.device.fn_errors == [FN_ERROR_SHIFT_OVER_24H]  # ATOL 240 is the ФН's 16h


def test_identify_returns_the_model_name(model: RegisterModel) -> None:
    assert session_for(AtolDevice(model)).identify() == "АТОЛ 30Ф"


def test_first_bytes_clear_the_task_buffer(model: RegisterModel) -> None:
    session = session_for(AtolDevice(model))
    session.identify()
    link = session.link
    assert isinstance(link, AtolLoopback)
    assert link.written[0].startswith(encode_packet(1, b"\xc4"))  # ABORT rides with the first ADD


def test_acks_ride_with_the_next_request_and_the_last_is_flushed(model: RegisterModel) -> None:
    device = AtolDevice(model)
    session = session_for(device)
    session.poll()
    link = session.link
    assert isinstance(link, AtolLoopback)
    link.written.clear()
    executed = device.commands_executed
    session.poll()
    assert len(link.written) == device.commands_executed - executed + 1  # one write per command + final ACK
    packets = [p for frame in link.written[1:-1] for p in Deframer().feed(frame)]
    assert [p.data[0] for p in packets] == [0xC2, 0xC1] * (len(link.written) - 2)  # ACK + next ADD together
    (last,) = Deframer().feed(link.written[-1])
    assert isinstance(last, Packet) and last.data[0] == 0xC2


def test_one_corrupted_answer_is_retransmitted(model: RegisterModel) -> None:
    clean = session_for(AtolDevice(model)).poll()
    damage_next = [True]  # only the first answer (to 3Fh) arrives damaged

    def mangle(answer: bytes) -> bytes:
        if damage_next and damage_next.pop():
            return answer[:-1] + bytes(((answer[-1] ^ 0x55) & 0x7F,))
        return answer

    session = session_for(AtolDevice(model), mangle)
    assert session.poll() == clean
    link = session.link
    assert isinstance(link, AtolLoopback)
    assert any(len(frame) == 5 for frame in link.written[1:])  # an empty retransmit request went out


def test_persistent_corruption_is_a_checksum_error(model: RegisterModel) -> None:
    def mangle(answer: bytes) -> bytes:
        return answer[:-1] + bytes(((answer[-1] ^ 0x55) & 0x7F,))

    with pytest.raises(ChecksumError):
        session_for(AtolDevice(model), mangle).poll()


class Silent:
    def feed(self, data: bytes) -> bytes:
        return b""

    def reset(self) -> None:
        return None


    def idle(self) -> None:
        pass


def test_silence_is_no_answer_fast() -> None:
    started = time.monotonic()
    with pytest.raises(NoAnswer) as info:
        session_for(Silent(), timeout=0.03, retries=2).identify()
    assert time.monotonic() - started < 0.5
    assert "ATOL protocol v3" in str(info.value)


class WrongProtocol:
    """Answers every packet with a well-formed v3 packet whose status byte is not ATOL's."""

    def feed(self, data: bytes) -> bytes:
        return encode_packet(data[3], b"\x02\x05\x10") if len(data) > 5 else b""

    def reset(self) -> None:
        return None


    def idle(self) -> None:
        pass


def test_foreign_answers_are_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        session_for(WrongProtocol()).identify()


def test_refusal_is_typed_with_code_and_meaning(model: RegisterModel) -> None:
    with pytest.raises(DeviceRefused) as info:
        session_for(AtolDevice(model)).execute(OpenShift())
    assert info.value.code == 102 and info.value.command == 0x9A
    assert info.value.meaning == "команда не реализуется в данном режиме ККТ"


def test_slow_register_is_polled_until_done(model: RegisterModel) -> None:
    assert session_for(AtolDevice(model, slow_polls=2)).poll() == session_for(AtolDevice(model)).poll()


@pytest.mark.parametrize("slow_polls", [0, 2])
def test_device_answering_asynchronously_reads_the_same(model: RegisterModel, slow_polls: int) -> None:
    """Firmware that answers every ADD with A2 and the result as an F0 A6 packet (specs §3.2)."""
    expected = session_for(AtolDevice(model)).poll()
    session = session_for(AtolDevice(model, async_results=True, slow_polls=slow_polls))
    assert session.poll() == expected
    if not slow_polls:  # the F0 result arrived with the A2: taken at once, never polled for
        written = b"".join(session.link.written)  # type: ignore[attr-defined]
        assert not [p for p in Deframer().feed(written) if isinstance(p, Packet) and p.data[:1] == b"\xc3"]


@pytest.mark.parametrize("device_async", [False, True])
def test_session_asking_for_async_results_reads_sync_and_async_devices(
    model: RegisterModel, device_async: bool
) -> None:
    expected = session_for(AtolDevice(model)).poll()
    session = session_for(AtolDevice(model, async_results=device_async), async_results=True)
    assert session.poll() == expected
    added = [frame for frame in session.link.written if b"\xc1" in frame]  # type: ignore[attr-defined]
    assert added and all(_add_flags(frame) & 0x04 for frame in added)


def _add_flags(frame: bytes) -> int:
    """The ADD flags byte of the first C1 packet among the packets of one write."""
    packets = [p for p in Deframer().feed(frame) if isinstance(p, Packet) and p.data[:1] == b"\xc1"]
    return packets[0].data[1]


def test_v2_link_reads_what_v3_reads(model: RegisterModel) -> None:
    """Older firmware on the legacy link (specs §3.3): same command layer, same state."""
    expected = session_for(AtolDevice(model)).poll()
    v2 = AtolV2Session(AtolLoopback(AtolV2Device(model)), timeout=FAST["timeout"], retries=2)
    state = v2.poll()
    assert state.protocol == "atol2"
    assert replace(state, protocol="atol") == expected
    assert v2.identify() == "АТОЛ 30Ф"
    with pytest.raises(DeviceRefused) as refused:
        v2.execute(OpenShift())  # mode 0: error 102 arrives the same way
    assert refused.value.code == 102


def test_v2_session_does_not_answer_for_a_v3_register(model: RegisterModel) -> None:
    with pytest.raises(NoAnswer):
        AtolV2Session(AtolLoopback(AtolDevice(model)), timeout=0.02, retries=0).identify()


def test_refused_status_command_leaves_fields_unknown(model: RegisterModel) -> None:
    class NoFnPassThrough(AtolDevice):
        """A register whose ФН exchange fails: every A4 xx answers error 186."""

        def _execute(self, raw: bytes) -> TaskResult:
            if raw[2:3] == b"\xa4":
                return TaskResult(False, bytes((0x55, 186, 0)))
            return super()._execute(raw)

    state = session_for(NoFnPassThrough(model)).poll()
    assert state.fn.serial is None and state.ofd.unsent_count is None
    assert state.shift.status is ShiftStatus.OPEN  # from the 3Fh flag
    assert state.shift.number == 4 and state.shift.opened_at is None
    assert state.device.last_error is not None and "186" in state.device.last_error
    assert isinstance(state, RegisterState)


def test_poll_is_fast_in_process(model: RegisterModel) -> None:
    session = session_for(AtolDevice(model))
    session.poll()
    started = time.perf_counter()
    for _ in range(20):
        session.poll()
    assert (time.perf_counter() - started) / 20 < 0.05
