"""The simulated register in ATOL protocol v3: the device role over any host (pty, TCP, sim://, fake USB).

Bytes go through the v3 deframer into the task buffer (``protocol.kkt.atol.task_device``), each ADDed
command is decoded with the shared registry (``protocol.kkt.atol.messages``) and answered from
the :class:`~firmware_sim.model.RegisterModel`. Fiscal commands follow the ATOL mode model:
enter mode 1 to open a shift (9Ah) or sell (92h → E6h → 4Ah), mode 3 for the Z-report (5Ah).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from firmware_sim.action_faults import ActionFaults, LinkOutage, SimAction
from firmware_sim.model import FiscalRefused, ReceiptState, RegisterModel
from protocol.kkt.atol import errors as atol_errors
from protocol.kkt.atol.link import Deframer
from protocol.kkt.atol.link_v2 import V2DeviceLink
from protocol.kkt.atol.messages import (
    OFD_ADDRESS_SETTING,
    OFD_PORT_SETTING,
    CloseReceipt,
    CloseShift,
    Command,
    CommonAnswer,
    DeviceStatus,
    DeviceType,
    EnterMode,
    FirmwareVersion,
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
    SettingValue,
    StateCode,
    UnknownCommand,
    decode_request,
)
from protocol.kkt.atol.task_device import DeviceTaskBuffer, TaskResult
from protocol.kkt.errors import DecodeError, EncodeError
from protocol.kkt.fn import (
    FFD_VERSION_TAG,
    FN_ERROR_SHIFT_OVER_24H,
    FnPhase,
    FnTlv,
    ffd_version_code,
)
from protocol.kkt.fn_fiscalisation import AUTONOMOUS_MODE_TAG
from protocol.kkt.handshake import Execute

MODE_SELECT = 0
MODE_REGISTRATION = EnterMode.REGISTRATION
MODE_X_REPORTS = EnterMode.X_REPORTS
MODE_Z_REPORTS = EnterMode.Z_REPORTS
REBOOT_SECONDS = 1.5  # how long a rebooting register stays off the line
REBOOT_AFTER = 0.2  # it finishes the answer's exchange first (v2 ends it with EOT after the answer)
SIMULATED_MODEL_ID = 61  # an ATOL model code for the simulator's A5h/3Fh [I]
PROTOCOL_VERSION = 3
PORT_RS232, PORT_USB, PORT_ETHERNET = 1, 4, 6  # 3Fh b29

# The command that starts each remote action: where scripted faults (firmware_sim.action_faults) fire.
_ACTIONS: dict[type[Command[Any]], SimAction] = {
    PrintReport: SimAction.X_REPORT,
    CloseShift: SimAction.Z_REPORT,
    OpenShift: SimAction.OPEN_SHIFT,
    SetDateTime: SimAction.SET_DATETIME,
    Reboot: SimAction.REBOOT,
}

# ФН result code (what the model raises) → ATOL error byte (§3.4): the codec's table, reversed.
_FN_TO_ATOL = {fn_code: atol_code for atol_code, fn_code in atol_errors.FN_RESULT_CODES.items()}


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(atol_errors.error_meaning(code))


class AtolDevice:
    """``DeviceEndpoint`` for ATOL v3. ``tcp`` only changes the port byte 3Fh reports (Ethernet).

    ``slow_polls`` makes every task answer "in progress" to that many REQs (exercises polling);
    ``async_results`` makes it answer every task asynchronously (A2, then an ``F0`` A6/A7 packet),
    as some firmware does; ``port`` overrides the reported port (the fake USB host passes
    :data:`PORT_USB`).
    """

    protocol_version: ClassVar[int] = PROTOCOL_VERSION  # what A5h reports

    def __init__(
        self,
        model: RegisterModel,
        *,
        tcp: bool = False,
        slow_polls: int = 0,
        async_results: bool = False,
        port: int | None = None,
    ) -> None:
        self.model = model
        self.tcp = tcp
        self.port = port if port is not None else (PORT_ETHERNET if tcp else PORT_RS232)
        self.mode = MODE_SELECT
        self.access_password = 0  # what every command carries (2 BCD digits pairs, specs §3.4)
        self.mode_password = 0  # what 56h wants to enter a mode
        self.commands_executed = 0
        self.reboots = 0
        self._rebooting = False
        self.reboot_seconds = REBOOT_SECONDS
        self.action_faults = ActionFaults()
        self.outage = LinkOutage()
        self._deframer = Deframer()
        self._tasks = DeviceTaskBuffer(self._execute, slow_polls=slow_polls, async_results=async_results)
        self._handlers: dict[type[Command[Any]], Callable[[Any], Any]] = {
            GetDeviceStatus: lambda _: self._device_status(),
            GetStateCode: lambda _: self._state_code(),
            GetDeviceType: lambda _: self._device_type(),
            GetFirmwareVersion: lambda _: self._firmware_version(),
            GetFnStatus: lambda _: self.model.fn_status(),
            GetFnNumber: lambda _: self.model.fn_serial,
            GetFnValidity: lambda _: self.model.validity(),
            GetFnExchangeStatus: lambda _: self.model.exchange_status(),
            GetFnShiftParams: lambda _: self.model.shift_params(),
            GetFnDocument: self._find_document,
            GetFnRegistrationParam: self._registration_param,
            ReadDeviceSetting: self._setting,
            EnterMode: self._enter_mode,
            LeaveMode: self._leave_mode,
            OpenShift: self._open_shift,
            CloseShift: self._close_shift,
            OpenReceipt: self._open_receipt,
            RegisterItem: self._register_item,
            CloseReceipt: self._close_receipt,
            PrintReport: self._x_report,
            SetDateTime: self._set_datetime,
            Reboot: self._reboot,
        }

    # ------------------------------------------------------------------ DeviceEndpoint

    def feed(self, data: bytes) -> bytes:
        if not self._back_on_line():
            return b""
        now = time.monotonic()
        answer = b"".join(self._tasks.receive(event, now) for event in self._deframer.feed(data))
        answer += self._tasks.tick(now)
        self._forget_lost_request()
        return self.outage.outgoing(answer)

    def reset(self) -> None:
        self._deframer.reset()
        self._tasks.reset()
        self.mode = MODE_SELECT

    def _forget_lost_request(self) -> None:
        """A request lost on the line leaves no task (or v2 answer) for the host to fetch later."""
        if self.outage.take_request_lost():
            self._deframer.reset()
            self._tasks.reset()

    def _back_on_line(self) -> bool:
        """False while off the line (what the host sends is lost); after a reboot it starts clean."""
        if self.outage.active:
            return False
        if self._rebooting and self.outage.over:
            self._rebooting = False
            self.reset()
        return True

    def idle(self) -> bytes:
        self._deframer.reset()  # a partial packet never completes after silence
        return self._tasks.tick(time.monotonic())  # async results that became due or are unacknowledged

    # ------------------------------------------------------------------ command execution

    def _execute(self, raw: bytes) -> TaskResult:
        try:
            password, command = decode_request(raw)
        except UnknownCommand as exc:
            return TaskResult(False, exc.error_answer())
        except DecodeError:
            return TaskResult(False, bytes((0x55, atol_errors.UNKNOWN_COMMAND, 0)))
        self.commands_executed += 1
        try:
            if password != self.access_password:
                raise _Refused(atol_errors.WRONG_PASSWORD)
            action = _ACTIONS.get(type(command))
            if action is not None:
                code = self.action_faults.before_action(action, self.outage)
                if code is not None:
                    raise _Refused(code)
                if self.outage.request_lost:
                    return TaskResult(False, command.encode_error(atol_errors.NOT_IN_THIS_MODE))  # never leaves
            handler = self._handlers.get(type(command))
            if handler is None:  # a firmware without this command (tests remove one to model it)
                raise _Refused(atol_errors.UNKNOWN_COMMAND)
            answer = handler(command)
            return TaskResult(True, command.encode_answer(answer))
        except _Refused as exc:
            return TaskResult(False, command.encode_error(exc.code))
        except EncodeError:
            # A model value the wire format cannot carry: answer "wrong FN state" rather than die.
            return TaskResult(False, command.encode_error(atol_errors.WRONG_FN_STATE))

    def _device_status(self) -> DeviceStatus:
        m = self.model
        flags = 0
        if m.fn_phase != FnPhase.SETUP:
            flags |= DeviceStatus.FISCALISED
        if m.shift_open:
            flags |= DeviceStatus.SHIFT_OPEN
        if m.drawer_open:
            flags |= DeviceStatus.DRAWER_OPEN
        if m.paper_present:
            flags |= DeviceStatus.PAPER_PRESENT
        if m.cover_open:
            flags |= DeviceStatus.COVER_OPEN
        if m.fn_phase == FnPhase.FISCAL:
            flags |= DeviceStatus.FN_ACTIVE
        digits = "".join(ch for ch in m.serial if ch.isdigit())[-8:]  # 3Fh carries 8 BCD digits
        return DeviceStatus(
            cashier=m.cashier,
            number_in_hall=1,
            clock=m.now().replace(microsecond=0),
            flags=flags,
            serial=digits.rjust(8, "0"),
            model_id=SIMULATED_MODEL_ID,
            mode=self.mode,
            submode=0,
            receipt_number=m.receipts_in_shift + 1,
            shift_number=m.shift_number,
            receipt_state=m.receipt_type if m.receipt_open else 0,
            receipt_sum=m.receipt_total,
            decimal_point=2,
            port=self.port,
        )

    def _state_code(self) -> StateCode:
        return StateCode(self.mode, 0, 0 if self.model.paper_present else StateCode.NO_PAPER)

    def _device_type(self) -> DeviceType:
        major, minor, build = _version_parts(self.model.firmware)
        version = bytes((major & 0xFF, minor & 0xFF)) + build.to_bytes(2, "big") + b"\x00"
        return DeviceType(self.protocol_version, 1, SIMULATED_MODEL_ID, 0, version, self.model.model_name)

    def _firmware_version(self) -> FirmwareVersion:
        major, minor, build = _version_parts(self.model.firmware)
        return FirmwareVersion(major=major, minor=minor, language=0, build=build)

    def _find_document(self, command: GetFnDocument) -> Any:
        document = self.model.find_document(command.fd_number)
        if document is None:
            raise _Refused(218)  # "нет запрошенных данных в ФН"
        return document

    def _registration_param(self, command: GetFnRegistrationParam) -> FnTlv:
        if command.tag == AUTONOMOUS_MODE_TAG:
            return FnTlv(AUTONOMOUS_MODE_TAG, bytes((int(self.model.autonomous),)))
        if command.tag != FFD_VERSION_TAG:
            raise _Refused(218)  # "нет запрошенных данных в ФН": only these tags are simulated
        return FnTlv(FFD_VERSION_TAG, bytes((ffd_version_code(self.model.ffd_version),)))

    def _setting(self, command: ReadDeviceSetting) -> SettingValue:
        """The OFD server settings (where the register sends documents); no others are simulated."""
        if command.setting == OFD_ADDRESS_SETTING:
            return SettingValue.of_text(self.model.ofd_host)
        if command.setting == OFD_PORT_SETTING:
            return SettingValue.of_number(self.model.ofd_port)
        raise _Refused(atol_errors.NOT_IN_THIS_MODE)  # no "no such setting" code in §3.4 [I]

    def _enter_mode(self, command: EnterMode) -> CommonAnswer:
        if self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_OPEN)
        if command.mode not in range(1, 7):
            raise _Refused(atol_errors.NOT_IN_THIS_MODE)
        if command.password != self.mode_password:
            raise _Refused(atol_errors.WRONG_PASSWORD)
        self.mode = command.mode
        return CommonAnswer()

    def _leave_mode(self, _: LeaveMode) -> CommonAnswer:
        if self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_OPEN)
        self.mode = MODE_SELECT
        return CommonAnswer()

    def _require_mode(self, mode: int) -> None:
        if self.mode != mode:
            raise _Refused(atol_errors.NOT_IN_THIS_MODE)

    def _require_paper(self) -> None:
        if not self.model.paper_present:
            raise _Refused(atol_errors.NO_PAPER)

    def _open_shift(self, _: OpenShift) -> CommonAnswer:
        self._require_mode(MODE_REGISTRATION)
        if self.model.shift_open:
            raise _Refused(atol_errors.SHIFT_OPEN)
        self._require_paper()
        with _fiscal():
            self.model.open_shift()
        return CommonAnswer()

    def _close_shift(self, _: CloseShift) -> CommonAnswer:
        self._require_mode(MODE_Z_REPORTS)
        if not self.model.shift_open:
            raise _Refused(atol_errors.NOT_IN_THIS_MODE)  # no code for "shift closed" in §3.4 [I]
        if self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_OPEN)
        self._require_paper()
        with _fiscal():
            self.model.close_shift()
        return CommonAnswer()

    def _x_report(self, _: PrintReport) -> CommonAnswer:
        self._require_mode(MODE_X_REPORTS)
        if self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_OPEN)
        self._require_paper()
        self.model.x_report()
        return CommonAnswer()

    def _set_datetime(self, command: SetDateTime) -> CommonAnswer:
        """Only in the select mode and with the shift closed (atol4j: "только при закрытой смене")."""
        self._require_mode(MODE_SELECT)
        if self.model.shift_open:
            raise _Refused(atol_errors.SHIFT_OPEN)
        self.model.set_clock(command.value)
        return CommonAnswer()

    def _reboot(self, _: Reboot) -> CommonAnswer:
        """Answers, then drops off the line while it boots; it comes back in the select mode."""
        self.reboots += 1
        self._rebooting = True
        self.outage.begin(self.reboot_seconds, swallow_answer=False, after=REBOOT_AFTER)
        return CommonAnswer()

    def _open_receipt(self, command: OpenReceipt) -> CommonAnswer:
        self._require_mode(MODE_REGISTRATION)
        if self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_OPEN)
        self._require_paper()
        with _fiscal(kkt_check=True):
            if not self.model.shift_open:
                self.model.open_shift()  # ATOL registers open the shift with the first receipt [I]
            self.model.open_receipt(command.receipt_type)
        return CommonAnswer()

    def _register_item(self, command: RegisterItem) -> CommonAnswer:
        self._require_mode(MODE_REGISTRATION)
        if not self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_CLOSED)
        self.model.add_item(command.amount)
        return CommonAnswer()

    def _close_receipt(self, _: CloseReceipt) -> CommonAnswer:
        self._require_mode(MODE_REGISTRATION)
        if not self.model.receipt_open:
            raise _Refused(atol_errors.RECEIPT_CLOSED)
        self._require_paper()
        with _fiscal():
            self.model.close_receipt()
        return CommonAnswer()


class AtolV2Device(AtolDevice):
    """The same register on the legacy link (specs §3.3): no task buffer, each command
    answered in its own ENQ/ACK/EOT exchange. ``kassa-sim --protocol atol2``."""

    protocol_version: ClassVar[int] = 2

    def __init__(self, model: RegisterModel, *, tcp: bool = False, port: int | None = None) -> None:
        super().__init__(model, tcp=tcp, port=port)
        self._v2 = V2DeviceLink()

    def feed(self, data: bytes) -> bytes:
        if not self._back_on_line():
            return b""
        out = bytearray()
        for action in self._v2.receive(data):
            if isinstance(action, Execute):
                out += self._v2.answer(self._execute(action.payload).answer)
            else:
                out += action.data
        if self.outage.take_request_lost():
            self._v2.reset()
        return self.outage.outgoing(bytes(out))

    def reset(self) -> None:
        super().reset()
        self._v2.reset()

    def idle(self) -> bytes:
        self._v2.byte_timeout()
        return b""


@contextmanager
def _fiscal(*, kkt_check: bool = False) -> Iterator[None]:
    """Turns the model's ФН refusals into ATOL error bytes.

    ``kkt_check``: the register itself refuses a receipt in an expired shift (136) before the ФН
    is asked; refusals of a document the ФН was asked to make carry the ФН-level code (240).
    """
    try:
        yield
    except FiscalRefused as exc:
        if kkt_check and exc.code == FN_ERROR_SHIFT_OVER_24H:
            raise _Refused(atol_errors.SHIFT_OVER_24H) from exc
        raise _Refused(_FN_TO_ATOL.get(exc.code, atol_errors.WRONG_FN_STATE)) from exc
    except ReceiptState as exc:
        raise _Refused(atol_errors.NOT_IN_THIS_MODE) from exc


def _version_parts(text: str) -> tuple[int, int, int]:
    """ "3.0.8" → (3, 0, 8); missing or non-numeric parts are 0 (the wire fields are numbers)."""
    parts = [int(part) if part.isdigit() else 0 for part in text.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0] % 100, parts[1] % 100, parts[2] % 10_000
