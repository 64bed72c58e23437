"""ENQ/ACK/NAK state machines: recoveries from specs §1.2, driven by hand without I/O."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.handshake import Deliver, Execute, Fail, FailureKind, Send, Wait
from protocol.kkt.shtrih.framing import ACK, ENQ, NAK, encode_frame
from protocol.kkt.shtrih.link import DeviceLink, HostExchange, HostState

REQUEST = bytes.fromhex("10 1E 00 00 00")
ANSWER = bytes.fromhex("10 00 1E 82 02 04 00 00 99 D8 00 00 00 00 00 00")
ENQ_B, ACK_B, NAK_B = bytes((ENQ,)), bytes((ACK,)), bytes((NAK,))


def sent(actions: Sequence[object]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def corrupt(frame: bytes) -> bytes:
    return frame[:-1] + bytes((frame[-1] ^ 0xFF,))


def host(retries: int = 3) -> HostExchange:
    return HostExchange(REQUEST, retries=retries, control_timeout=0.1, answer_timeout=0.5)


def test_happy_path_enq_nak_frame_ack_answer() -> None:
    h = host()
    assert h.start() == [Send(ENQ_B), Wait(0.1)]
    assert h.receive(NAK_B) == [Send(encode_frame(REQUEST)), Wait(0.1)]
    assert h.bytes_wanted() == 1
    assert h.receive(ACK_B) == [Wait(0.5)]
    actions = h.receive(encode_frame(ANSWER))
    assert actions == [Send(ACK_B), Deliver(ANSWER)]
    assert h.state is HostState.DONE and h.finished


def test_nak_to_our_frame_resends_it() -> None:
    h = host()
    h.start()
    h.receive(NAK_B)
    assert h.receive(NAK_B) == [Send(encode_frame(REQUEST)), Wait(0.1)]


def test_bad_lrc_sends_nak_then_enq_and_takes_the_resent_answer() -> None:
    h = host()
    h.start()
    h.receive(NAK_B)
    h.receive(ACK_B)
    assert sent(h.receive(corrupt(encode_frame(ANSWER)))) == NAK_B + ENQ_B
    assert h.receive(ACK_B + encode_frame(ANSWER))[-1] == Deliver(ANSWER)


def test_timeout_retries_with_enq_and_then_fails_bounded() -> None:
    h = host(retries=2)
    h.start()
    assert h.timeout() == [Send(ENQ_B), Wait(0.1)]
    assert h.timeout() == [Send(ENQ_B), Wait(0.1)]
    [fail] = h.timeout()
    assert isinstance(fail, Fail) and fail.kind is FailureKind.NO_ANSWER
    assert h.state is HostState.FAILED and h.timeout() == []


def test_lost_ack_after_our_frame_recovers_the_answer_via_enq() -> None:
    h = host()
    h.start()
    h.receive(NAK_B)
    assert sent(h.timeout()) == ENQ_B  # no ACK: ask whether the device holds an answer
    h.receive(ACK_B)
    assert h.receive(encode_frame(ANSWER))[-1] == Deliver(ANSWER)


def test_stale_answer_is_drained_before_our_request() -> None:
    h = host()
    h.start()
    h.receive(ACK_B)  # device still holds an answer from an earlier exchange
    assert h.state is HostState.DRAIN
    stale = encode_frame(bytes.fromhex("FC 00 00 00 01 00 00 00 41"))
    assert sent(h.receive(stale)) == ACK_B + ENQ_B
    assert sent(h.receive(NAK_B)) == encode_frame(REQUEST)


def test_stray_ff_while_waiting_for_a_control_byte_is_skipped() -> None:
    h = host()
    h.start()
    assert sent(h.receive(b"\xff" + NAK_B)) == encode_frame(REQUEST)


def test_repeated_bad_lrc_fails_with_checksum() -> None:
    h = host(retries=1)
    h.start()
    h.receive(NAK_B)
    h.receive(ACK_B)
    h.receive(corrupt(encode_frame(ANSWER)))
    actions = h.receive(ACK_B + corrupt(encode_frame(ANSWER)))
    assert isinstance(actions[-1], Fail) and actions[-1].kind is FailureKind.CHECKSUM


def test_only_garbage_then_silence_is_a_protocol_failure() -> None:
    h = host(retries=0)
    h.start()
    assert h.receive(b"\x80\x81\x82") == []
    [fail] = h.timeout()
    assert isinstance(fail, Fail) and fail.kind is FailureKind.PROTOCOL


def test_answer_to_another_command_is_a_protocol_failure() -> None:
    h = host()
    h.start()
    h.receive(NAK_B)
    actions = h.receive(ACK_B + encode_frame(bytes.fromhex("11 00")))
    assert actions[-2] == Send(ACK_B)  # acknowledged so the device drops it, then refused
    assert isinstance(actions[-1], Fail) and actions[-1].kind is FailureKind.PROTOCOL


# ------------------------------------------------------------------------------- device role


def test_device_naks_enq_when_idle_and_acks_then_executes_a_good_frame() -> None:
    d = DeviceLink()
    assert d.receive(ENQ_B) == [Send(NAK_B)]
    assert d.receive(encode_frame(REQUEST)) == [Send(ACK_B), Execute(REQUEST)]


def test_device_keeps_its_answer_until_acked() -> None:
    d = DeviceLink()
    d.receive(encode_frame(REQUEST))
    frame = d.answer(ANSWER)
    assert d.receive(NAK_B) == []  # host saw a bad LRC: it will ENQ, the device does not resend alone
    assert d.receive(ENQ_B) == [Send(ACK_B + frame)]
    assert d.receive(ACK_B) == []
    assert d.pending_answer is None
    assert d.receive(ENQ_B) == [Send(NAK_B)]


def test_device_naks_bad_lrc_and_garbage() -> None:
    d = DeviceLink()
    assert d.receive(corrupt(encode_frame(REQUEST))) == [Send(NAK_B)]
    assert d.receive(b"\x99") == [Send(NAK_B)]


def test_device_in_tcp_mode_sends_stray_ff_after_the_host_ack() -> None:
    d = DeviceLink(stray_ff_after_ack=True)
    d.receive(encode_frame(REQUEST))
    d.answer(ANSWER)
    assert d.receive(ACK_B) == [Send(b"\xff")]
    d.reset()
    assert d.pending_answer is None


def test_host_and_device_machines_talk_to_each_other_byte_by_byte() -> None:
    d = DeviceLink(stray_ff_after_ack=True)
    h = host()
    outbox = sent(h.start())
    result = None
    for _ in range(50):
        reply = b""
        for device_action in d.receive(outbox):
            reply += d.answer(ANSWER) if isinstance(device_action, Execute) else device_action.data
        outbox = b""
        for byte in reply:
            for action in h.receive(bytes((byte,))):
                outbox += action.data if isinstance(action, Send) else b""
                if isinstance(action, Deliver):
                    result = action.payload
        if result is not None:
            break
    assert result == ANSWER
    assert d.receive(outbox) == [Send(b"\xff")]  # the final ACK reached the device


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_host_survives_any_bytes_and_ends_within_its_retry_budget(chunks: list[bytes]) -> None:
    h = host(retries=3)
    h.start()
    for chunk in chunks:
        h.receive(chunk)
    for _ in range(4):  # every timeout spends one of the 3 retries
        h.timeout()
    assert h.finished


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_device_link_survives_any_bytes(chunks: list[bytes]) -> None:
    d = DeviceLink()
    for chunk in chunks:
        for action in d.receive(chunk):
            assert isinstance(action, Send | Execute)
