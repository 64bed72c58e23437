"""Alternative-link state machines (specs §1.3) without any I/O: bounded host, numbering device."""

from __future__ import annotations

from protocol.kkt.handshake import Deliver, Execute, Fail, FailureKind, Send, Wait
from protocol.kkt.shtrih.altexchange import AltDeviceLink, AltHostExchange, next_number
from protocol.kkt.shtrih.altlink import encode_alt_frame

REQUEST = b"\xfc"


def test_numbers_wrap_modulo_65536() -> None:
    assert next_number(0xFFFF) == 0 and next_number(1) == 2


def test_silence_fails_after_the_retries() -> None:
    host = AltHostExchange(REQUEST, 1, retries=2, answer_timeout=0.5)
    assert host.start() == [Send(encode_alt_frame(1, REQUEST)), Wait(0.5)]
    assert isinstance(host.timeout()[0], Send) and isinstance(host.timeout()[0], Send)
    (fail,) = host.timeout()
    assert isinstance(fail, Fail) and fail.kind is FailureKind.NO_ANSWER and host.finished


def test_noise_only_is_a_protocol_failure() -> None:
    host = AltHostExchange(REQUEST, 1)
    host.start()
    assert host.receive(b"\x06\x15\x06") == []
    (fail,) = host.timeout()
    assert isinstance(fail, Fail) and fail.kind is FailureKind.PROTOCOL


def test_answer_from_another_number_resynchronises_then_delivers() -> None:
    host = AltHostExchange(REQUEST, 1)
    host.start()
    resent = host.receive(encode_alt_frame(41, b"\x10\x00"))
    assert resent[0] == Send(encode_alt_frame(42, REQUEST)) and host.number == 42
    assert host.receive(encode_alt_frame(42, b"\xfc\x00name")) == [Deliver(b"\xfc\x00name")]


def test_device_runs_the_next_number_only_and_repeats_its_last_answer() -> None:
    device = AltDeviceLink()
    assert device.receive(encode_alt_frame(5, REQUEST)) == [Execute(REQUEST)]  # after power-up: any
    answer = device.answer(b"\xfc\x00")
    assert device.receive(encode_alt_frame(5, REQUEST)) == [Send(answer)]
    assert device.receive(encode_alt_frame(9, REQUEST)) == [Send(answer)]
    assert device.receive(encode_alt_frame(None)) == [Send(encode_alt_frame(None))]  # ping [I]
    assert device.receive(encode_alt_frame(3)) == [Send(encode_alt_frame(5))]  # "where are you" [I]
    assert device.receive(encode_alt_frame(6, REQUEST)) == [Execute(REQUEST)]
