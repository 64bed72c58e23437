"""Shtrih-M device role: the register model rendered through the Shtrih protocol.

``ShtrihDevice`` is a :class:`~firmware_sim.endpoint.DeviceEndpoint`: the device-side link
machine handles ENQ/ACK/NAK, each good request frame is decoded through the shared message
registry and answered from the :class:`RegisterModel`. Mode, flags and error bytes are derived
from the model the way specs §1.4/§1.5/§6 describe.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

from firmware_sim.action_faults import ActionFaults, LinkOutage, SimAction
from firmware_sim.model import FiscalRefused, RegisterModel
from protocol.kkt.errors import DecodeError
from protocol.kkt.fn import FN_ERROR_SHIFT_OVER_24H, FnFirmware, ffd_version_code
from protocol.kkt.handshake import Execute
from protocol.kkt.shtrih import errors as err
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.shtrih.altexchange import AltDeviceLink
from protocol.kkt.shtrih.altlink import ALT_STX
from protocol.kkt.shtrih.errors import is_fn_command
from protocol.kkt.shtrih.framing import ENQ, STX
from protocol.kkt.shtrih.link import DeviceLink
from protocol.kkt.shtrih.status import KktFlag, Mode, Submode
from protocol.kkt.state import ShiftStatus

FN_NO_DATA = 0x08  # ФН "нет запрошенных данных": find FD for a number it does not hold
TCP_PORT_CODE = 128  # 11h "host port": 128 means the host talks over a TCP socket
FIRMWARE_BUILD = 1
FIRMWARE_DATE = date(2024, 1, 15)
FP_SHIFT_OPEN = 0x40  # 11h FP flags: bit 6 shift open, bit 7 24 h elapsed
FP_SHIFT_EXPIRED = 0x80

_PRINTING_COMMANDS = frozenset(
    c.code for c in (msg.OPEN_SHIFT, msg.Z_REPORT, msg.X_REPORT, msg.OPEN_RECEIPT, msg.SALE, msg.CLOSE_RECEIPT)
)
# Reports and the clock take the administrator's or system administrator's password (specs §1.4).
_ADMIN_COMMANDS = frozenset(
    c.code for c in (msg.Z_REPORT, msg.X_REPORT, msg.SET_TIME, msg.SET_DATE, msg.CONFIRM_DATE)
)
# The command that starts each remote action: where scripted faults (firmware_sim.action_faults) fire.
_ACTIONS = {
    msg.X_REPORT.code: SimAction.X_REPORT,
    msg.Z_REPORT.code: SimAction.Z_REPORT,
    msg.OPEN_SHIFT.code: SimAction.OPEN_SHIFT,
    msg.SET_TIME.code: SimAction.SET_DATETIME,
}
Framing = Literal["standard", "alt"]
LinkChoice = Literal["auto", "standard", "alt"]
_SHIFT_MODES = {ShiftStatus.OPEN: Mode.SHIFT_OPEN, ShiftStatus.EXPIRED: Mode.SHIFT_EXPIRED}


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"error {code:#04x}")


class ShtrihDevice:
    """A simulated Shtrih-M register; ``tcp=True`` adds the stray ``FF`` after the host's ACK.

    ``link``: ``auto`` picks the framing from the first byte after power-up or a reconnect, as
    the firmware does (specs §1.1: ``05``/``02`` standard, ``8F`` alternative); ``standard`` or
    ``alt`` fixes it (a register set to one framing ignores the other's bytes).
    """

    def __init__(
        self, model: RegisterModel, *, tcp: bool = False, model_id: int = 0, link: LinkChoice = "auto"
    ) -> None:
        self.model = model
        self.tcp = tcp
        self.model_id = model_id
        self.link_choice = link
        self.framing: Framing | None = None if link == "auto" else link
        self._link = DeviceLink(stray_ff_after_ack=tcp)
        self._alt_link = AltDeviceLink()
        self.action_faults = ActionFaults()
        self.outage = LinkOutage()
        self._pending_date: date | None = None  # 22h proposes a date, 23h confirms it
        # Operators' passwords (table 2 on a real register): a store may change them from the defaults.
        self.cashier_password = msg.CASHIER_PASSWORD
        self.admin_password = msg.ADMIN_PASSWORD
        self.sysadmin_password = msg.SYSADMIN_PASSWORD
        self._handlers: dict[int, Callable[[Any], msg.Message]] = {
            msg.SHORT_STATUS.code: self._short_status,
            msg.FULL_STATUS.code: self._full_status,
            msg.DEVICE_TYPE.code: self._device_type,
            msg.LONG_SERIAL.code: self._long_serial,
            msg.FN_STATUS.code: lambda _: self.model.fn_status(),
            msg.FN_NUMBER.code: lambda _: msg.FnNumber(self.model.fn_serial),
            msg.FN_VALIDITY.code: lambda _: self.model.validity(),
            msg.FN_FIRMWARE.code: lambda _: FnFirmware(self.model.fn_firmware, serial_build=True),
            msg.FIND_DOCUMENT.code: self._find_document,
            msg.FN_FISCALISATION.code: self._fiscalisation,
            msg.OFD_EXCHANGE.code: lambda _: self.model.exchange_status(),
            msg.UNCONFIRMED_COUNT.code: lambda _: msg.UnconfirmedCount(len(self.model.ofd_queue)),
            msg.SHIFT_PARAMS.code: lambda _: self.model.shift_params(),
            msg.FN_RESOURCE.code: lambda _: self.model.resource(),
            msg.OPEN_SHIFT.code: self._open_shift,
            msg.Z_REPORT.code: self._z_report,
            msg.OPEN_RECEIPT.code: self._open_receipt,
            msg.SALE.code: self._sale,
            msg.CLOSE_RECEIPT.code: self._close_receipt,
            msg.CANCEL_RECEIPT.code: self._cancel_receipt,
            msg.READ_TABLE.code: self._read_table,
            msg.X_REPORT.code: self._x_report,
            msg.SET_TIME.code: self._set_time,
            msg.SET_DATE.code: self._set_date,
            msg.CONFIRM_DATE.code: self._confirm_date,
        }

    # ------------------------------------------------------------------ DeviceEndpoint

    def feed(self, data: bytes) -> bytes:
        if self.outage.active:
            return b""  # off the line: what the host sends meanwhile is lost
        if self.framing is None:
            data = self._pick_framing(data)
        link = self._alt_link if self.framing == "alt" else self._link
        out = bytearray()
        for action in link.receive(data):
            if isinstance(action, Execute):
                out += link.answer(self.execute(action.payload))
            else:
                out += action.data
        if self.outage.take_request_lost():
            self._link.reset()  # it never arrived: no answer is kept for the host to fetch later
            self._alt_link.reset()
        return self.outage.outgoing(bytes(out))

    def _pick_framing(self, data: bytes) -> bytes:
        """Autodetect: the first 05/02 or 8F decides; bytes before it are noise."""
        for index, byte in enumerate(data):
            if byte == ALT_STX:
                self.framing = "alt"
            elif byte in (ENQ, STX):
                self.framing = "standard"
            else:
                continue
            return data[index:]
        return b""

    def reset(self) -> None:
        self._link.reset()
        self._alt_link.reset()
        if self.link_choice == "auto":
            self.framing = None

    def idle(self) -> bytes:
        self._link.byte_timeout()
        self._alt_link.byte_timeout()
        return b""

    # ------------------------------------------------------------------ command execution

    def execute(self, payload: bytes) -> bytes:
        """Run one request payload and return the answer payload (errors included)."""
        try:
            command = msg.find_command(payload)
        except msg.UnknownCommand as unknown:
            return msg.code_bytes(unknown.code) + bytes((err.NOT_SUPPORTED,))
        except DecodeError:
            return payload[:1] + bytes((err.NOT_SUPPORTED,))
        try:
            request = command.decode_request(payload)
        except DecodeError:
            return command.encode_error(err.WRONG_PARAMETERS)
        try:
            self._check_access(command.code, request)
            action = _ACTIONS.get(command.code)
            if action is not None:
                code = self.action_faults.before_action(action, self.outage)
                if code is not None:
                    raise _Refused(code)
                if self.outage.request_lost:
                    return command.encode_error(err.NOT_IN_THIS_MODE)  # never leaves: the link dropped first
            return command.encode_answer(self._handlers[command.code](request))
        except _Refused as refused:
            return command.encode_error(refused.code)
        except FiscalRefused as refused:
            return command.encode_error(self._fiscal_error(command.code, refused.code))

    def _check_access(self, code: int, request: object) -> None:
        password = getattr(request, "password", None)
        if password is not None:
            admins = {self.admin_password, self.sysadmin_password}
            allowed = (
                {self.sysadmin_password}
                if is_fn_command(code)
                else admins
                if code in _ADMIN_COMMANDS
                else admins | {self.cashier_password}
            )
            if password not in allowed:
                raise _Refused(err.WRONG_PASSWORD)
        if code in _PRINTING_COMMANDS and not self.model.paper_present:
            raise _Refused(err.NO_RECEIPT_PAPER)

    @staticmethod
    def _fiscal_error(code: int, fn_code: int) -> int:
        """A 24-hour refusal has its own KKT code on legacy commands; others pass the ФН code."""
        if fn_code == FN_ERROR_SHIFT_OVER_24H and not is_fn_command(code):
            return err.SHIFT_OVER_24H
        return fn_code

    # ------------------------------------------------------------------ derived status

    def mode(self) -> tuple[int, int]:
        """(mode, mode status): 8 with the receipt type while a receipt is open, else 2/3/4."""
        if self.model.receipt_open:
            return Mode.OPEN_DOCUMENT, self.model.receipt_type
        return _SHIFT_MODES.get(self.model.shift_status(), Mode.SHIFT_CLOSED), 0

    def flags(self) -> int:
        flags = KktFlag.DECIMAL_POINT | KktFlag.RECEIPT_LEVER
        if self.model.paper_present:
            flags |= KktFlag.RECEIPT_ROLL | KktFlag.RECEIPT_OPTICAL
        if self.model.cover_open:
            flags |= KktFlag.COVER_OPEN
        if self.model.drawer_open:
            flags |= KktFlag.DRAWER_OPEN
        return int(flags)

    def submode(self) -> int:
        return Submode.IDLE if self.model.paper_present else Submode.PASSIVE_PAPER_OUT

    # ------------------------------------------------------------------ handlers

    def _short_status(self, _: msg.PasswordRequest) -> msg.ShortStatus:
        mode, status = self.mode()
        return msg.ShortStatus(
            operator=self.model.cashier,
            flags=self.flags(),
            mode=mode,
            mode_status=status,
            submode=self.submode(),
            receipt_operations=0,
            battery_voltage=153,  # 3.0 V at the PHP driver's /51 scale
            supply_voltage=216,  # 24 V at /9
            fp_error=0,
            eklz_error=0,
            last_print_result=0,
        )

    def _full_status(self, _: msg.PasswordRequest) -> msg.FullStatus:
        model = self.model
        mode, status = self.mode()
        serial = _as_int(model.serial)
        shift = model.shift_status()
        fp_flags = (FP_SHIFT_OPEN if model.shift_open else 0) | (
            FP_SHIFT_EXPIRED if shift is ShiftStatus.EXPIRED else 0
        )
        return msg.FullStatus(
            operator=model.cashier,
            firmware_version=model.firmware.replace(".", "")[:2],
            firmware_build=FIRMWARE_BUILD,
            firmware_date=FIRMWARE_DATE,
            hall_number=1,
            document_number=model.last_fd_number & 0xFFFF,
            flags=self.flags(),
            mode=mode,
            mode_status=status,
            submode=self.submode(),
            port=TCP_PORT_CODE if self.tcp else 0,
            fp_firmware_version="",
            fp_firmware_build=0,
            fp_firmware_date=None,
            clock=model.now().replace(microsecond=0),
            fp_flags=fp_flags,
            serial_low=None if serial is None else serial & 0xFFFFFFFF,
            last_closed_shift=model.shift_number - 1 if model.shift_open else model.shift_number,
            free_fp_records=0,
            registrations_done=model.registrations_done,
            registrations_left=model.registrations_left,
            inn=_as_int(model.inn),
            fp_flags_high=0,
            fp_mode=0,
            serial_high=None if serial is None else (serial >> 32) & 0xFFFF,
        )

    def _device_type(self, _: msg.NoParams) -> msg.DeviceType:
        return msg.DeviceType(0, 0, 1, 0, self.model_id, 0, self.model.model_name)

    def _long_serial(self, _: msg.PasswordRequest) -> msg.LongSerial:
        return msg.LongSerial(_as_int(self.model.serial) or 0, _as_int(self.model.rnm) or 0)

    def _find_document(self, request: msg.FindDocumentRequest) -> msg.Message:
        document = self.model.find_document(request.fd_number)
        if document is None:
            raise _Refused(FN_NO_DATA)
        return document

    def _fiscalisation(self, _: msg.PasswordRequest) -> msg.Message:
        result = self.model.fiscalisation()
        if result is None:
            raise _Refused(FN_NO_DATA)
        return result

    def _read_table(self, request: msg.ReadTableRequest) -> msg.TableValue:
        """The ФФД field and the OFD server (table 19) are simulated; other fields are refused."""
        where = (request.table, request.row, request.field)
        if where == _address(msg.FFD_VERSION_FIELD):
            return msg.TableValue(bytes((ffd_version_code(self.model.ffd_version),)))
        if where == _address(msg.OFD_HOST_FIELD):
            return msg.TableValue.of_text(self.model.ofd_host, msg.OFD_HOST_WIDTH)
        if where == _address(msg.OFD_PORT_FIELD):
            return msg.TableValue(self.model.ofd_port.to_bytes(2, "little"))
        raise _Refused(err.WRONG_PARAMETERS)

    def _open_shift(self, _: msg.PasswordRequest) -> msg.OperatorAnswer:
        if self.model.shift_open:
            raise _Refused(err.NOT_IN_THIS_MODE)
        self.model.open_shift()
        return msg.OperatorAnswer(self.model.cashier)

    def _z_report(self, _: msg.PasswordRequest) -> msg.OperatorAnswer:
        self._require_shift(receipt_open=False)
        self.model.close_shift()
        return msg.OperatorAnswer(self.model.cashier)

    def _x_report(self, _: msg.PasswordRequest) -> msg.OperatorAnswer:
        if self.model.receipt_open:
            raise _Refused(err.RECEIPT_OPEN)
        self.model.x_report()
        return msg.OperatorAnswer(self.model.cashier)

    def _require_shift_closed(self) -> None:
        """The clock is set only with the shift closed: in mode 2/3 the command is refused [I: the
        mode error is the register's word for "not with an open shift"; specs §6a]."""
        if self.model.shift_open:
            raise _Refused(err.NOT_IN_THIS_MODE)

    def _set_time(self, request: msg.SetTimeRequest) -> msg.NoAnswerData:
        self._require_shift_closed()
        self.model.set_clock(datetime.combine(self.model.now().date(), request.value))
        return msg.NoAnswerData()

    def _set_date(self, request: msg.SetDateRequest) -> msg.NoAnswerData:
        self._require_shift_closed()
        self._pending_date = request.value
        return msg.NoAnswerData()

    def _confirm_date(self, request: msg.SetDateRequest) -> msg.NoAnswerData:
        self._require_shift_closed()
        if self._pending_date != request.value:
            raise _Refused(err.WRONG_PARAMETERS)  # confirms only the date 22h proposed
        self._pending_date = None
        self.model.set_clock(datetime.combine(request.value, self.model.now().time()))
        return msg.NoAnswerData()

    def _open_receipt(self, request: msg.OpenReceiptRequest) -> msg.OperatorAnswer:
        self._require_shift(receipt_open=False)
        if request.receipt_type > 3:
            raise _Refused(err.WRONG_PARAMETERS)
        self.model.open_receipt(request.receipt_type)
        return msg.OperatorAnswer(self.model.cashier)

    def _sale(self, request: msg.SaleRequest) -> msg.OperatorAnswer:
        self._require_shift(receipt_open=True)
        self.model.add_item(request.quantity * request.price // 1000)
        return msg.OperatorAnswer(self.model.cashier)

    def _close_receipt(self, request: msg.CloseReceiptRequest) -> msg.CloseReceiptAnswer:
        self._require_shift(receipt_open=True)
        paid = request.cash + sum(request.other_payments)
        change = max(0, paid - self.model.receipt_total)
        self.model.close_receipt()
        return msg.CloseReceiptAnswer(self.model.cashier, change)

    def _cancel_receipt(self, _: msg.PasswordRequest) -> msg.OperatorAnswer:
        self._require_shift(receipt_open=True)
        self.model.cancel_receipt()
        return msg.OperatorAnswer(self.model.cashier)

    def _require_shift(self, *, receipt_open: bool) -> None:
        if not self.model.shift_open:
            raise _Refused(err.SHIFT_NOT_OPEN)
        if self.model.receipt_open != receipt_open:
            raise _Refused(err.RECEIPT_OPEN if self.model.receipt_open else err.NOT_IN_THIS_MODE)


def _address(field: msg.ReadTableRequest) -> tuple[int, int, int]:
    return field.table, field.row, field.field


def _as_int(digits: str) -> int | None:
    """Serials, RNM and INN are digit strings in the model and binary integers on the wire."""
    return int(digits) if digits.isdigit() else None


class ShtrihAltLinkDevice(ShtrihDevice):
    """A register set to the alternative link (specs §1.3): ``kassa-sim --protocol shtrih-alt``."""

    def __init__(self, model: RegisterModel, *, tcp: bool = False, model_id: int = 0) -> None:
        super().__init__(model, tcp=tcp, model_id=model_id, link="alt")
