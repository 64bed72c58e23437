"""``AtolSession``: ATOL protocol v3 over any ``ByteLink`` (serial/CDC-ACM, raw USB, TCP 5555).

Each command goes through the task buffer (``protocol.kkt.atol.task_host.HostTransaction``); this
module only moves bytes, keeps time and maps failures to the typed driver errors. ``poll()``
reads 3Fh, 45h, A5h, 9Dh and the ФН pass-through A4 30/31/32/20/10 into a ``RegisterState``.

Shift-open time: no ATOL status command reports it, so it is derived the honest way — walk back
from the last FD with A4 40 ("find FD") to this shift's shift-open document and read its time.
The result is cached per shift number, so only the first poll of a shift pays for the walk.
When the walk cannot finish (command refused, document gone) ``opened_at`` stays ``None`` and
an open shift is reported OPEN unless the register itself answers 136/240 ("shift > 24 h").
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from agent.drivers.errors import ChecksumError, DeviceRefused, DriverError, NoAnswer, ProtocolViolation
from agent.drivers.link import ByteLink, LinkError
from agent.drivers.machine import run_exchange
from agent.drivers.slow_reads import SlowRead
from protocol.kkt.atol.errors import (
    NOT_IN_THIS_MODE,
    SHIFT_EXPIRED_CODES,
    SHIFT_OPEN,
    WRONG_PASSWORD,
    fn_result_code,
)
from protocol.kkt.atol.link import Deframer, LinkEvent
from protocol.kkt.atol.link_v2 import V2HostExchange
from protocol.kkt.atol.messages import (
    OFD_ADDRESS_SETTING,
    OFD_PORT_SETTING,
    CloseReceipt,
    CloseShift,
    Command,
    DeviceStatus,
    EnterMode,
    GetDeviceStatus,
    GetDeviceType,
    GetFirmwareVersion,
    GetFnDocument,
    GetFnExchangeStatus,
    GetFnNumber,
    GetFnRegistrationParam,
    GetFnShiftParams,
    GetFnStatus,
    GetFnValidity,
    GetStateCode,
    LeaveMode,
    OpenReceipt,
    OpenShift,
    PrintReport,
    ReadDeviceSetting,
    Reboot,
    RegisterItem,
    SetDateTime,
    StateCode,
    encode_request,
)
from protocol.kkt.atol.task_host import (
    Completed,
    Failed,
    FailureKind,
    HostTransaction,
    IdCounter,
    Send,
    Step,
    Wait,
    encode_abort,
)
from protocol.kkt.atol.tasks import AddFlag, TaskStatus
from protocol.kkt.errors import DecodeError, DeviceError
from protocol.kkt.fn import (
    FFD_VERSION_TAG,
    FnDocumentType,
    FnExchangeStatus,
    FnPhase,
    FnShiftParams,
    FnStatus,
    FnValidity,
    FnWarning,
    OfdExchangeFlag,
    ffd_version_name,
    warning_names,
)
from protocol.kkt.fn_fiscalisation import AUTONOMOUS_MODE_TAG
from protocol.kkt.handshake import Fail
from protocol.kkt.vocabulary import ShiftStatus, Vendor
from protocol.mqtt.wire import DeviceState, FnState, OfdState, RegisterState, ShiftState

A = TypeVar("A")

SHIFT_LIMIT = timedelta(hours=24)
POLL_INTERVAL = 0.02  # pause between REQs while a task runs
# How long a task may run before we give up, beyond the per-packet timeout: the v2 T5 values
# (§3.3) are the vendor's own figures for slow printing commands.
RESULT_TIMEOUTS: dict[bytes, float] = {
    CloseReceipt.CODE: 20.0,
    CloseShift.CODE: 40.0,
    OpenShift.CODE: 40.0,
    RegisterItem.CODE: 50.0,
    OpenReceipt.CODE: 10.0,
    PrintReport.CODE: 40.0,
}
DEFAULT_RESULT_TIMEOUT = 10.0
EXTRA_DOCUMENTS_IN_SHIFT = 32  # non-receipt FDs (corrections, reports) a shift may hold beyond its receipts
MAX_DOCUMENT_WALK = 512

NO_ANSWER_HINT = "check the cable and port, the baud rate, and that the register is set to ATOL {link}"


class AtolSession:
    protocol: ClassVar[str] = "atol"
    link_name: ClassVar[str] = "protocol v3"
    default_baudrates: ClassVar[tuple[int, ...]] = (115200, 57600, 38400, 19200, 9600, 256000, 128000)
    # Refusals that mean "not with the shift as it is": 156 shift open, 102 not in this mode (a
    # Z-report with no shift open; §3.4 lists no "shift closed" code), 136/240 past 24 h.
    shift_state_errors: ClassVar[frozenset[int]] = frozenset((SHIFT_OPEN, NOT_IN_THIS_MODE, *SHIFT_EXPIRED_CODES))
    wrong_password_error: ClassVar[int] = WRONG_PASSWORD

    def __init__(
        self,
        link: ByteLink,
        *,
        timeout: float = 1.0,
        retries: int = 3,
        password: int = 0,
        action_password: int | None = None,
        async_results: bool = False,
    ) -> None:
        """``password`` is the access password every command carries; ``action_password`` the
        mode password (56h) the actions enter the report/registration modes with (default 0).
        ``async_results`` asks for every result asynchronously (ADD flag bit 2, specs §3.2);
        either way the session reads a device that answers A3 at once or A2 and then A6."""
        self.link = link
        self.async_results = async_results
        self.timeout = timeout
        self.retries = retries
        self.password = password
        self.action_password = 0 if action_password is None else action_password
        self._deframer = Deframer()
        self._pending: deque[LinkEvent] = deque()
        self._packet_ids = IdCounter()
        self._task_ids = IdCounter()
        self._buffer_cleared = False
        self._unsent = b""  # ACKs (and the first ABORT) that ride along with the next write
        self._batching = False
        self._shift_open_cache: tuple[int, datetime | None] | None = None
        # The registration data and the OFD server change only when an engineer reconfigures.
        self._autonomous: SlowRead[bool | None] = SlowRead()
        self._ofd_server: SlowRead[tuple[str | None, int | None]] = SlowRead()

    # ------------------------------------------------------------------ commands

    def execute(self, command: Command[A], *, retries: int | None = None) -> A:
        """Run one command through the task buffer and decode its answer (errors typed)."""
        if not self.link.is_open:
            self.link.open()
        if not self._buffer_cleared:
            # Tasks a previous run left unacknowledged would collide with our task ids (B2).
            self._unsent += encode_abort(self._packet_ids)
            self._buffer_cleared = True
        try:
            status, result = self._transact(command, self.retries if retries is None else retries)
            if not self._batching:
                self._flush()
        except LinkError:
            self._deframer.reset()  # the stream is broken: start clean after the link is reopened
            self._pending.clear()
            self._unsent = b""
            self._buffer_cleared = False  # the register may have kept tasks we never acknowledged
            raise
        if status in (TaskStatus.ERROR, TaskStatus.ASYNC_ERROR) and not result:
            raise DeviceRefused(command.code, int(status), status.meaning)
        try:
            answer = command.decode_answer(result)
        except DeviceError as exc:
            raise DeviceRefused(command.code, exc.code, exc.meaning) from exc
        except DecodeError as exc:
            raise ProtocolViolation(f"bad answer to ATOL command {command.CODE.hex(' ')}: {exc}") from exc
        return answer

    def _transact(
        self, command: Command[Any], retries: int, *, overflow_retry: bool = True
    ) -> tuple[TaskStatus, bytes]:
        result_timeout = RESULT_TIMEOUTS.get(command.CODE, DEFAULT_RESULT_TIMEOUT)
        flags = AddFlag.NEED_RESULT | (AddFlag.WAIT_ASYNC if self.async_results else AddFlag(0))
        # Async waits last a whole timeout each (then a REQ); sync polls are POLL_INTERVAL apart.
        wait = self.timeout if self.async_results else POLL_INTERVAL
        transaction = HostTransaction(
            encode_request(command, self.password),
            task_id=self._task_ids.next(),
            packet_ids=self._packet_ids,
            max_repeats=retries,
            max_polls=max(1, int(result_timeout / wait)),
            flags=flags,
        )
        step: Step = transaction.start()
        deadline = 0.0
        while True:
            if isinstance(step, Send):
                if step.poll:
                    # Pace the REQ, but a device that answers asynchronously may deliver the
                    # result meanwhile (A2, then F0 A6): take it instead of polling.
                    early = self._next_event(time.monotonic() + POLL_INTERVAL, keep_partial=True)
                    after = transaction.receive(early) if early is not None else None
                    if after is not None and not isinstance(after, Wait):
                        step = after
                        continue
                self._write(step.frame)
                deadline = time.monotonic() + self.timeout
            elif isinstance(step, Completed):
                self._unsent += step.ack  # no reply is expected: it goes out with the next packet
                return step.status, step.result
            elif isinstance(step, Failed):
                if step.status is TaskStatus.OVERFLOW and overflow_retry:
                    self._unsent += encode_abort(self._packet_ids)  # a full buffer of orphaned tasks
                    return self._transact(command, retries, overflow_retry=False)
                raise self._failure(command, step)
            event = self._next_event(deadline)
            step = transaction.timeout() if event is None else transaction.receive(event)

    def _write(self, frame: bytes) -> None:
        # One write per request: an ACK written alone and then the next ADD would meet Nagle's
        # algorithm and the peer's delayed ACK over TCP (≈40 ms per command).
        data, self._unsent = self._unsent + frame, b""
        self.link.write(data)

    def _flush(self) -> None:
        if self._unsent:
            self._write(b"")

    @contextmanager
    def _batched(self) -> Iterator[None]:
        """Commands inside share writes; the last ACK is flushed at the end."""
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
        self._flush()

    def _next_event(self, deadline: float, *, keep_partial: bool = False) -> LinkEvent | None:
        """The next link event before ``deadline``; ``keep_partial`` keeps a half-read packet
        (a short look, not a timeout)."""
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                if not keep_partial:
                    self._deframer.reset()  # a half-received packet will be sent again whole
                return None
            chunk = self.link.read(self._deframer.bytes_wanted(), left)
            if chunk:
                self._pending.extend(self._deframer.feed(chunk))
        return self._pending.popleft()

    def _failure(self, command: Command[Any], failed: Failed) -> Exception:
        what = f"ATOL command {command.CODE.hex(' ')}"
        if failed.kind is FailureKind.NO_ANSWER:
            return NoAnswer(f"{what}: {failed.detail}", NO_ANSWER_HINT.format(link=self.link_name))
        if failed.kind is FailureKind.CHECKSUM:
            return ChecksumError(
                f"{what}: {failed.detail}", "check the cable, interference and the baud rate"
            )
        if failed.kind is FailureKind.REFUSED and failed.status is not None:
            return DeviceRefused(command.code, int(failed.status), failed.detail)
        return ProtocolViolation(f"{what}: {failed.detail}", f"is this an ATOL register speaking {self.link_name}?")

    # ------------------------------------------------------------------ actions (agent.drivers.actions)

    def x_report(self) -> None:
        self._in_mode(EnterMode.X_REPORTS, PrintReport(PrintReport.DAILY))

    def close_shift(self) -> None:
        self._in_mode(EnterMode.Z_REPORTS, CloseShift())

    def open_shift(self) -> None:
        self._in_mode(EnterMode.REGISTRATION, OpenShift())

    def set_datetime(self, when: datetime) -> None:
        """EDh in the select mode (left from whatever mode the register was in)."""
        self.execute(LeaveMode())
        self.execute(SetDateTime(when))

    def reboot(self) -> None:
        self.execute(Reboot())

    def _in_mode(self, mode: int, command: Command[Any]) -> None:
        """ATOL's mode model (specs §3.4): select, enter the mode, run the command, leave it.
        The mode is left after a refusal too, so the cashier's next sale works; after a lost link
        nothing more is sent (the register may be gone)."""
        self.execute(LeaveMode())
        self.execute(EnterMode(mode, self.action_password))
        try:
            self.execute(command)
        except DeviceRefused:
            self._leave_mode_quietly()
            raise
        self._leave_mode_quietly()

    def _leave_mode_quietly(self) -> None:
        """The command's own outcome is what counts: a failure to leave the mode does not undo it."""
        with contextlib.suppress(DriverError, LinkError):
            self.execute(LeaveMode())

    # ------------------------------------------------------------------ DriverSession

    def identify(self) -> str:
        device_type = self.execute(GetDeviceType(), retries=1)
        return device_type.name or f"ATOL model {device_type.model}"

    def poll(self) -> RegisterState:
        with self._batched():
            return self._read_state()

    def _read_state(self) -> RegisterState:
        errors = _Refusals()
        status = self.execute(GetDeviceStatus())
        state_code = self._optional(GetStateCode(), errors)
        device_type = self._optional(GetDeviceType(), errors)
        firmware = self._optional(GetFirmwareVersion(), errors)
        fn_status = self._optional(GetFnStatus(), errors)
        fn_number = self._optional(GetFnNumber(), errors)
        validity = self._optional(GetFnValidity(), errors)
        exchange = self._optional(GetFnExchangeStatus(), errors)
        shift = self._optional(GetFnShiftParams(), errors)
        ffd_version = self._ffd_version()
        context = (fn_status.fn_serial if fn_status else None, shift.shift_number if shift else None)
        autonomous = self._autonomous.get(context, self._read_autonomous)
        server = self._ofd_server.get(context, self._read_ofd_server)
        shift_state = self._shift_state(status, fn_status, shift, errors.codes)
        return RegisterState(
            vendor=Vendor.ATOL,
            protocol=self.protocol,
            model=device_type.name if device_type else None,
            model_id=device_type.model if device_type else status.model_id,
            serial=status.serial,
            firmware=str(firmware) if firmware else None,
            ffd_version=ffd_version,
            register_clock=status.clock,
            last_fd_number=fn_status.last_fd_number if fn_status else None,
            shift=shift_state,
            fn=_fn_state(fn_status, fn_number, validity),
            ofd=_ofd_state(exchange, fn_status, autonomous, server),
            device=_device_state(status, state_code, errors),
        )

    def _ffd_version(self) -> str | None:
        """Tag 1209 from the ФН's registration data; firmware without A4 44 leaves it unknown
        without an error on the register page (it is not a fault of the register)."""
        try:
            tlv = self.execute(GetFnRegistrationParam(FFD_VERSION_TAG))
        except DeviceRefused:
            return None
        return ffd_version_name(tlv.value[0]) if tlv.value else None

    def _read_autonomous(self) -> bool | None:
        """Tag 1002 of the registration data (A4 44); refused or absent = unknown."""
        try:
            tlv = self.execute(GetFnRegistrationParam(AUTONOMOUS_MODE_TAG))
        except DeviceRefused:
            return None
        return bool(tlv.value[0]) if tlv.value else None

    def _read_ofd_server(self) -> tuple[str | None, int | None]:
        """Settings 273/274 (46h, layout unconfirmed: ``protocol.kkt.atol.messages``); a register
        that refuses them leaves the OFD server unknown, as before."""
        try:
            host = self.execute(ReadDeviceSetting(OFD_ADDRESS_SETTING)).text or None
            port = self.execute(ReadDeviceSetting(OFD_PORT_SETTING)).number or None
        except DeviceRefused:
            return None, None
        return host, port

    def _optional(self, command: Command[A], errors: _Refusals) -> A | None:
        """A status the register refuses leaves its fields unknown; link failures still propagate."""
        try:
            return self.execute(command)
        except DeviceRefused as exc:
            errors.texts.append(f"{command.CODE.hex(' ')}: {exc.code} {exc.meaning}")
            errors.codes.add(exc.code)
            return None

    def _shift_state(
        self,
        status: DeviceStatus,
        fn_status: FnStatus | None,
        shift: FnShiftParams | None,
        refusal_codes: set[int],
    ) -> ShiftState:
        is_open = shift.shift_open if shift else (fn_status.shift_open if fn_status else status.shift_open)
        number = shift.shift_number if shift else status.shift_number
        receipts = shift.receipt_number if shift else None
        if not is_open:
            return ShiftState(status=ShiftStatus.CLOSED, number=number, receipts=receipts)
        opened_at = None
        if fn_status is not None:
            opened_at = self._shift_opened_at(number, fn_status.last_fd_number, receipts or 0)
        # The register's own word (136/240 to any command this poll) or the shift-open document's age.
        expired = bool(refusal_codes & SHIFT_EXPIRED_CODES) or (
            opened_at is not None and status.clock is not None and status.clock - opened_at >= SHIFT_LIMIT
        )
        return ShiftState(
            status=ShiftStatus.EXPIRED if expired else ShiftStatus.OPEN,
            number=number,
            receipts=receipts,
            opened_at=opened_at,
        )

    def _shift_opened_at(self, shift_number: int, last_fd: int, receipts: int) -> datetime | None:
        if self._shift_open_cache is not None and self._shift_open_cache[0] == shift_number:
            return self._shift_open_cache[1]
        found: datetime | None = None
        walk = min(receipts + EXTRA_DOCUMENTS_IN_SHIFT, MAX_DOCUMENT_WALK)
        for fd_number in range(last_fd, max(0, last_fd - walk), -1):
            try:
                document = self.execute(GetFnDocument(fd_number))
            except DeviceRefused:
                break  # pass-through refused or document not kept: leave the time unknown
            if document.document_type == FnDocumentType.SHIFT_CLOSE:
                break
            if document.document_type == FnDocumentType.SHIFT_OPEN and document.shift_number in (
                None,
                shift_number,
            ):
                found = document.created_at
                break
        self._shift_open_cache = (shift_number, found)
        return found


class AtolV2Session(AtolSession):
    """The same commands over the legacy v2 link (specs §3.3) for older firmware: each command
    is one ENQ/ACK/EOT exchange, with no task buffer to clear or acknowledge."""

    protocol: ClassVar[str] = "atol2"
    link_name: ClassVar[str] = "protocol v2"

    def __init__(
        self,
        link: ByteLink,
        *,
        timeout: float = 1.0,
        retries: int = 3,
        password: int = 0,
        action_password: int | None = None,
    ) -> None:
        super().__init__(link, timeout=timeout, retries=retries, password=password, action_password=action_password)
        self._buffer_cleared = True  # v2 has no task buffer: nothing to ABORT

    def _transact(
        self, command: Command[Any], retries: int, *, overflow_retry: bool = True
    ) -> tuple[TaskStatus, bytes]:
        exchange = V2HostExchange(
            encode_request(command, self.password),
            retries=retries,
            control_timeout=self.timeout,
            answer_timeout=RESULT_TIMEOUTS.get(command.CODE, DEFAULT_RESULT_TIMEOUT),
        )
        outcome = run_exchange(self.link, exchange)
        if isinstance(outcome, Fail):
            raise self._failure(command, Failed(FailureKind[outcome.kind.name], outcome.reason))
        return TaskStatus.RESULT, outcome  # an error answer (55h err) is decoded by the command


@dataclass
class _Refusals:
    """Error answers to the optional status commands of one poll."""

    texts: list[str] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)

    @property
    def fn_codes(self) -> list[int]:
        """The ФН result codes these ATOL errors pass through."""
        return sorted({fn for code in self.codes if (fn := fn_result_code(code)) is not None})


def _fn_state(status: FnStatus | None, number: str | None, validity: FnValidity | None) -> FnState:
    phase = status.phase if status else None
    return FnState(
        serial=(status.fn_serial if status else None) or number or None,
        phase=phase,
        phase_name=_phase_name(phase),
        fiscal=phase == FnPhase.FISCAL if phase is not None else None,
        valid_until=validity.valid_until if validity else None,
        registrations_left=validity.registrations_left if validity else None,
        registrations_done=validity.registrations_done if validity else None,
        warning_flags=int(status.warnings) if status else None,
        warnings=warning_names(int(status.warnings)) if status else [],
    )


def _phase_name(phase: int | None) -> str | None:
    try:
        return FnPhase(phase).meaning if phase is not None else None
    except ValueError:
        return None  # a phase value the ФН document does not define: keep the raw number only


def _ofd_state(
    exchange: FnExchangeStatus | None,
    fn_status: FnStatus | None,
    autonomous: bool | None,
    server: tuple[str | None, int | None],
) -> OfdState:
    timeout = bool(fn_status.warnings & FnWarning.OFD_TIMEOUT) if fn_status else None
    host, port = server
    if exchange is None:
        return OfdState(response_timeout=timeout, autonomous=autonomous, server_host=host, server_port=port)
    return OfdState(
        unsent_count=exchange.unsent_count,
        first_unsent_number=exchange.first_unsent_number or None,  # 0 means "queue empty"
        first_unsent_at=exchange.first_unsent_at,
        transport_connected=exchange.transport_connected,
        message_waiting=bool(exchange.flags & OfdExchangeFlag.MESSAGE_PENDING),
        awaiting_receipt=bool(exchange.flags & OfdExchangeFlag.WAITING_FOR_TICKET),
        ofd_command_pending=bool(exchange.flags & OfdExchangeFlag.COMMAND_FROM_OFD),
        settings_changed=bool(exchange.flags & OfdExchangeFlag.SETTINGS_CHANGED),
        awaiting_command_answer=bool(exchange.flags & OfdExchangeFlag.WAITING_FOR_COMMAND_ANSWER),
        response_timeout=timeout,
        autonomous=autonomous,
        server_host=host,
        server_port=port,
    )


def _device_state(status: DeviceStatus, code: StateCode | None, errors: _Refusals) -> DeviceState:
    # 45h bit 0 is the printer's own sensor; 3Fh bit 3 is the fallback when 45h is refused.
    paper = code.paper_present if code else status.paper_present
    return DeviceState(
        paper_present=paper,
        cover_open=status.cover_open,
        mode=code.mode if code else status.mode,
        submode=code.submode if code else status.submode,
        last_error="; ".join(errors.texts) or None,
        fn_errors=errors.fn_codes,
    )
