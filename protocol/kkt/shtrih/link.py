"""The ENQ/ACK/NAK handshake (specs §1.2) as sans-I/O state machines for both roles.

Modelled on h11: the machines never read, write or look at a clock. The host machine takes
events (bytes received, a wait that timed out) and returns actions (send bytes, start a wait
window, deliver the answer, fail with a reason); the caller does the I/O. The device machine
takes received bytes and returns bytes to send plus the request frames to execute.

Every recovery (timeout, NAK from the device, damaged answer) spends one retry, so a
transaction always ends: the caller sees ``Deliver`` or ``Fail`` after a bounded number of
waits, each of which ends by itself.
"""

from __future__ import annotations

from enum import Enum, auto

from protocol.kkt.errors import DecodeError
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
from protocol.kkt.shtrih.framing import (
    ACK,
    ENQ,
    NAK,
    BadChecksum,
    Control,
    Deframer,
    Frame,
    FrameEvent,
    Garbage,
    encode_frame,
)
from protocol.kkt.shtrih.messages import command_code

STRAY_FF = b"\xff"  # sent by the device over TCP after the host's ACK (not in the spec) [V2]
MAX_STALE_ANSWERS = 3  # old answers drained before our request goes out


class HostState(Enum):
    IDLE = auto()
    ENQ_SENT = auto()  # waiting for NAK (idle) or ACK (answer held)
    FRAME_SENT = auto()  # waiting for ACK of our request
    AWAIT_ANSWER = auto()  # the answer to our request is coming
    DRAIN = auto()  # an older answer is coming: acknowledge and discard it
    DONE = auto()
    FAILED = auto()


class HostExchange:
    """One request/answer transaction in the host role.

    ``request`` is the payload ``CMD | PARAMS``. ``retries`` bounds the recoveries; the two
    timeouts are the wait windows for a control byte and for the (possibly slow) answer.
    """

    def __init__(
        self, request: bytes, *, retries: int = 3, control_timeout: float = 1.0, answer_timeout: float = 2.0
    ) -> None:
        self._request = request
        self._frame = encode_frame(request)
        self._command = command_code(request)
        self._retries = retries
        self._control_timeout = control_timeout
        self._answer_timeout = answer_timeout
        self._deframer = Deframer()
        self.state = HostState.IDLE
        self._recoveries = 0
        self._stale = 0
        self._request_maybe_delivered = False
        self._valid_seen = False
        self._garbage_seen = False

    @property
    def finished(self) -> bool:
        return self.state in (HostState.DONE, HostState.FAILED)

    def bytes_wanted(self) -> int:
        """How many bytes to ask the transport for, so a blocking read returns promptly."""
        if self.state in (HostState.AWAIT_ANSWER, HostState.DRAIN):
            return self._deframer.bytes_wanted()
        return 1

    def start(self) -> list[HostAction]:
        if self.state is not HostState.IDLE:
            raise RuntimeError("exchange already started")
        return self._send_enq()

    def receive(self, data: bytes) -> list[HostAction]:
        return handle_until_finished(self._deframer.feed(data), self._handle, lambda: self.finished)

    def timeout(self) -> list[HostAction]:
        if self.finished:
            return []
        self._deframer.reset()
        if self.state is not HostState.ENQ_SENT:
            # The request may have arrived; ENQ tells: ACK = answer held, NAK = resend.
            self._request_maybe_delivered = True
        failed = self._recover(FailureKind.NO_ANSWER, f"no reply while in {self.state.name}")
        return failed or self._send_enq()

    # ----------------------------------------------------------------------------- internals

    def _handle(self, event: FrameEvent) -> list[HostAction]:
        if isinstance(event, Garbage):
            self._garbage_seen = True  # includes the TCP stray FF, which is simply skipped
            return []
        self._valid_seen = True
        if isinstance(event, Control):
            return self._on_control(event.byte)
        if self.state is HostState.DRAIN:
            self._stale += 1
            if self._stale > MAX_STALE_ANSWERS:
                return self._fail(FailureKind.PROTOCOL, "the device keeps sending old answers")
            return [Send(bytes((ACK,))), *self._send_enq()]
        if self.state is not HostState.AWAIT_ANSWER:
            return []  # a frame we did not ask for: ignore, the handshake will sort it out
        if isinstance(event, BadChecksum):
            failed = self._recover(FailureKind.CHECKSUM, "answer LRC mismatch")
            return failed or [Send(bytes((NAK,))), *self._send_enq()]
        return self._on_answer(event)

    def _on_control(self, byte: int) -> list[HostAction]:
        if self.state is HostState.ENQ_SENT:
            if byte == NAK:
                return self._send_frame()
            if byte == ACK:
                self.state = HostState.AWAIT_ANSWER if self._request_maybe_delivered else HostState.DRAIN
                return [Wait(self._answer_timeout)]
        elif self.state is HostState.FRAME_SENT:
            if byte == ACK:
                self._request_maybe_delivered = True
                self.state = HostState.AWAIT_ANSWER
                return [Wait(self._answer_timeout)]
            if byte == NAK:
                failed = self._recover(FailureKind.CHECKSUM, "the device rejected our frame (NAK)")
                return failed or self._send_frame()
        return []  # stray control bytes while an answer is coming are ignored

    def _on_answer(self, frame: Frame) -> list[HostAction]:
        actions: list[HostAction] = [Send(bytes((ACK,)))]
        try:
            code = command_code(frame.payload)
        except DecodeError:
            code = -1
        if code != self._command:
            return actions + self._fail(
                FailureKind.PROTOCOL, f"answer is for command {code:#04x}, expected {self._command:#04x}"
            )
        self.state = HostState.DONE
        return [*actions, Deliver(frame.payload)]

    def _send_enq(self) -> list[HostAction]:
        self.state = HostState.ENQ_SENT
        return [Send(bytes((ENQ,))), Wait(self._control_timeout)]

    def _send_frame(self) -> list[HostAction]:
        self.state = HostState.FRAME_SENT
        return [Send(self._frame), Wait(self._control_timeout)]

    def _recover(self, kind: FailureKind, reason: str) -> list[HostAction]:
        """Spend one retry; return the failure when none are left, else nothing."""
        self._recoveries += 1
        if self._recoveries <= self._retries:
            return []
        if kind is FailureKind.NO_ANSWER and self._garbage_seen and not self._valid_seen:
            kind, reason = FailureKind.PROTOCOL, "bytes arrived but none were Shtrih control bytes or frames"
        return self._fail(kind, f"{reason} (after {self._retries} retries)")

    def _fail(self, kind: FailureKind, reason: str) -> list[HostAction]:
        self.state = HostState.FAILED
        return [Fail(kind, reason)]


# ---------------------------------------------------------------------------------------------
# Device role.



class DeviceLink:
    """Device side of the handshake: NAK when idle, ACK + cached answer until the host ACKs it."""

    def __init__(self, *, stray_ff_after_ack: bool = False) -> None:
        self._deframer = Deframer()
        self._pending: bytes | None = None
        self._stray_ff = stray_ff_after_ack

    @property
    def pending_answer(self) -> bytes | None:
        """The answer frame not yet acknowledged by the host."""
        return self._pending

    def reset(self) -> None:
        self._deframer.reset()
        self._pending = None

    def byte_timeout(self) -> None:
        """Silence past the byte timeout: drop a partial frame but keep the unacknowledged answer."""
        self._deframer.reset()

    def receive(self, data: bytes) -> list[DeviceAction]:
        actions: list[DeviceAction] = []
        for event in self._deframer.feed(data):
            actions += self._handle(event)
        return actions

    def answer(self, payload: bytes) -> bytes:
        """Cache the answer to the last executed request and return its frame to send."""
        self._pending = encode_frame(payload)
        return self._pending

    def _handle(self, event: FrameEvent) -> list[DeviceAction]:
        if isinstance(event, Frame):
            self._pending = None  # a new request supersedes an unacknowledged answer
            return [Send(bytes((ACK,))), Execute(event.payload)]
        if isinstance(event, BadChecksum | Garbage):
            return [Send(bytes((NAK,)))]
        if event.byte == ENQ:
            return [Send(bytes((ACK,)) + self._pending)] if self._pending else [Send(bytes((NAK,)))]
        if event.byte == ACK and self._pending is not None:
            self._pending = None
            return [Send(STRAY_FF)] if self._stray_ff else []
        return []  # NAK: the host will ENQ for the answer again
