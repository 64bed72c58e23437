"""Shtrih-M standard link (specs §1.2) as a foreign client drives it, over a pty and TCP.

Requests are the spec's own example frames where it gives one; answers are checked byte by
byte (STX, LEN, LRC computed here, not by the codec under test).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

from firmware_sim.shtrih import ShtrihDevice
from protocol.kkt.shtrih.altlink import AltDeframer, AltFrame, AltGarbage, encode_alt_frame
from tests.interop.conftest import ForeignClient, MakeDevice, Simulator, make_model

Connect = Callable[[MakeDevice], Simulator]

SHORT_STATUS = "02 05 10 1E 00 00 00 0B"  # §1.2 example: 10h short status, password 30
FN_STATUS = "02 06 FF 01 1E 00 00 00 E6"  # §1.2 example: FF01 FN status, password 30
ENQ, ACK, NAK, STX = b"\x05", b"\x06", b"\x15", b"\x02"


def shtrih(tcp: bool) -> ShtrihDevice:
    return ShtrihDevice(make_model(), tcp=tcp)


def frame(payload: bytes) -> bytes:
    """A request frame built here: STX, LEN, payload, LRC = XOR from LEN on (§1.2)."""
    body = bytes((len(payload),)) + payload
    return STX + body + bytes((reduce(lambda a, b: a ^ b, body, 0),))


def read_answer(client: ForeignClient) -> bytes:
    """One answer frame; checks STX and LRC; returns the payload (CMD | ERR | data)."""
    assert client.read(1) == STX
    length = client.read(1)
    payload = client.read(length[0])
    check = client.read(1)[0]
    assert reduce(lambda a, b: a ^ b, length + payload, 0) == check, "LRC of the device's answer"
    return payload


def acknowledge(sim: Simulator) -> None:
    """ACK the answer; over TCP the device then sends its stray FF (§1.1 TCP quirk)."""
    sim.client.send(ACK)
    if sim.transport == "tcp":
        assert sim.client.read(1) == b"\xff"


def test_enq_when_idle_is_answered_nak(connect: Connect) -> None:
    """§1.2 Simulator rules: «Answer ENQ with NAK when idle.»"""
    sim = connect(shtrih)
    sim.client.send(ENQ)
    assert sim.client.read(1) == NAK


def test_enq_then_command_then_ack(connect: Connect) -> None:
    """§1.2 Handshake: «Host sends `ENQ (05)` and waits for one byte.» … «`ACK` = frame accepted.»"""
    sim = connect(shtrih)
    sim.client.send(ENQ)
    assert sim.client.read(1) == NAK
    sim.client.send(SHORT_STATUS)
    assert sim.client.read(1) == ACK
    answer = read_answer(sim.client)
    assert answer[:2] == b"\x10\x00" and len(answer) in (16, 17)  # §1.4 10h: answer LEN 16 or 17
    acknowledge(sim)
    sim.client.send(ENQ)
    assert sim.client.read(1) == NAK  # acknowledged: nothing held any more


def test_two_byte_command_answer_echoes_ff01(connect: Connect) -> None:
    """§1.2: «Response … Payload = `CMD(echo, 1–2 bytes) | ERR(1) | data…`»; FF01 «LEN = 33»."""
    sim = connect(shtrih)
    sim.client.send(FN_STATUS)
    assert sim.client.read(1) == ACK
    answer = read_answer(sim.client)
    assert answer[:3] == b"\xff\x01\x00" and len(answer) == 33
    assert answer[13:29] == b"9999078900012345"  # FN number: after phase, doc, data, shift, warnings, date-time(5)


def test_unacknowledged_answer_is_resent_after_enq(connect: Connect) -> None:
    """§1.2 Simulator rules: «Answer ENQ with ACK followed by the cached answer frame if the last answer was not ACKed.»"""
    sim = connect(shtrih)
    sim.client.send(SHORT_STATUS)
    assert sim.client.read(1) == ACK
    first = read_answer(sim.client)
    sim.client.send(ENQ)  # as if the answer had been lost
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client) == first
    acknowledge(sim)


def test_nak_to_the_answer_then_enq_gets_it_again(connect: Connect) -> None:
    """§1.2 Handshake step 5: «the device does **not** resend by itself, so the host then sends `ENQ` and the device answers `ACK` and resends the answer.»"""
    sim = connect(shtrih)
    sim.client.send(SHORT_STATUS)
    assert sim.client.read(1) == ACK
    first = read_answer(sim.client)
    sim.client.send(NAK)
    assert sim.client.silent_for(0.3)  # no resend on its own
    sim.client.send(ENQ)
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client) == first


def test_command_while_previous_answer_unread_is_executed(connect: Connect) -> None:
    """§1.2 Handshake: «`ACK (06)` = device is holding/preparing an answer.» A new frame supersedes the unread one [I]."""
    sim = connect(shtrih)
    sim.client.send(SHORT_STATUS)
    sim.client.send(FN_STATUS)  # the first answer is neither read nor acknowledged
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client)[:1] == b"\x10"
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client)[:2] == b"\xff\x01"
    acknowledge(sim)
    sim.client.send(ENQ)
    assert sim.client.read(1) == NAK  # only the latest answer was held, and it is acknowledged


def test_wrong_lrc_from_the_host_is_nak_and_the_resend_is_executed(connect: Connect) -> None:
    """§1.2 Simulator rules: «Send NAK on a bad LRC or an unexpected byte; send ACK on a good one, then execute.»"""
    sim = connect(shtrih)
    bad = bytearray(bytes.fromhex(SHORT_STATUS))
    bad[-1] ^= 0x01
    sim.client.send(bytes(bad))
    assert sim.client.read(1) == NAK
    sim.client.send(SHORT_STATUS)  # §1.2 step 3: «`NAK` = interface error; resend the frame»
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client)[:2] == b"\x10\x00"


def test_unknown_command_is_answered_with_error_37h_only(connect: Connect) -> None:
    """§1.5: «37h | command not supported by this KKT»; §1.2: «When ERR ≠ 0 the device sends **only** CMD + ERR.»"""
    sim = connect(shtrih)
    sim.client.send(frame(b"\x77\x1e\x00\x00\x00"))
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client) == b"\x77\x37"


def test_wrong_password_is_error_4fh(connect: Connect) -> None:
    """§1.5: «4Fh | wrong password»; §1.2: FN commands «take the system-administrator password»."""
    sim = connect(shtrih)
    sim.client.send(frame(b"\xff\x01\x01\x00\x00\x00"))  # FF01 with the cashier's password 1
    assert sim.client.read(1) == ACK
    assert read_answer(sim.client) == b"\xff\x01\x4f"


def test_tcp_sends_a_stray_ff_after_the_hosts_ack(connect: Connect) -> None:
    """§1.1 TCP quirk: «over TCP the device sends an extra `FF` byte after receiving the host's ACK.»"""
    sim = connect(shtrih)
    sim.client.send(SHORT_STATUS)
    assert sim.client.read(1) == ACK
    read_answer(sim.client)
    sim.client.send(ACK)
    if sim.transport == "tcp":
        assert sim.client.read(1) == b"\xff"
    else:
        assert sim.client.silent_for(0.3)  # a serial line has no such byte


# ------------------------------------------------------------------ alternative link (§1.3)

DEVICE_TYPE = b"\xfc"  # FCh needs no password


def read_alt(client: ForeignClient) -> AltFrame:
    deframer = AltDeframer()
    while True:
        events = [e for e in deframer.feed(client.read(1)) if not isinstance(e, AltGarbage)]
        if events:
            assert isinstance(events[0], AltFrame), events[0]
            return events[0]


def test_first_byte_8f_selects_the_alternative_link(connect: Connect) -> None:
    """§1.1 Protocol autodetect: «the device picks the framing from the first byte it receives: `05` (ENQ) or `02` (STX) = standard, `8F` = alternative»"""
    sim = connect(shtrih)
    sim.client.send(encode_alt_frame(1, DEVICE_TYPE))
    answer = read_alt(sim.client)
    assert answer.number == 1 and answer.data[:2] == b"\xfc\x00"
    assert answer.data[8:].rstrip(b"\x00").decode("cp1251") == "Interop register"  # §1.4 FCh: name at 7 after CMD


def test_alt_request_runs_once_and_a_wrong_number_gets_the_last_answer(connect: Connect) -> None:
    """§1.3: «Synchronisation: the device executes request *i* only if its last answer was *i−1*. Otherwise it re-sends its last answer, so that the client can resynchronise. Repeating the same *i* never executes a command twice.»"""
    sim = connect(shtrih)
    device = sim.device
    assert isinstance(device, ShtrihDevice)
    z_report = b"\x41\x1e\x00\x00\x00"  # §1.2 example payload: 41h Z-report, password 30
    sim.client.send(encode_alt_frame(1, z_report))
    first = read_alt(sim.client)
    assert first.number == 1 and first.data[:2] == b"\x41\x00"
    closed_at = device.model.last_fd_number
    sim.client.send(encode_alt_frame(1, z_report))  # the same i again
    assert read_alt(sim.client) == first
    sim.client.send(encode_alt_frame(7, DEVICE_TYPE))  # out of step
    assert read_alt(sim.client) == first
    assert device.model.last_fd_number == closed_at  # closed once
    sim.client.send(encode_alt_frame(2, DEVICE_TYPE))  # resynchronised: i = last + 1
    assert read_alt(sim.client).data[:1] == b"\xfc"


def test_alt_frame_numbers_and_data_are_stuffed(connect: Connect) -> None:
    """§1.3: «Byte stuffing is applied after computing the CRC to every byte except the leading STX» «`8F` → `9F 81`»"""
    sim = connect(shtrih)
    sim.client.send(encode_alt_frame(0x8F, DEVICE_TYPE))  # after power-up any number is run
    raw = sim.client.read_until(lambda got: any(isinstance(e, AltFrame) for e in AltDeframer().feed(got)))
    assert raw[:1] == b"\x8f" and b"\x8f" not in raw[1:]
    assert raw[3:5] == b"\x9f\x81"  # NUM16 low byte 8F, stuffed (after STX and LEN16)


def test_corrupted_alt_frame_is_not_run_and_the_repeat_is(connect: Connect) -> None:
    """§1.3: «On receive, `9F` followed by anything other than `81`/`83`, or a bare `8F`, means a corrupted frame.» «CRC16 covers LEN16, NUM16 and DATA.»"""
    sim = connect(shtrih)
    damaged = bytearray(encode_alt_frame(1, DEVICE_TYPE))
    damaged[-1] ^= 0x01
    sim.client.send(bytes(damaged))
    assert sim.client.silent_for(0.3)  # no answer to a frame it cannot trust [I]; the host repeats
    sim.client.send(encode_alt_frame(1, DEVICE_TYPE))
    assert read_alt(sim.client).number == 1


def test_unknown_command_over_the_alt_link_is_error_37h(connect: Connect) -> None:
    """§1.3: «DATA = the same `CMD | PARAMS` (request) or `CMD | ERR | data` (answer) as in §1.2.» §1.5: «37h | command not supported by this KKT»"""
    sim = connect(shtrih)
    sim.client.send(encode_alt_frame(1, b"\x77\x1e\x00\x00\x00"))
    assert read_alt(sim.client).data == b"\x77\x37"
