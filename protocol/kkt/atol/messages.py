"""ATOL command layer (same for v2/v3, specs §3.4): requests, answers and one registry for both roles.

Request = ``password (2 BCD) | code (1, or 2 for A4 xx) | params``. Most answers are
``55h | error | …``; 3Fh answers ``44h 'D' | …`` and A5h starts with the error byte itself.
Legacy numbers are BCD big-endian; the A4 xx ФН pass-through keeps the ФН's binary LE layouts
(``protocol.kkt.fn``). A non-zero error byte becomes :class:`~protocol.kkt.errors.DeviceError`.

Sections mirror the command table of specs §3.4: 3Fh device state, 45h state code, A5h device
type, 9Dh firmware version, the A4 xx ФН pass-through, then the mode and fiscal commands and the
remote actions (§6a); the registry and the request envelope close the module.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from protocol.kkt.atol.errors import UNKNOWN_COMMAND, device_error
from protocol.kkt.errors import DecodeError, EncodeError
from protocol.kkt.fn import (
    FFD_VERSION_TAG,
    FnDocument,
    FnExchangeStatus,
    FnShiftParams,
    FnStatus,
    FnTlv,
    FnValidity,
    decode_ascii,
    encode_ascii,
)

ANSWER_OK = 0x55  # 'U'
ANSWER_DEVICE_STATE = 0x44  # 'D'
DEFAULT_PASSWORD = 0
NAME_CODEC = "cp866"  # ATOL's "external" code page is not public; CP866 covers digits/Latin/Cyrillic [I]


# ---------------------------------------------------------------------------------------------
# BCD numbers and the 55h answer check (specs §3.4).


def encode_bcd(value: int, length: int) -> bytes:
    digits = str(value)
    if value < 0 or len(digits) > length * 2:
        raise EncodeError(f"{value} does not fit {length} BCD bytes")
    return bytes.fromhex(digits.rjust(length * 2, "0"))


def decode_bcd(data: bytes) -> int:
    text = data.hex()
    if not text.isdigit():
        raise DecodeError(f"not BCD: {data.hex(' ')}")
    return int(text) if text else 0


def _bcd_datetime(data: bytes) -> datetime | None:
    """YY MM DD hh mm ss in BCD; all zeros (clock not set) decodes to None."""
    if not any(data):
        return None
    yy, mm, dd, hh, mi, ss = (decode_bcd(data[i : i + 1]) for i in range(6))
    try:
        return datetime(2000 + yy, mm, dd, hh, mi, ss)
    except ValueError as exc:
        raise DecodeError(f"invalid register clock {data.hex(' ')}: {exc}") from exc


def _encode_bcd_datetime(value: datetime | None) -> bytes:
    if value is None:
        return bytes(6)
    if not 2000 <= value.year <= 2099:
        raise EncodeError(f"year {value.year} does not fit two BCD digits")
    parts = (value.year - 2000, value.month, value.day, value.hour, value.minute, value.second)
    return b"".join(encode_bcd(part, 1) for part in parts)


def _require(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise DecodeError(f"{what}: need {size} bytes, got {len(data)}")


def _check_ok(command: int, data: bytes, what: str) -> bytes:
    """Strip ``55 err`` and raise the device's error; returns the bytes after the error byte."""
    _require(data, 2, what)
    if data[0] != ANSWER_OK:
        raise DecodeError(f"{what}: answer starts with {data[0]:#04x}, expected 55h")
    if data[1]:
        raise device_error(command, data[1])
    return bytes(data[2:])


# ---------------------------------------------------------------------------------------------
# Commands (specs §3.4), one sub-section per row group of its table.

A = TypeVar("A")


class Command(ABC, Generic[A]):
    """A request type: its code, params codec and answer codec (both directions)."""

    CODE: ClassVar[bytes]

    @property
    def code(self) -> int:
        """The code as one number for messages and errors (A4 30 → 0xA430)."""
        return int.from_bytes(self.CODE, "big")

    def params(self) -> bytes:
        return b""

    @classmethod
    def from_params(cls, params: bytes) -> Command[A]:
        return cls()

    @abstractmethod
    def decode_answer(self, data: bytes) -> A: ...

    @abstractmethod
    def encode_answer(self, answer: A) -> bytes: ...

    def encode_error(self, code: int) -> bytes:
        """The device's answer when the command fails with ATOL error ``code``."""
        return bytes((ANSWER_OK, code, 0))


@dataclass(frozen=True, slots=True)
class CommonAnswer:
    """``55h | error | ext`` with error 0: the answer of commands that only succeed or fail."""

    ext: int = 0


class _SimpleCommand(Command[CommonAnswer]):
    def decode_answer(self, data: bytes) -> CommonAnswer:
        rest = _check_ok(self.code, data, f"answer to {self.CODE.hex()}")
        return CommonAnswer(rest[0] if rest else 0)

    def encode_answer(self, answer: CommonAnswer) -> bytes:
        return bytes((ANSWER_OK, 0, answer.ext))


# ---- 3Fh device state (specs §3.4 "3Fh response layout")


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """3Fh answer ('D' layout, BCD numbers). Flag polarity is atol4j's (bit 3 = paper present)."""

    cashier: int
    number_in_hall: int
    clock: datetime | None
    flags: int
    serial: str  # 8 BCD digits
    model_id: int
    mode: int
    submode: int
    receipt_number: int
    shift_number: int
    receipt_state: int
    receipt_sum: int
    decimal_point: int
    port: int

    SIZE: ClassVar[int] = 30
    FISCALISED: ClassVar[int] = 0x01
    SHIFT_OPEN: ClassVar[int] = 0x02
    DRAWER_OPEN: ClassVar[int] = 0x04
    PAPER_PRESENT: ClassVar[int] = 0x08
    COVER_OPEN: ClassVar[int] = 0x20
    FN_ACTIVE: ClassVar[int] = 0x40
    BATTERY_BAD: ClassVar[int] = 0x80

    @property
    def shift_open(self) -> bool:
        return bool(self.flags & self.SHIFT_OPEN)

    @property
    def paper_present(self) -> bool:
        return bool(self.flags & self.PAPER_PRESENT)

    @property
    def cover_open(self) -> bool:
        return bool(self.flags & self.COVER_OPEN)

    def encode(self) -> bytes:
        return (
            bytes((ANSWER_DEVICE_STATE,))
            + encode_bcd(self.cashier, 1)
            + bytes((self.number_in_hall,))
            + _encode_bcd_datetime(self.clock)
            + bytes((self.flags,))
            + encode_bcd(int(self.serial or "0"), 4)
            + bytes((self.model_id, 0, 0, (self.submode << 4) | (self.mode & 0x0F)))
            + encode_bcd(self.receipt_number, 2)
            + encode_bcd(self.shift_number, 2)
            + bytes((self.receipt_state,))
            + encode_bcd(self.receipt_sum, 5)
            + bytes((self.decimal_point, self.port))
        )

    @classmethod
    def decode(cls, data: bytes) -> DeviceStatus:
        _require(data, cls.SIZE, "3Fh device state")
        return cls(
            cashier=decode_bcd(data[1:2]),
            number_in_hall=data[2],
            clock=_bcd_datetime(data[3:9]),
            flags=data[9],
            serial=data[10:14].hex(),
            model_id=data[14],
            mode=data[17] & 0x0F,
            submode=data[17] >> 4,
            receipt_number=decode_bcd(data[18:20]),
            shift_number=decode_bcd(data[20:22]),
            receipt_state=data[22],
            receipt_sum=decode_bcd(data[23:28]),
            decimal_point=data[28],
            port=data[29],
        )


@dataclass(frozen=True, slots=True)
class GetDeviceStatus(Command[DeviceStatus]):
    CODE = b"\x3f"

    def decode_answer(self, data: bytes) -> DeviceStatus:
        if data[:1] == bytes((ANSWER_OK,)):
            _check_ok(self.code, data, "3Fh device state")
            raise DecodeError("3Fh answered 55h without an error")
        if data[:1] != bytes((ANSWER_DEVICE_STATE,)):
            raise DecodeError(f"3Fh answer starts with {data[:1].hex() or 'nothing'}, expected 44h")
        return DeviceStatus.decode(data)

    def encode_answer(self, answer: DeviceStatus) -> bytes:
        return answer.encode()


# ---- 45h state code


@dataclass(frozen=True, slots=True)
class StateCode:
    """45h: mode/submode and printer flags (bit 0 = no paper)."""

    mode: int
    submode: int
    flags: int

    NO_PAPER: ClassVar[int] = 0x01
    PRINTER_DISCONNECTED: ClassVar[int] = 0x02

    @property
    def paper_present(self) -> bool:
        return not self.flags & self.NO_PAPER


@dataclass(frozen=True, slots=True)
class GetStateCode(Command[StateCode]):
    CODE = b"\x45"

    def decode_answer(self, data: bytes) -> StateCode:
        _require(data, 3, "45h state code")
        if data[0] != ANSWER_OK:
            raise DecodeError(f"45h answer starts with {data[0]:#04x}, expected 55h")
        return StateCode(mode=data[1] & 0x0F, submode=data[1] >> 4, flags=data[2])

    def encode_answer(self, answer: StateCode) -> bytes:
        return bytes((ANSWER_OK, (answer.submode << 4) | (answer.mode & 0x0F), answer.flags))


# ---- A5h device type


@dataclass(frozen=True, slots=True)
class DeviceType:
    protocol_version: int
    device_type: int
    model: int
    mode: int
    device_version: bytes  # 5 bytes as sent
    name: str


@dataclass(frozen=True, slots=True)
class GetDeviceType(Command[DeviceType]):
    CODE = b"\xa5"

    def decode_answer(self, data: bytes) -> DeviceType:
        _require(data, 1, "A5h device type")
        if data[0]:
            raise device_error(self.code, data[0])
        _require(data, 11, "A5h device type")
        return DeviceType(
            protocol_version=data[1],
            device_type=data[2],
            model=data[3],
            mode=int.from_bytes(data[4:6], "big"),
            device_version=bytes(data[6:11]),
            name=data[11:].split(b"\x00", 1)[0].decode(NAME_CODEC, errors="replace").strip(),
        )

    def encode_answer(self, answer: DeviceType) -> bytes:
        if len(answer.device_version) != 5:
            raise EncodeError("device version must be 5 bytes")
        return (
            bytes((0, answer.protocol_version, answer.device_type, answer.model))
            + answer.mode.to_bytes(2, "big")
            + answer.device_version
            + answer.name.encode(NAME_CODEC)
        )

    def encode_error(self, code: int) -> bytes:
        return bytes((code,))  # A5h has no 55h lead byte


# ---- 9Dh firmware version


@dataclass(frozen=True, slots=True)
class FirmwareVersion:
    major: int
    minor: int
    language: int
    build: int
    ext: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


@dataclass(frozen=True, slots=True)
class GetFirmwareVersion(Command[FirmwareVersion]):
    CODE = b"\x9d"
    CPU: ClassVar[int] = 1
    BOOT: ClassVar[int] = 3

    source: int = 1

    def params(self) -> bytes:
        return bytes((self.source,))

    @classmethod
    def from_params(cls, params: bytes) -> GetFirmwareVersion:
        _require(params, 1, "9Dh source")
        return cls(params[0])

    def decode_answer(self, data: bytes) -> FirmwareVersion:
        rest = _check_ok(self.code, data, "9Dh firmware version")
        _require(rest, 6, "9Dh firmware version body")
        return FirmwareVersion(
            ext=rest[0], major=decode_bcd(rest[1:2]), minor=decode_bcd(rest[2:3]), language=rest[3],
            build=decode_bcd(rest[4:6]),
        )  # fmt: skip

    def encode_answer(self, answer: FirmwareVersion) -> bytes:
        return (
            bytes((ANSWER_OK, 0, answer.ext))
            + encode_bcd(answer.major, 1)
            + encode_bcd(answer.minor, 1)
            + bytes((answer.language,))
            + encode_bcd(answer.build, 2)
        )


# ---- A4 xx ФН pass-through: ``55h | err | ФН data``


class _FnQuery(Command[A]):
    def _data(self, data: bytes) -> bytes:
        return _check_ok(self.code, data, f"ФН query {self.CODE.hex(' ')}")

    def _wrap(self, body: bytes) -> bytes:
        return bytes((ANSWER_OK, 0)) + body


@dataclass(frozen=True, slots=True)
class GetFnStatus(_FnQuery[FnStatus]):
    CODE = b"\xa4\x30"

    def decode_answer(self, data: bytes) -> FnStatus:
        return FnStatus.decode(self._data(data))

    def encode_answer(self, answer: FnStatus) -> bytes:
        return self._wrap(answer.encode())


@dataclass(frozen=True, slots=True)
class GetFnNumber(_FnQuery[str]):
    CODE = b"\xa4\x31"

    def decode_answer(self, data: bytes) -> str:
        body = self._data(data)
        _require(body, 16, "ФН number")
        return decode_ascii(body[:16])

    def encode_answer(self, answer: str) -> bytes:
        return self._wrap(encode_ascii(answer, 16))


@dataclass(frozen=True, slots=True)
class GetFnValidity(_FnQuery[FnValidity]):
    CODE = b"\xa4\x32"

    def decode_answer(self, data: bytes) -> FnValidity:
        return FnValidity.decode(self._data(data))  # accepts the 3- and 5-byte forms [C]

    def encode_answer(self, answer: FnValidity) -> bytes:
        return self._wrap(answer.encode())


@dataclass(frozen=True, slots=True)
class GetFnExchangeStatus(_FnQuery[FnExchangeStatus]):
    CODE = b"\xa4\x20"

    def decode_answer(self, data: bytes) -> FnExchangeStatus:
        return FnExchangeStatus.decode(self._data(data))

    def encode_answer(self, answer: FnExchangeStatus) -> bytes:
        return self._wrap(answer.encode())


@dataclass(frozen=True, slots=True)
class GetFnShiftParams(_FnQuery[FnShiftParams]):
    CODE = b"\xa4\x10"

    def decode_answer(self, data: bytes) -> FnShiftParams:
        # The ФН's LE layout; atol4j reads BCD here, LE is the likelier truth [I].
        return FnShiftParams.decode(self._data(data))

    def encode_answer(self, answer: FnShiftParams) -> bytes:
        return self._wrap(answer.encode())


@dataclass(frozen=True, slots=True)
class GetFnDocument(_FnQuery[FnDocument]):
    """A4 40: ФН 40h "find FD by number" through the generic pass-through (FD number, 4 LE).

    Not in atol4j's list, but A4 passes any ФН command through (§3.4); the driver uses it to find
    the shift-open document and its time, which no ATOL status command reports.
    """

    CODE = b"\xa4\x40"
    fd_number: int = 0

    def params(self) -> bytes:
        return struct.pack("<I", self.fd_number)

    @classmethod
    def from_params(cls, params: bytes) -> GetFnDocument:
        _require(params, 4, "A4 40 FD number")
        return cls(int(struct.unpack_from("<I", params)[0]))

    def decode_answer(self, data: bytes) -> FnDocument:
        return FnDocument.decode(self._data(data))

    def encode_answer(self, answer: FnDocument) -> bytes:
        return self._wrap(answer.encode())


@dataclass(frozen=True, slots=True)
class GetFnRegistrationParam(_FnQuery[FnTlv]):
    """A4 44: ФН 44h "registration parameter by tag" (tag, 2 LE) through the pass-through; the
    answer is the TLV. The driver reads tag 1209, the ФФД version (§2.3, §5.1) [I: ФН 44h is [V],
    its use through A4 follows the pass-through rule as A4 40 does]."""

    CODE = b"\xa4\x44"
    tag: int = FFD_VERSION_TAG

    def params(self) -> bytes:
        return struct.pack("<H", self.tag)

    @classmethod
    def from_params(cls, params: bytes) -> GetFnRegistrationParam:
        _require(params, 2, "A4 44 tag")
        return cls(int(struct.unpack_from("<H", params)[0]))

    def decode_answer(self, data: bytes) -> FnTlv:
        return FnTlv.decode(self._data(data))

    def encode_answer(self, answer: FnTlv) -> bytes:
        return self._wrap(answer.encode())


# ---- mode model 56h/48h and fiscal commands 9Ah, 5Ah, 92h, E6h, 4Ah (specs §3.4, §6a)


@dataclass(frozen=True, slots=True)
class EnterMode(_SimpleCommand):
    """56h: mode(1) + mode password (4 BCD)."""

    CODE = b"\x56"
    REGISTRATION: ClassVar[int] = 1
    X_REPORTS: ClassVar[int] = 2
    Z_REPORTS: ClassVar[int] = 3

    mode: int = 1
    password: int = 0

    def params(self) -> bytes:
        return bytes((self.mode,)) + encode_bcd(self.password, 4)

    @classmethod
    def from_params(cls, params: bytes) -> EnterMode:
        _require(params, 5, "56h enter mode")
        return cls(params[0], decode_bcd(params[1:5]))


@dataclass(frozen=True, slots=True)
class LeaveMode(_SimpleCommand):
    CODE = b"\x48"


@dataclass(frozen=True, slots=True)
class OpenShift(_SimpleCommand):
    """9Ah: flags(1), bit 0 = test run."""

    CODE = b"\x9a"
    test: bool = False

    def params(self) -> bytes:
        return bytes((int(self.test),))

    @classmethod
    def from_params(cls, params: bytes) -> OpenShift:
        return cls(bool(params[:1] and params[0] & 1))


@dataclass(frozen=True, slots=True)
class CloseShift(_SimpleCommand):
    """5Ah: Z-report, which closes the shift (mode 3)."""

    CODE = b"\x5a"


@dataclass(frozen=True, slots=True)
class OpenReceipt(_SimpleCommand):
    """92h: flags(1) + type(1): 1 sale, 2 sale return, 4 purchase, 5 purchase return, 7/9 correction."""

    CODE = b"\x92"
    receipt_type: int = 1
    flags: int = 0

    def params(self) -> bytes:
        return bytes((self.flags, self.receipt_type))

    @classmethod
    def from_params(cls, params: bytes) -> OpenReceipt:
        _require(params, 2, "92h open receipt")
        return cls(receipt_type=params[1], flags=params[0])


@dataclass(frozen=True, slots=True)
class RegisterItem(_SimpleCommand):
    """E6h: flags(1), name(64), price(6 BCD, kopecks), quantity(5 BCD, thousandths), then discount,
    tax and section fields (atol4j sends 103 parameter bytes); the tail is sent as zeros and ignored."""

    CODE = b"\xe6"
    NAME_SIZE: ClassVar[int] = 64
    PARAMS_SIZE: ClassVar[int] = 103

    name: str = ""
    price: int = 0
    quantity: int = 1000
    flags: int = 0

    def params(self) -> bytes:
        raw = self.name.encode(NAME_CODEC)
        if len(raw) > self.NAME_SIZE:
            raise EncodeError(f"item name longer than {self.NAME_SIZE} bytes")
        head = bytes((self.flags,)) + raw.ljust(self.NAME_SIZE, b"\x00")
        return (head + encode_bcd(self.price, 6) + encode_bcd(self.quantity, 5)).ljust(
            self.PARAMS_SIZE, b"\x00"
        )

    @classmethod
    def from_params(cls, params: bytes) -> RegisterItem:
        _require(params, 76, "E6h register item")
        name = params[1:65].split(b"\x00", 1)[0].decode(NAME_CODEC, errors="replace")
        return cls(
            name=name, price=decode_bcd(params[65:71]), quantity=decode_bcd(params[71:76]), flags=params[0]
        )

    @property
    def amount(self) -> int:
        """Kopecks for this line (quantity has three decimals)."""
        return self.price * self.quantity // 1000


@dataclass(frozen=True, slots=True)
class CloseReceipt(_SimpleCommand):
    """4Ah: flags(1, bit 0 test), payment type(1), sum paid(5 BCD, kopecks)."""

    CODE = b"\x4a"
    payment_type: int = 1
    paid: int = 0
    flags: int = 0

    def params(self) -> bytes:
        return bytes((self.flags, self.payment_type)) + encode_bcd(self.paid, 5)

    @classmethod
    def from_params(cls, params: bytes) -> CloseReceipt:
        _require(params, 7, "4Ah close receipt")
        return cls(payment_type=params[1], paid=decode_bcd(params[2:7]), flags=params[0])


# ---- remote actions 67h, EDh, CE 41h (specs §6a; layouts from atol4j PrintReportCommand,
# SetDateTimeCommand and RebootCommand)


@dataclass(frozen=True, slots=True)
class PrintReport(_SimpleCommand):
    """67h: report without clearing (mode 2); type 1 = the daily X-report."""

    CODE = b"\x67"
    DAILY: ClassVar[int] = 1

    report_type: int = 1

    def params(self) -> bytes:
        return bytes((self.report_type,))

    @classmethod
    def from_params(cls, params: bytes) -> PrintReport:
        _require(params, 1, "67h report type")
        return cls(params[0])


@dataclass(frozen=True, slots=True)
class SetDateTime(_SimpleCommand):
    """EDh: DD MM YY hh mm ss, one BCD byte each; the register takes it only with the shift closed."""

    CODE = b"\xed"
    value: datetime = datetime(2000, 1, 1)

    def params(self) -> bytes:
        v = self.value
        if not 2000 <= v.year <= 2099:
            raise EncodeError(f"year {v.year} does not fit two BCD digits")
        return b"".join(encode_bcd(part, 1) for part in (v.day, v.month, v.year - 2000, v.hour, v.minute, v.second))

    @classmethod
    def from_params(cls, params: bytes) -> SetDateTime:
        _require(params, 6, "EDh date and time")
        day, month, year, hour, minute, second = (decode_bcd(params[i : i + 1]) for i in range(6))
        try:
            return cls(datetime(2000 + year, month, day, hour, minute, second))
        except ValueError as exc:
            raise DecodeError(f"EDh: {params[:6].hex(' ')} is not a date and time: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Reboot(_SimpleCommand):
    """CE 41h: restart the register; it answers, then drops off the line while it boots."""

    CODE = b"\xce\x41"


# ---- 46h device setting: the OFD server (specs §6a)
#
# The setting NUMBERS are the vendor driver's (ДТО10 readDeviceSetting / LIBFPTR_PARAM_SETTING_ID:
# 273 OFD address, 274 OFD port, 275 DNS), seen read and written the same way in many public
# integrations [V2]. How the register carries them on the protocol-3 wire is NOT in any public
# source we could read (the ATOL "Протокол ККТ 3.1" PDF is not readable; atol4j has no table
# command): the layout below — 46h, the setting number 2 bytes big-endian, the answer
# ``55h | err | value`` with text in the register's code page and numbers big-endian — is the
# best-supported guess [I]. A register that refuses it leaves the OFD server unknown.

OFD_ADDRESS_SETTING = 273
OFD_PORT_SETTING = 274


@dataclass(frozen=True, slots=True)
class SettingValue:
    """A setting's raw bytes; read as text (a host name) or as a number (a port)."""

    raw: bytes

    @property
    def text(self) -> str:
        return self.raw.split(b"\x00", 1)[0].decode(NAME_CODEC, errors="replace").strip()

    @property
    def number(self) -> int:
        return int.from_bytes(self.raw, "big")

    @classmethod
    def of_text(cls, value: str) -> SettingValue:
        return cls(value.encode(NAME_CODEC))

    @classmethod
    def of_number(cls, value: int, size: int = 2) -> SettingValue:
        if not 0 <= value < 1 << (8 * size):
            raise EncodeError(f"{value} does not fit {size} bytes")
        return cls(value.to_bytes(size, "big"))


@dataclass(frozen=True, slots=True)
class ReadDeviceSetting(Command[SettingValue]):
    """46h setting number (2, big-endian) → ``55h | err | value`` (layout unconfirmed, see above)."""

    CODE = b"\x46"
    setting: int = OFD_ADDRESS_SETTING

    def params(self) -> bytes:
        if not 0 <= self.setting <= 0xFFFF:
            raise EncodeError(f"setting number {self.setting} does not fit 2 bytes")
        return self.setting.to_bytes(2, "big")

    @classmethod
    def from_params(cls, params: bytes) -> ReadDeviceSetting:
        _require(params, 2, "46h setting number")
        return cls(int.from_bytes(params[:2], "big"))

    def decode_answer(self, data: bytes) -> SettingValue:
        return SettingValue(_check_ok(self.code, data, f"46h setting {self.setting}"))

    def encode_answer(self, answer: SettingValue) -> bytes:
        return bytes((ANSWER_OK, 0)) + answer.raw


# ---------------------------------------------------------------------------------------------
# Registry and request envelope (password | code | params).

COMMANDS: dict[bytes, type[Command[Any]]] = {
    cls.CODE: cls
    for cls in (
        GetDeviceStatus, GetStateCode, GetDeviceType, GetFirmwareVersion, GetFnStatus, GetFnNumber,
        GetFnValidity, GetFnExchangeStatus, GetFnShiftParams, GetFnDocument, GetFnRegistrationParam, ReadDeviceSetting, EnterMode, LeaveMode, OpenShift, CloseShift,
        OpenReceipt, RegisterItem, CloseReceipt, PrintReport, SetDateTime, Reboot,
    )
}  # fmt: skip

_TWO_BYTE_PREFIXES = frozenset(code[0] for code in COMMANDS if len(code) == 2)


class UnknownCommand(DecodeError):
    """The request's code is not in the registry; the device answers error :data:`UNKNOWN_COMMAND`."""

    def __init__(self, code: bytes) -> None:
        self.code = code
        super().__init__(f"unknown ATOL command {code.hex(' ')}")

    def error_answer(self) -> bytes:
        return bytes((ANSWER_OK, UNKNOWN_COMMAND, 0))


def encode_request(command: Command[Any], password: int = DEFAULT_PASSWORD) -> bytes:
    return encode_bcd(password, 2) + command.CODE + command.params()


def decode_request(data: bytes) -> tuple[int, Command[Any]]:
    """``(password, command)`` from a task's command bytes (device role)."""
    _require(data, 3, "ATOL request")
    password = decode_bcd(data[:2])
    width = 2 if data[2] in _TWO_BYTE_PREFIXES else 1
    code = bytes(data[2 : 2 + width])
    cls = COMMANDS.get(code)
    if cls is None:
        raise UnknownCommand(code)
    return password, cls.from_params(bytes(data[2 + width :]))
