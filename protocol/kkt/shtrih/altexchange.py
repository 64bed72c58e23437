"""The Shtrih-M alternative link (specs §1.3) as sans-I/O state machines for both roles.

Frames are numbered; the rule both sides follow is the spec's: the device executes request
*i* only if its last answer was *i−1*, and otherwise sends its last answer again, so a
repeated request is never executed twice and a client can resynchronise from the number it
gets back. The host machine takes the same actions as the standard link's
(:mod:`protocol.kkt.shtrih.link`), so a session drives either one the same way.

Inferred ([I], the spec names the frame types but not the device's answer to them): a ping
(LEN16 = 0) is answered with a ping; an empty numbered frame is answered with an empty frame
carrying the device's last number; a corrupted frame gets no answer (the host repeats it).
"""

from __future__ import annotations

from protocol.kkt.handshake import (
    Deliver,
    DeviceAction,
    Execute,
    Fail,
    FailureKind,
    HostAction,
    Send,
    Wait,
    handle_until_finished,
)
from protocol.kkt.shtrih.altlink import AltCorrupted, AltDeframer, AltFrame, AltGarbage, encode_alt_frame
from protocol.kkt.shtrih.messages import command_code


def next_number(number: int) -> int:
    """NUM16 increments modulo 65536 (specs §1.3)."""
    return (number + 1) & 0xFFFF


class AltHostExchange:
    """One request/answer in the host role; ``number`` is the NUM16 used (moves on a resync).

    Each wait lasts ``answer_timeout``; timeouts, corrupted answers and resyncs each spend one
    of ``retries`` repeats, so the exchange always ends with ``Deliver`` or ``Fail``.
    """

    def __init__(self, request: bytes, number: int, *, retries: int = 3, answer_timeout: float = 2.0) -> None:
        self._request = request
        self._command = command_code(request)
        self.number = number
        self._retries = retries
        self._answer_timeout = answer_timeout
        self._deframer = AltDeframer()
        self._repeats = 0
        self._valid_seen = False
        self._garbage_seen = False
        self.finished = False

    def start(self) -> list[HostAction]:
        return self._send()

    def bytes_wanted(self) -> int:
        return 1  # stuffing makes the frame length unknowable before its end

    def receive(self, data: bytes) -> list[HostAction]:
        return handle_until_finished(self._deframer.feed(data), self._handle, lambda: self.finished)

    def timeout(self) -> list[HostAction]:
        if self.finished:
            return []
        self._deframer.reset()
        if self._garbage_seen and not self._valid_seen:
            return self._fail(FailureKind.PROTOCOL, "bytes came back, but no alternative-link frame")
        return self._repeat(FailureKind.NO_ANSWER, "no answer")

    def _handle(self, event: AltFrame | AltCorrupted | AltGarbage) -> list[HostAction]:
        if isinstance(event, AltGarbage):
            self._garbage_seen = True
            return []
        if isinstance(event, AltCorrupted):
            self._valid_seen = True
            return self._repeat(FailureKind.CHECKSUM, f"damaged answer ({event.reason})")
        self._valid_seen = True
        if event.number is None:
            return []  # a ping carries no answer
        if event.number == self.number and event.data:
            if command_code(event.data) != self._command:
                # The device's answer to an earlier request with this number: ours was not run.
                self.number = next_number(event.number)
                return self._repeat(FailureKind.PROTOCOL, "answer to another command")
            self.finished = True
            return [Deliver(event.data)]
        # The device's last answer has another number: continue from it (specs §1.3).
        self.number = next_number(event.number)
        return self._repeat(FailureKind.PROTOCOL, f"device at frame {event.number}, resynchronised")

    def _repeat(self, kind: FailureKind, reason: str) -> list[HostAction]:
        self._repeats += 1
        if self._repeats > self._retries:
            return self._fail(kind, f"{reason}; gave up after {self._repeats} attempts")
        self._deframer.reset()
        return self._send()

    def _send(self) -> list[HostAction]:
        return [Send(encode_alt_frame(self.number, self._request)), Wait(self._answer_timeout)]

    def _fail(self, kind: FailureKind, reason: str) -> list[HostAction]:
        self.finished = True
        return [Fail(kind, reason)]


class AltDeviceLink:
    """Device role: executes request *i* after answer *i−1*, else repeats its last answer."""

    def __init__(self) -> None:
        self._deframer = AltDeframer()
        self._last_number = 0
        self._last_answer: bytes | None = None
        self._executing: int | None = None

    def reset(self) -> None:
        """Power-up: no last answer, so the next request is executed whatever its number."""
        self._deframer.reset()
        self._last_number = 0
        self._last_answer = None
        self._executing = None

    def byte_timeout(self) -> None:
        self._deframer.reset()

    def receive(self, data: bytes) -> list[DeviceAction]:
        actions: list[DeviceAction] = []
        for event in self._deframer.feed(data):
            if not isinstance(event, AltFrame):
                continue  # corrupted or noise: no answer, the host repeats
            if event.number is None:
                actions.append(Send(encode_alt_frame(None)))
            elif not event.data:
                actions.append(Send(encode_alt_frame(self._last_number)))
            elif self._last_answer is None or event.number == next_number(self._last_number):
                self._executing = event.number
                actions.append(Execute(event.data))
            else:
                actions.append(Send(self._last_answer))
        return actions

    def answer(self, payload: bytes) -> bytes:
        """The frame answering the request just executed; kept for repeats and resyncs."""
        if self._executing is None:
            raise RuntimeError("answer() without a request to answer")
        self._last_number, self._executing = self._executing, None
        self._last_answer = encode_alt_frame(self._last_number, payload)
        return self._last_answer
