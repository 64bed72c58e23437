"""ATOL protocol v3 link and task buffer (specs §3.2) as a foreign client drives it, over a pty and TCP.

Requests are the spec's example frames where it gives them; other packets are built with the
link codec (framing only: the task-buffer bytes are written out here by hand).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

from firmware_sim.atol import AtolDevice, AtolV2Device
from protocol.kkt.atol.link import BadPacket, Deframer, Packet, encode_packet
from tests.interop.conftest import ForeignClient, MakeDevice, Simulator, make_model

Connect = Callable[[MakeDevice], Simulator]

ADD_3F = "FE 06 00 01 C1 01 01 00 00 3F E7"  # §3.2 example: ADD (NeedResult, tid 1) 3Fh, packet id 1
ADD_FN_STATUS = "FE 07 00 02 C1 01 02 00 00 A4 30 5B"  # §3.2 example: A4 30 via pass-through, tid 2, id 2
ACK_TID_1 = "FE 02 00 03 C2 01 C3"  # §3.2 example: ACK for tid 1, id 3
PASSWORD = b"\x00\x00"
DEVICE_STATUS = PASSWORD + b"\x3f"
OPEN_SHIFT = PASSWORD + b"\x9a\x00"  # refused in mode 0: error 102 (§3.4)
NEED_RESULT, IGNORE_ERROR, ASYNC = 0x01, 0x02, 0x04


def atol(tcp: bool) -> AtolDevice:
    return AtolDevice(make_model(), tcp=tcp)


def slow_atol(tcp: bool) -> AtolDevice:
    return AtolDevice(make_model(), tcp=tcp, slow_polls=1000)  # every task stays "in progress"


def read_packet(client: ForeignClient) -> Packet | BadPacket:
    deframer = Deframer()
    while True:
        events = [e for e in deframer.feed(client.read(1)) if isinstance(e, Packet | BadPacket)]
        if events:
            return events[0]


def ask(client: ForeignClient, packet_id: int, data: bytes) -> Packet:
    """Send one packet and return the device's reply, which must carry the same packet id."""
    client.send(encode_packet(packet_id, data))
    reply = read_packet(client)
    assert isinstance(reply, Packet) and reply.packet_id == packet_id, reply
    return reply


def add(tid: int, command: bytes, flags: int = NEED_RESULT, code: int = 0xC1) -> bytes:
    return bytes((code, flags, tid)) + command


def test_sync_add_is_answered_a3_with_the_result_and_ack_is_silent(connect: Connect) -> None:
    """§3.2: «For A3/A4 the command result follows directly. After receiving a result the host sends `C2 <tid>` (ACK).»"""
    sim = connect(atol)
    sim.client.send(ADD_3F)
    reply = read_packet(sim.client)
    assert isinstance(reply, Packet) and reply.packet_id == 1
    assert reply.data[:2] == b"\xa3\x44"  # A3, then 3Fh's answer, which starts with 44h 'D' (§3.4)
    sim.client.send(ACK_TID_1)
    assert sim.client.silent_for(0.3)
    assert ask(sim.client, 4, b"\xc3\x01").data == b"\xb3"  # acknowledged: the task is gone


def test_fn_pass_through_example_frame(connect: Connect) -> None:
    """§3.2 example: «FN status via pass-through, tid 2, id 2: `FE 07 00 02 C1 01 02 00 00 A4 30 5B`.»"""
    sim = connect(atol)
    sim.client.send(ADD_FN_STATUS)
    reply = read_packet(sim.client)
    assert isinstance(reply, Packet) and reply.data[:3] == b"\xa3\x55\x00"
    assert reply.data[13:29] == b"9999078900012345"  # FN 30h layout (§2.3): serial after 10 bytes


def test_async_result_comes_as_f0_and_is_resent_until_ack(connect: Connect) -> None:
    """§3.2 Asynchronous results: «The device then answers the ADD with A1/A2 and, when the task completes, sends an unsolicited packet with id `F0` carrying `A6 <tid> <result>`»; «the host acknowledges with `C2 <tid>`.»"""
    sim = connect(atol)
    assert ask(sim.client, 1, add(7, DEVICE_STATUS, NEED_RESULT | ASYNC)).data in (b"\xa1", b"\xa2")
    result = read_packet(sim.client)
    assert isinstance(result, Packet) and result.packet_id == 0xF0
    assert result.data[:2] == b"\xa6\x07" and result.data[2:3] == b"\x44"
    again = read_packet(sim.client)  # not acknowledged yet: delivered again
    assert again == result
    sim.client.send(encode_packet(2, b"\xc2\x07"))
    # Re-deliveries already on their way may still arrive; then the line goes quiet for good.
    while not sim.client.silent_for(1.5):
        assert read_packet(sim.client) == result


def test_async_error_is_a7_with_the_task_id(connect: Connect) -> None:
    """§3.2: «(or `A7 <tid> <error>`)»; §3.4: «102 command not valid in this mode»."""
    sim = connect(atol)
    assert ask(sim.client, 1, add(9, OPEN_SHIFT, NEED_RESULT | ASYNC | IGNORE_ERROR)).data in (b"\xa1", b"\xa2")
    result = read_packet(sim.client)
    assert isinstance(result, Packet) and result.packet_id == 0xF0
    assert result.data == b"\xa7\x09\x55\x66\x00"


def test_req_reports_the_state_of_a_task(connect: Connect) -> None:
    """§3.2: «C3 | REQ (status of a task) | task id(1)»; «B3 | not found»."""
    sim = connect(atol)
    first = ask(sim.client, 1, add(1, DEVICE_STATUS))
    assert ask(sim.client, 2, b"\xc3\x01").data == first.data  # finished: A3 and the result again
    assert ask(sim.client, 3, b"\xc3\x55").data == b"\xb3"


def test_abort_mid_task_is_answered_and_clears_the_buffer(connect: Connect) -> None:
    """§3.2: «C4 ABORT is answered (Zzzzipper's client expects A3 to it).»; «C4 | ABORT (clear buffer)»."""
    sim = connect(slow_atol)
    assert ask(sim.client, 1, add(1, DEVICE_STATUS)).data == b"\xa1"
    assert ask(sim.client, 2, b"\xc3\x01").data == b"\xa2"  # still in progress
    assert ask(sim.client, 3, b"\xc4").data == b"\xa3"
    assert ask(sim.client, 4, b"\xc3\x01").data == b"\xb3"


def test_duplicate_task_id_is_b2(connect: Connect) -> None:
    """§3.2: «B2 | already exists»."""
    sim = connect(atol)
    ask(sim.client, 1, add(5, DEVICE_STATUS))
    assert ask(sim.client, 2, add(5, DEVICE_STATUS)).data == b"\xb2"


def test_full_buffer_is_b1(connect: Connect) -> None:
    """§3.2: «B1 | queue overflow»."""
    sim = connect(atol)
    for tid in range(16):  # never acknowledged
        assert ask(sim.client, tid, add(tid, DEVICE_STATUS, 0)).data == b"\xa1"
    assert ask(sim.client, 16, add(16, DEVICE_STATUS)).data == b"\xb1"
    assert ask(sim.client, 17, b"\xc4").data == b"\xa3"
    assert ask(sim.client, 18, add(16, DEVICE_STATUS)).data[:1] == b"\xa3"


def test_failed_task_stops_the_buffer_unless_ignore_error(connect: Connect) -> None:
    """§3.2: «ADD flags: bit 0 = NeedResult, bit 1 = IgnoreError»; «A5 | stopped» (A5 after a failure is [I])."""
    sim = connect(atol)
    assert ask(sim.client, 1, add(1, OPEN_SHIFT)).data == b"\xa4\x55\x66\x00"
    assert ask(sim.client, 2, add(2, DEVICE_STATUS)).data == b"\xa5"
    assert ask(sim.client, 3, b"\xc3\x02").data == b"\xa5"
    sim.client.send(encode_packet(4, b"\xc2\x01"))  # ACK of the failed task resumes execution
    assert ask(sim.client, 5, add(3, DEVICE_STATUS)).data[:1] == b"\xa3"
    assert ask(sim.client, 6, add(4, OPEN_SHIFT, NEED_RESULT | IGNORE_ERROR)).data[:1] == b"\xa4"
    assert ask(sim.client, 7, add(5, DEVICE_STATUS)).data[:1] == b"\xa3"


def test_ack_add_acknowledges_and_adds_in_one_packet(connect: Connect) -> None:
    """§3.2: «C5 | ACK_ADD | acknowledge and add in one packet»."""
    sim = connect(atol)
    ask(sim.client, 1, add(1, DEVICE_STATUS))
    assert ask(sim.client, 2, add(2, DEVICE_STATUS, code=0xC5)).data[:2] == b"\xa3\x44"
    assert ask(sim.client, 3, b"\xc3\x01").data == b"\xb3"


def test_packet_ids_wrap_after_df(connect: Connect) -> None:
    """§3.2: «The host uses 0x00..0xDF and wraps after 0xDF. The device uses `F0` for **asynchronous** packets.»"""
    sim = connect(atol)
    ask(sim.client, 0xDE, add(1, DEVICE_STATUS))
    assert ask(sim.client, 0xDF, b"\xc3\x01").data[:1] == b"\xa3"
    assert ask(sim.client, 0x00, b"\xc3\x01").data[:1] == b"\xa3"  # same DATA, new id: answered anew
    sim.client.send(encode_packet(0xE5, b"\xc3\x01"))  # not a host packet id
    assert sim.client.silent_for(0.3)


def test_wrong_crc_from_the_host_gets_a_retransmit_request(connect: Connect) -> None:
    """§3.2: «An empty DATA frame from the device carrying the ID of a host packet means "repeat that packet".»"""
    sim = connect(atol)
    bad = bytearray(bytes.fromhex(ADD_3F))
    bad[-1] ^= 0x01
    sim.client.send(bytes(bad))
    assert read_packet(sim.client) == Packet(1, b"")
    sim.client.send(ADD_3F)
    reply = read_packet(sim.client)
    assert isinstance(reply, Packet) and reply.data[:1] == b"\xa3"


def test_hosts_retransmit_request_repeats_the_reply_without_executing_again(connect: Connect) -> None:
    """§3.2: «A host that receives a corrupted frame answers with an empty frame carrying that ID.»"""
    sim = connect(atol)
    device = sim.device
    assert isinstance(device, AtolDevice)
    first = ask(sim.client, 1, add(1, DEVICE_STATUS))
    executed = device.commands_executed
    assert ask(sim.client, 1, b"") == first
    sim.client.send(encode_packet(1, add(1, DEVICE_STATUS)))  # the same packet repeated after a timeout
    assert read_packet(sim.client) == first
    assert device.commands_executed == executed


def test_unknown_command_is_answered_with_the_atol_error(connect: Connect) -> None:
    """§3.4: «For most commands: `55h ('U') | error code(1) | [ext] | data`.» (error 1: unknown command)"""
    sim = connect(atol)
    assert ask(sim.client, 1, add(1, PASSWORD + b"\x01", NEED_RESULT | IGNORE_ERROR)).data == b"\xa4\x55\x01\x00"


# ------------------------------------------------------------------ protocol v2, older firmware (§3.3)


def atol_v2(tcp: bool) -> AtolV2Device:
    return AtolV2Device(make_model(), tcp=tcp)


def v2_frame(data: bytes) -> bytes:
    """Built here from §3.3: DLE before 03/10 in DATA, then ETX, then XOR of all after STX."""
    body = b"".join(b"\x10" + bytes((b,)) if b in (0x03, 0x10) else bytes((b,)) for b in data) + b"\x03"
    return b"\x02" + body + bytes((reduce(lambda a, b: a ^ b, body, 0),))


def read_v2_frame(client: ForeignClient) -> bytes:
    """One device frame; returns its unescaped DATA after checking the CRC."""
    assert client.read(1) == b"\x02"
    raw = bytearray()
    data = bytearray()
    while True:
        byte = client.read(1)[0]
        raw.append(byte)
        if byte == 0x10:
            escaped = client.read(1)[0]
            raw.append(escaped)
            data.append(escaped)
        elif byte == 0x03:
            break
        else:
            data.append(byte)
    assert client.read(1)[0] == reduce(lambda a, b: a ^ b, raw, 0), "CRC of the device's frame"
    return bytes(data)


def v2_steps(client: ForeignClient, *steps: tuple[bytes, bytes]) -> None:
    """Send each request and expect the device's one-byte reply to it."""
    for request, reply in steps:
        client.send(request)
        assert client.read(1) == reply, f"reply to {request[:8].hex(' ')}"


ENQ_ACK, EOT_ENQ = (b"\x05", b"\x06"), (b"\x04", b"\x05")


def v2_command(client: ForeignClient, data: bytes) -> bytes:
    """§3.3 steps 1–6 as atol4j's client runs them; returns the answer DATA."""
    v2_steps(client, ENQ_ACK, (v2_frame(data), b"\x06"), EOT_ENQ)
    client.send(b"\x06")
    answer = read_v2_frame(client)
    v2_steps(client, (b"\x06", b"\x04"))
    return answer


def test_v2_exchange_runs_the_same_command_layer(connect: Connect) -> None:
    """§3.3 Handshake: «Host sends ENQ(05) and expects ACK(06)» «Host sends EOT(04).» «Device sends ENQ within T5» «Device sends EOT.» §3.4: «Command layer (same for v2/v3)»"""
    sim = connect(atol_v2)
    assert v2_command(sim.client, DEVICE_STATUS)[:1] == b"\x44"
    device_type = v2_command(sim.client, PASSWORD + b"\xa5")
    assert device_type[:2] == b"\x00\x02"  # A5h: error 0, protocol version 2


def test_v2_bad_crc_is_nak_and_the_resent_frame_is_taken(connect: Connect) -> None:
    """§3.3: «Host sends the frame and expects ACK within T4 = 500 ms; on NAK it resends, up to 10 times.»"""
    sim = connect(atol_v2)
    bad = bytearray(v2_frame(DEVICE_STATUS))
    bad[-1] ^= 0x01
    v2_steps(sim.client, ENQ_ACK, (bytes(bad), b"\x15"), (v2_frame(DEVICE_STATUS), b"\x06"))


def test_v2_host_nak_of_the_answer_gets_it_again(connect: Connect) -> None:
    """§3.3: «Device sends its frame; host ACKs it (NAK on a bad CRC).» The frame carries a DLE-escaped 03 or 10 when the data has one."""
    sim = connect(atol_v2)
    client = sim.client
    open_shift = v2_frame(PASSWORD + b"\x9a\x00")  # open shift in mode 0: answer 55 66 00
    v2_steps(client, ENQ_ACK, (open_shift, b"\x06"), EOT_ENQ)
    client.send(b"\x06")
    first = read_v2_frame(client)
    client.send(b"\x15")
    assert read_v2_frame(client) == first == b"\x55\x66\x00"
    v2_steps(client, (b"\x06", b"\x04"))


def test_v2_device_ignores_v3_packets(connect: Connect) -> None:
    """§3.1: «Two link layers | v2 (legacy STX/ETX/DLE, ENQ-ACK handshake) and v3 (packet/task buffer).»"""
    sim = connect(atol_v2)
    sim.client.send(ADD_3F)
    assert sim.client.silent_for(0.3)
    assert v2_command(sim.client, DEVICE_STATUS)[:1] == b"\x44"


def test_empty_ofd_queue_reads_as_zero_count_and_an_all_zero_date(connect: Connect) -> None:
    """§3.2: «In the ФН's A4 20 reply an empty queue has an all-zero document date»; §3.4 A4 20: «status(1), read(1), count(2 LE), first doc number(4 LE), first datetime(5)»"""
    sim = connect(atol)
    device = sim.device
    assert isinstance(device, AtolDevice)
    device.model.deliver_to_ofd()
    reply = ask(sim.client, 1, add(1, PASSWORD + b"\xa4\x20"))
    assert reply.data[:3] == b"\xa3\x55\x00"
    body = reply.data[3:]
    assert body[2:4] == b"\x00\x00" and body[4:8] == bytes(4) and body[8:13] == bytes(5)
