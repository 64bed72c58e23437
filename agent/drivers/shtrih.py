"""Shtrih-M driver session: drives the host-role link machine over a ``ByteLink`` and polls.

The session is the only layer that touches the link. Each command is one
:class:`~protocol.kkt.shtrih.link.HostExchange` (or, on the alternative link, one
:class:`~protocol.kkt.shtrih.altexchange.AltHostExchange`) run by
:func:`agent.drivers.machine.run_exchange`, so a silent device costs at most
``timeout × (retries + 1)`` per command. The TCP stray ``FF`` is skipped by the machine as garbage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from agent.drivers.actions import ActionUnsupported
from agent.drivers.errors import ChecksumError, DeviceRefused, NoAnswer, ProtocolViolation
from agent.drivers.link import ByteLink
from agent.drivers.machine import HostMachine, run_exchange
from agent.drivers.slow_reads import SlowRead
from protocol.kkt.errors import DecodeError
from protocol.kkt.fn import (
    FnDocumentType,
    FnPhase,
    FnShiftParams,
    FnStatus,
    FnWarning,
    OfdExchangeFlag,
    ffd_version_name,
    warning_names,
)
from protocol.kkt.handshake import Fail, FailureKind
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.shtrih.altexchange import AltHostExchange, next_number
from protocol.kkt.shtrih.errors import (
    NOT_IN_THIS_MODE,
    NOT_SUPPORTED,
    SHIFT_NOT_OPEN,
    SHIFT_OVER_24H,
    WRONG_PASSWORD,
    fn_result_code,
)
from protocol.kkt.shtrih.link import HostExchange
from protocol.kkt.shtrih.status import Mode, cover_open, paper_present, shift_status_from_mode
from protocol.kkt.vocabulary import ShiftStatus, Vendor
from protocol.mqtt.wire import DeviceState, FnState, OfdState, RegisterState, ShiftState

Ans = TypeVar("Ans", bound=msg.Message)


NO_ANSWER_HINT = "check the cable/port and baud rate"
CHECKSUM_HINT = "the line is noisy or the baud rate is wrong; check the cable"
PROTOCOL_HINT = "the device does not speak Shtrih-M here; try another protocol or baud rate"
FN_NO_DATA = 0x08  # ФН: no such document (a gap in the archive while walking back)
MAX_WALK_BACK = 64  # FF0A look-ups per poll when searching for the shift-open document
SHIFT_LIMIT = timedelta(hours=24)
IDENTIFY_RETRIES = 1  # detect tries many ports and baud rates: give up on silence quickly
# Printing commands answer only after printing (specs §1.4: the PHP driver waits 60 s for a Z-report).
ANSWER_TIMEOUTS: dict[int, float] = {
    msg.Z_REPORT.code: 60.0,
    msg.X_REPORT.code: 60.0,
    msg.OPEN_SHIFT.code: 15.0,
    msg.CLOSE_RECEIPT.code: 5.0,
}


class ShtrihSession:
    """``DriverSession`` for Shtrih-M registers (standard link, serial/CDC-ACM or TCP)."""

    protocol: ClassVar[str] = "shtrih"
    default_baudrates: ClassVar[tuple[int, ...]] = (115200, 4800, 9600, 19200, 38400, 57600)
    # Refusals that mean "not with the shift as it is": 3Dh shift not open, 73h not in this mode
    # (mode 2/3 is an open shift, 4 a closed one), 4Eh the shift is past 24 h.
    shift_state_errors: ClassVar[frozenset[int]] = frozenset((SHIFT_NOT_OPEN, NOT_IN_THIS_MODE, SHIFT_OVER_24H))
    wrong_password_error: ClassVar[int] = WRONG_PASSWORD

    def __init__(
        self,
        link: ByteLink,
        *,
        timeout: float = 1.0,
        retries: int = 3,
        password: int = msg.SYSADMIN_PASSWORD,
        action_password: int | None = None,
    ) -> None:
        """``password`` reads the status (the ФН commands want the system administrator's);
        ``action_password`` runs the actions: an operator's password (X/Z reports and the clock
        want the administrator's or the system administrator's), by default ``password``."""
        self.link = link
        self.timeout = timeout
        self.retries = retries
        self.password = password
        self.action_password = password if action_password is None else action_password
        # (ФН serial, shift number) → shift-open time; a shift's open document never changes.
        self._opened_at_cache: dict[tuple[str | None, int], datetime | None] = {}
        self._last_error: str | None = None
        self._fn_errors: list[int] = []  # ФН result codes refused during the current poll
        # Table 19 and FF09 change only when an engineer reconfigures the register: read rarely.
        self._ofd_server: SlowRead[tuple[str | None, int | None]] = SlowRead()
        self._autonomous: SlowRead[bool | None] = SlowRead()

    # ------------------------------------------------------------------ DriverSession

    def identify(self) -> str:
        return self.request(msg.DEVICE_TYPE, msg.NoParams(), retries=min(self.retries, IDENTIFY_RETRIES)).name

    def poll(self) -> RegisterState:
        self._last_error = None
        self._fn_errors = []
        pw = msg.PasswordRequest(self.password)
        full = self._optional(msg.FULL_STATUS, pw)
        short = self._optional(msg.SHORT_STATUS, pw) if full is None else None
        device_type = self._optional(msg.DEVICE_TYPE, msg.NoParams())
        serials = self._optional(msg.LONG_SERIAL, pw)
        fn_status = self._optional(msg.FN_STATUS, pw)
        fn_number = self._optional(msg.FN_NUMBER, pw) if fn_status is None else None
        validity = self._optional(msg.FN_VALIDITY, pw)
        fn_firmware = self._optional(msg.FN_FIRMWARE, pw)
        exchange = self._optional(msg.OFD_EXCHANGE, pw)
        unconfirmed = self._optional(msg.UNCONFIRMED_COUNT, pw)
        shift_params = self._optional(msg.SHIFT_PARAMS, pw)
        resource = self._optional(msg.FN_RESOURCE, pw)
        ffd_version = self._ffd_version()
        # A new ФН or a new shift is when settings change (re-registration, a new OFD contract).
        context = (fn_status.fn_serial if fn_status else None, shift_params.shift_number if shift_params else None)
        server_host, server_port = self._ofd_server.get(context, self._read_ofd_server)
        autonomous = self._autonomous.get(context, self._read_autonomous)

        status_source: msg.FullStatus | msg.ShortStatus | None = full or short
        mode = status_source.mode if status_source else None
        submode = status_source.submode if status_source else None
        flags = status_source.flags if status_source else None
        clock = full.clock if full else None
        fn_serial = fn_status.fn_serial if fn_status else (fn_number.serial if fn_number else None)

        shift = self._shift_state(mode, shift_params, fn_status, fn_serial, clock)
        serial = serials.serial if serials else (full.serial if full else None)
        return RegisterState(
            vendor=Vendor.SHTRIH,
            protocol=self.protocol,
            model=device_type.name if device_type else None,
            model_id=device_type.model_id if device_type else None,
            # Digit strings on the wire are integers: pad to the usual 16-digit ЗН/РНМ form [I].
            serial=str(serial).zfill(16) if serial is not None else None,
            rnm=str(serials.rnm).zfill(16) if serials else None,
            inn=_inn_text(full.inn) if full and full.inn is not None else None,
            firmware=f"{full.firmware} build {full.firmware_build}" if full else None,
            ffd_version=ffd_version,
            register_clock=clock,
            last_fd_number=fn_status.last_fd_number if fn_status else None,
            shift=shift,
            fn=FnState(
                serial=fn_serial,
                phase=fn_status.phase if fn_status else None,
                phase_name=_phase_name(fn_status.phase) if fn_status else None,
                fiscal=fn_status.phase == FnPhase.FISCAL if fn_status else None,
                valid_until=validity.valid_until if validity else None,
                registrations_left=validity.registrations_left if validity else None,
                registrations_done=validity.registrations_done if validity else None,
                documents_left=resource.documents_left if resource else None,
                free_memory_kb=resource.free_kb if resource else None,
                warning_flags=int(fn_status.warnings) if fn_status else None,
                warnings=warning_names(fn_status.warnings) if fn_status else [],
                firmware=fn_firmware.version if fn_firmware else None,
            ),
            ofd=OfdState(
                # FDs without an OFD ticket (FF3F) is what ages; FF39's message count is the fallback.
                unsent_count=unconfirmed.count
                if unconfirmed
                else (exchange.unsent_count if exchange else None),
                # 0 means "queue empty": there is no first unsent document to name.
                first_unsent_number=exchange.first_unsent_number or None if exchange else None,
                first_unsent_at=exchange.first_unsent_at if exchange else None,
                transport_connected=exchange.transport_connected if exchange else None,
                message_waiting=bool(exchange.flags & OfdExchangeFlag.MESSAGE_PENDING) if exchange else None,
                awaiting_receipt=bool(exchange.flags & OfdExchangeFlag.WAITING_FOR_TICKET) if exchange else None,
                ofd_command_pending=bool(exchange.flags & OfdExchangeFlag.COMMAND_FROM_OFD) if exchange else None,
                settings_changed=bool(exchange.flags & OfdExchangeFlag.SETTINGS_CHANGED) if exchange else None,
                awaiting_command_answer=(
                    bool(exchange.flags & OfdExchangeFlag.WAITING_FOR_COMMAND_ANSWER) if exchange else None
                ),
                response_timeout=bool(fn_status.warnings & FnWarning.OFD_TIMEOUT) if fn_status else None,
                autonomous=autonomous,
                server_host=server_host,
                server_port=server_port,
            ),
            device=DeviceState(
                paper_present=paper_present(flags, submode)
                if flags is not None and submode is not None
                else None,
                cover_open=cover_open(flags) if flags is not None else None,
                mode=mode,
                submode=submode,
                last_error=self._last_error,
                fn_errors=sorted(set(self._fn_errors)),
            ),
        )

    # ------------------------------------------------------------------ actions (agent.drivers.actions)

    def x_report(self) -> None:
        self.request(msg.X_REPORT, msg.PasswordRequest(self.action_password))

    def close_shift(self) -> None:
        self.request(msg.Z_REPORT, msg.PasswordRequest(self.action_password))

    def open_shift(self) -> None:
        self.request(msg.OPEN_SHIFT, msg.PasswordRequest(self.action_password))

    def set_datetime(self, when: datetime) -> None:
        """21h time, then 22h date and 23h confirming it: the register takes no date unconfirmed."""
        self.request(msg.SET_TIME, msg.SetTimeRequest(when.time(), self.action_password))
        day = msg.SetDateRequest(when.date(), self.action_password)
        self.request(msg.SET_DATE, day)
        self.request(msg.CONFIRM_DATE, day)

    def reboot(self) -> None:
        raise ActionUnsupported("в протоколе Штрих-М нет команды перезагрузки ККТ")

    # ------------------------------------------------------------------ commands

    def request(
        self,
        command: msg.Command[Any, Ans],
        request: Any,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Ans:
        """Run one command; a device error answer raises :class:`DeviceRefused`.

        ``timeout`` is the wait for the answer after the device acknowledged the request; by
        default the session timeout, longer for printing commands.
        """
        answer_timeout = timeout or max(self.timeout, ANSWER_TIMEOUTS.get(command.code, 0.0))
        payload = self._transact(
            command.encode_request(request), answer_timeout, self.retries if retries is None else retries
        )
        try:
            answer = command.decode_answer(payload)
        except DecodeError as exc:
            raise ProtocolViolation(f"malformed answer to {command.name}: {exc}", PROTOCOL_HINT) from exc
        if isinstance(answer, msg.ErrorAnswer):
            raise DeviceRefused(command.code, answer.code, answer.meaning)
        return answer

    def _optional(self, command: msg.Command[Any, Ans], request: Any) -> Ans | None:
        """A refused status read leaves its fields unknown instead of failing the whole poll."""
        try:
            return self.request(command, request)
        except DeviceRefused as refused:
            if refused.code != NOT_SUPPORTED:  # 37h just means "this model has no such command"
                self._note_refusal(command.code, refused, command.name)
            return None

    def _ffd_version(self) -> str | None:
        """The ФФД code in the settings table; a model that keeps it elsewhere leaves it unknown."""
        try:
            value = self._read_field(msg.FFD_VERSION_FIELD)
        except DeviceRefused:
            return None
        return ffd_version_name(value.as_int())

    def _read_ofd_server(self) -> tuple[str | None, int | None]:
        """Table 19: the OFD host and port the register sends to; unknown where refused."""
        try:
            host = self._read_field(msg.OFD_HOST_FIELD).as_text() or None
            port = self._read_field(msg.OFD_PORT_FIELD).as_int() or None
        except DeviceRefused:
            return None, None
        return host, port

    def _read_field(self, field: msg.ReadTableRequest) -> msg.TableValue:
        return self.request(msg.READ_TABLE, msg.ReadTableRequest(field.table, field.row, field.field, self.password))

    def _read_autonomous(self) -> bool | None:
        """FF09 work mode bit 1; a ФН not yet fiscalised refuses, which is no fault to report."""
        try:
            return self.request(msg.FN_FISCALISATION, msg.PasswordRequest(self.password)).autonomous
        except DeviceRefused:
            return None

    def _note_refusal(self, command: int, refused: DeviceRefused, what: str) -> None:
        self._last_error = self._last_error or f"{what}: {refused.meaning}"
        fn_code = fn_result_code(command, refused.code)
        if fn_code is not None:
            self._fn_errors.append(fn_code)

    def _transact(self, payload: bytes, answer_timeout: float, retries: int) -> bytes:
        outcome = run_exchange(self.link, self._new_exchange(payload, answer_timeout, retries))
        if isinstance(outcome, Fail):
            raise self._failure(payload, outcome)
        return outcome

    def _new_exchange(self, payload: bytes, answer_timeout: float, retries: int) -> HostMachine:
        return HostExchange(payload, retries=retries, control_timeout=self.timeout, answer_timeout=answer_timeout)

    def _failure(self, payload: bytes, fail: Fail) -> Exception:
        what = f"Shtrih command {msg.command_code(payload):#04x} on {getattr(self.link, 'url', 'link')}"
        if fail.kind is FailureKind.CHECKSUM:
            return ChecksumError(f"{what}: {fail.reason}", CHECKSUM_HINT)
        if fail.kind is FailureKind.PROTOCOL:
            return ProtocolViolation(f"{what}: {fail.reason}", PROTOCOL_HINT)
        return NoAnswer(f"{what}: {fail.reason}", NO_ANSWER_HINT)

    # ------------------------------------------------------------------ shift

    def _shift_state(
        self,
        mode: int | None,
        params: FnShiftParams | None,
        fn_status: FnStatus | None,
        fn_serial: str | None,
        clock: datetime | None,
    ) -> ShiftState:
        status = shift_status_from_mode(mode) if mode is not None else ShiftStatus.UNKNOWN
        if status is ShiftStatus.UNKNOWN and params is not None:
            # Mode 8 (open receipt) and printing modes hide the shift; the ФН still knows.
            status = ShiftStatus.OPEN if params.shift_open else ShiftStatus.CLOSED
        opened_at = None
        if status in (ShiftStatus.OPEN, ShiftStatus.EXPIRED) and params is not None and fn_status is not None:
            opened_at = self._shift_opened_at(fn_serial, params.shift_number, fn_status.last_fd_number)
        stated_by_mode = mode in (Mode.SHIFT_OPEN, Mode.SHIFT_EXPIRED)
        if (
            status is ShiftStatus.OPEN
            and not stated_by_mode
            and opened_at
            and clock
            and clock - opened_at >= SHIFT_LIMIT
        ):
            status = ShiftStatus.EXPIRED  # same 24 h rule the ФН applies, on the register's clock
        return ShiftState(
            status=status,
            number=params.shift_number if params else None,
            receipts=params.receipt_number if params else None,
            opened_at=opened_at,
        )

    def _shift_opened_at(self, fn_serial: str | None, shift_number: int, last_fd: int) -> datetime | None:
        key = (fn_serial, shift_number)
        if key not in self._opened_at_cache:
            self._opened_at_cache[key] = self._walk_back_to_shift_open(shift_number, last_fd)
        return self._opened_at_cache[key]

    def _walk_back_to_shift_open(self, shift_number: int, last_fd: int) -> datetime | None:
        """Read FDs backwards from the last one to the shift-open report (bounded) [I, specs §2.4]."""
        for number in range(last_fd, max(0, last_fd - MAX_WALK_BACK), -1):
            try:
                document = self.request(msg.FIND_DOCUMENT, msg.FindDocumentRequest(number, self.password))
            except DeviceRefused as refused:
                if refused.code == FN_NO_DATA:
                    continue
                if refused.code != NOT_SUPPORTED:
                    self._note_refusal(msg.FIND_DOCUMENT.code, refused, f"find FD {number}")
                return None
            if document.document_type == FnDocumentType.SHIFT_CLOSE:
                return None  # the last shift closed after the documents we can see
            if document.document_type == FnDocumentType.SHIFT_OPEN:
                if document.shift_number not in (None, shift_number):
                    return None
                return document.created_at
        return None


class ShtrihAltSession(ShtrihSession):
    """The same commands over the alternative link (specs §1.3): numbered frames with CRC16.

    The frame number carries over between commands; after a failure it moves on anyway, and
    the device's answer to a number it did not expect resynchronises the next exchange.
    """

    protocol: ClassVar[str] = "shtrih-alt"

    def __init__(
        self,
        link: ByteLink,
        *,
        timeout: float = 1.0,
        retries: int = 3,
        password: int = msg.SYSADMIN_PASSWORD,
        action_password: int | None = None,
    ) -> None:
        super().__init__(link, timeout=timeout, retries=retries, password=password, action_password=action_password)
        self._number = 1  # NUM16 starts at 1 (specs §1.3)
        self._exchange: AltHostExchange | None = None

    def _new_exchange(self, payload: bytes, answer_timeout: float, retries: int) -> HostMachine:
        self._exchange = AltHostExchange(payload, self._number, retries=retries, answer_timeout=answer_timeout)
        return self._exchange

    def _transact(self, payload: bytes, answer_timeout: float, retries: int) -> bytes:
        try:
            return super()._transact(payload, answer_timeout, retries)
        finally:
            if self._exchange is not None:
                self._number = next_number(self._exchange.number)
                self._exchange = None


def _phase_name(phase: int) -> str | None:
    try:
        return FnPhase(phase).meaning
    except ValueError:
        return None


def _inn_text(inn: int) -> str:
    """An INN is 10 (company) or 12 (individual) digits and may start with 0 [I]."""
    text = str(inn)
    return text.zfill(10) if len(text) <= 10 else text.zfill(12)
