"""ATOL v2 link layer (specs §3.3): DLE escaping, XOR CRC, and both roles of the handshake."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.atol.link_v2 import (
    ACK,
    ENQ,
    EOT,
    NAK,
    V2BadFrame,
    V2Control,
    V2Deframer,
    V2DeviceLink,
    V2Frame,
    V2HostExchange,
    encode_frame,
)
from protocol.kkt.handshake import Deliver, Execute, Fail, FailureKind, Send, Wait

B = bytes


def test_frame_escapes_etx_and_dle_and_xors_after_stx() -> None:
    # DATA 00 00 03 10 → 02 | 00 00 10 03 10 10 | 03 | CRC over everything after STX (DLEs too).
    frame = encode_frame(b"\x00\x00\x03\x10")
    assert frame[:-1] == bytes.fromhex("02 00 00 10 03 10 10 03")
    assert frame[-1] == 0x00 ^ 0x00 ^ 0x10 ^ 0x03 ^ 0x10 ^ 0x10 ^ 0x03


@given(st.binary(max_size=300), st.integers(1, 7))
def test_any_data_survives_any_split(data: bytes, step: int) -> None:
    wire = encode_frame(data)
    deframer = V2Deframer()
    events = [e for i in range(0, len(wire), step) for e in deframer.feed(wire[i : i + step])]
    assert events == [V2Frame(data)]


def test_bad_crc_and_control_bytes_are_events() -> None:
    wire = bytearray(encode_frame(b"\x00\x00\x3f"))
    wire[-1] ^= 1
    events = V2Deframer().feed(B((ENQ,)) + bytes(wire) + B((EOT,)))
    assert events[0] == V2Control(ENQ) and isinstance(events[1], V2BadFrame) and events[2] == V2Control(EOT)


def _run(host: V2HostExchange, device: V2DeviceLink, answer: bytes) -> list[object]:
    """Pump bytes between the two roles; returns the host's final actions."""
    pending = [a for a in host.start() if isinstance(a, Send)]
    finals: list[object] = []
    while pending:
        out = b""
        for send in pending:
            for action in device.receive(send.data):
                out += device.answer(answer) if isinstance(action, Execute) else action.data
        pending = []
        for action in host.receive(out) if out else []:
            if isinstance(action, Send):
                pending.append(action)
            elif not isinstance(action, Wait):
                finals.append(action)
    return finals


def test_host_and_device_complete_one_exchange() -> None:
    assert _run(V2HostExchange(b"\x00\x00\x3f"), V2DeviceLink(), b"D\x01") == [Deliver(b"D\x01")]


def test_host_gives_up_on_silence_after_bounded_enqs() -> None:
    host = V2HostExchange(b"\x00\x00\x3f", retries=1, control_timeout=0.1)
    assert host.start() == [Send(B((ENQ,))), Wait(0.1)]
    assert host.timeout() == [Send(B((ENQ,))), Wait(0.1)]
    (fail,) = host.timeout()
    assert isinstance(fail, Fail) and fail.kind is FailureKind.NO_ANSWER


def test_host_naks_a_damaged_answer_and_the_device_resends_it() -> None:
    device = V2DeviceLink()
    assert device.receive(B((ENQ,))) == [Send(B((ACK,)))]
    assert device.receive(encode_frame(b"\x00\x00\x3f")) == [Send(B((ACK,)))]
    assert device.receive(B((EOT,))) == [Execute(b"\x00\x00\x3f")]
    assert device.answer(b"D") == B((ENQ,))
    assert device.receive(B((ACK,))) == [Send(encode_frame(b"D"))]
    assert device.receive(B((NAK,))) == [Send(encode_frame(b"D"))]
    assert device.receive(B((ACK,))) == [Send(B((EOT,)))]
