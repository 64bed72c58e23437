"""Typed Shtrih-M requests and answers, one registry serving both roles (specs §1.4).

A request payload is ``CMD | PARAMS``; an answer payload is ``CMD | ERR | DATA`` and, when
ERR ≠ 0, only ``CMD | ERR``. Each :class:`Command` pairs a code with its request and answer
types: the host encodes requests and decodes answers, the simulated device decodes requests
and encodes answers, through the same code. ФН (FFxx) answers reuse ``protocol.kkt.fn``.

Answers are decoded tolerantly: trailing bytes newer firmware appends are ignored.

Sections follow the command groups of specs §1.4: status (10h/11h), identity (0Fh/1Fh/FCh),
FN commands (FFxx), changing state and the remote actions (40h X-report, 21h/22h/23h clock,
specs §6a), after the primitive fields and what they all share; the registry closes the module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Generic, Protocol, Self, TypeVar

from protocol.kkt.errors import DecodeError, DeviceError, EncodeError
from protocol.kkt.fn import (
    FnDocument,
    FnExchangeStatus,
    FnFirmware,
    FnResource,
    FnShiftParams,
    FnStatus,
    FnValidity,
    decode_ascii,
    decode_unconfirmed_count,
    encode_ascii,
    encode_unconfirmed_count,
)
from protocol.kkt.fn_fiscalisation import FnFiscalisation
from protocol.kkt.shtrih.errors import device_error, error_meaning
from protocol.kkt.shtrih.status import join_mode, split_mode

CASHIER_PASSWORD = 1
ADMIN_PASSWORD = 29
SYSADMIN_PASSWORD = 30
TEXT_LENGTH = 40  # print strings are 40 bytes, zero-padded, cp1251
TEXT_ENCODING = "cp1251"


# ---------------------------------------------------------------------------------------------
# Primitive fields.


def _uint(value: int, size: int, what: str) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise EncodeError(f"{what} = {value} does not fit {size} unsigned bytes")
    return value.to_bytes(size, "little")


def _encode_text(value: str) -> bytes:
    try:
        raw = value.encode(TEXT_ENCODING)
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{value!r} is not representable in {TEXT_ENCODING}") from exc
    if len(raw) > TEXT_LENGTH or b"\x00" in raw:
        raise EncodeError(f"print text must be ≤ {TEXT_LENGTH} bytes without NUL: {value!r}")
    return raw.ljust(TEXT_LENGTH, b"\x00")


def _decode_text(data: bytes) -> str:
    return data.split(b"\x00", 1)[0].decode(TEXT_ENCODING, errors="replace")


def _encode_dmy(value: date | None) -> bytes:
    if value is None:
        return bytes(3)
    if not 2000 <= value.year <= 2099:
        raise EncodeError(f"year {value.year} does not fit the two-digit KKT date")
    return bytes((value.day, value.month, value.year - 2000))


def _decode_dmy(data: bytes) -> date | None:
    """DD MM YY. A date the register cannot represent (cleared clock) is unknown, not fatal."""
    day, month, year = data
    try:
        return date(2000 + year, month, day)
    except ValueError:
        return None


class _Reader:
    """Sequential little-endian reader raising DecodeError instead of IndexError."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, size: int) -> bytes:
        if self.remaining < size:
            raise DecodeError(f"{self._what}: needs {self._pos + size} bytes, got {len(self._data)}")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def rest(self) -> bytes:
        return self.take(self.remaining)


class Message(Protocol):
    def encode(self) -> bytes: ...

    @classmethod
    def decode(cls, data: bytes) -> Self: ...


# ---------------------------------------------------------------------------------------------
# What every chapter shares: the password-only request and the error-only answer.


@dataclass(frozen=True, slots=True)
class PasswordRequest:
    password: int = SYSADMIN_PASSWORD

    def encode(self) -> bytes:
        return _uint(self.password, 4, "password")

    @classmethod
    def decode(cls, data: bytes) -> PasswordRequest:
        return cls(_Reader(data, "password request").uint(4))


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """ERR ≠ 0: the device sent only the command code and the error byte."""

    command: int
    code: int

    @property
    def meaning(self) -> str:
        return error_meaning(self.command, self.code)

    @property
    def error(self) -> DeviceError:
        return device_error(self.command, self.code)


# ---------------------------------------------------------------------------------------------
# 10h short status and 11h full status (specs §1.4).


@dataclass(frozen=True, slots=True)
class ShortStatus:
    """10h. Bytes 12..14 are reserved per the spec [C: the PHP driver reads temperature and the
    previous mode there]; they are skipped. The last print result (byte 15) is optional."""

    operator: int
    flags: int
    mode: int
    mode_status: int
    submode: int
    receipt_operations: int
    battery_voltage: int
    supply_voltage: int
    fp_error: int
    eklz_error: int
    last_print_result: int | None = None

    @classmethod
    def decode(cls, data: bytes) -> ShortStatus:
        reader = _Reader(data, "short status")
        operator, flags, (mode, mode_status), submode = (
            reader.uint(1),
            reader.uint(2),
            split_mode(reader.uint(1)),
            reader.uint(1),
        )
        ops_low, battery, supply, fp_error, eklz_error, ops_high = (reader.uint(1) for _ in range(6))
        reader.take(3)
        return cls(
            operator=operator,
            flags=flags,
            mode=mode,
            mode_status=mode_status,
            submode=submode,
            receipt_operations=ops_high << 8 | ops_low,
            battery_voltage=battery,
            supply_voltage=supply,
            fp_error=fp_error,
            eklz_error=eklz_error,
            last_print_result=reader.uint(1) if reader.remaining else None,
        )

    def encode(self) -> bytes:
        ops = _uint(self.receipt_operations, 2, "receipt operations")
        body = (
            _uint(self.operator, 1, "operator")
            + _uint(self.flags, 2, "flags")
            + bytes((join_mode(self.mode, self.mode_status), _uint(self.submode, 1, "submode")[0], ops[0]))
            + _uint(self.battery_voltage, 1, "battery voltage")
            + _uint(self.supply_voltage, 1, "supply voltage")
            + _uint(self.fp_error, 1, "FP error")
            + _uint(self.eklz_error, 1, "EKLZ error")
            + ops[1:]
            + bytes(3)
        )
        if self.last_print_result is not None:
            body += _uint(self.last_print_result, 1, "print result")
        return body


_INN_UNSET = (1 << 48) - 1
_SERIAL_LOW_UNSET = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FullStatus:
    """11h. ``firmware_version`` is the raw 2-character code ("10" means 1.0).

    INN is 48-bit binary little-endian [C: pyshtrih reads it big-endian; the PHP driver and the
    spec's general LE rule say LE, which is what is used here]. ``FF…FF`` INN or serial = None.
    """

    operator: int
    firmware_version: str
    firmware_build: int
    firmware_date: date | None
    hall_number: int
    document_number: int
    flags: int
    mode: int
    mode_status: int
    submode: int
    port: int
    fp_firmware_version: str
    fp_firmware_build: int
    fp_firmware_date: date | None
    clock: datetime | None
    fp_flags: int
    serial_low: int | None
    last_closed_shift: int
    free_fp_records: int
    registrations_done: int
    registrations_left: int
    inn: int | None
    fp_flags_high: int | None = None
    fp_mode: int | None = None
    serial_high: int | None = None

    @property
    def firmware(self) -> str:
        """Dotted version: "10" → "1.0"."""
        return ".".join(self.firmware_version) if len(self.firmware_version) == 2 else self.firmware_version

    @property
    def serial(self) -> int | None:
        if self.serial_low is None:
            return None
        return (self.serial_high or 0) << 32 | self.serial_low

    @classmethod
    def decode(cls, data: bytes) -> FullStatus:
        r = _Reader(data, "full status")
        operator, version, build = r.uint(1), _decode_version(r.take(2)), r.uint(2)
        firmware_date, hall, document, flags = _decode_dmy(r.take(3)), r.uint(1), r.uint(2), r.uint(2)
        (mode, mode_status), submode, port = split_mode(r.uint(1)), r.uint(1), r.uint(1)
        fp_version, fp_build, fp_date = _decode_version(r.take(2)), r.uint(2), _decode_dmy(r.take(3))
        clock = _combine_clock(_decode_dmy(r.take(3)), r.take(3))
        fp_flags, serial_low, last_closed, free_records = r.uint(1), r.uint(4), r.uint(2), r.uint(2)
        done, left, inn = r.uint(1), r.uint(1), r.uint(6)
        fp_flags_high = r.uint(1) if r.remaining >= 1 else None
        fp_mode = r.uint(1) if r.remaining >= 1 else None
        serial_high = r.uint(2) if r.remaining >= 2 else None
        return cls(
            operator=operator,
            firmware_version=version,
            firmware_build=build,
            firmware_date=firmware_date,
            hall_number=hall,
            document_number=document,
            flags=flags,
            mode=mode,
            mode_status=mode_status,
            submode=submode,
            port=port,
            fp_firmware_version=fp_version,
            fp_firmware_build=fp_build,
            fp_firmware_date=fp_date,
            clock=clock,
            fp_flags=fp_flags,
            serial_low=None if serial_low == _SERIAL_LOW_UNSET else serial_low,
            last_closed_shift=last_closed,
            free_fp_records=free_records,
            registrations_done=done,
            registrations_left=left,
            inn=None if inn == _INN_UNSET else inn,
            fp_flags_high=fp_flags_high,
            fp_mode=fp_mode,
            serial_high=serial_high,
        )

    def encode(self) -> bytes:
        clock_date = self.clock.date() if self.clock else None
        clock_time = (
            bytes((self.clock.hour, self.clock.minute, self.clock.second)) if self.clock else bytes(3)
        )
        body = (
            _uint(self.operator, 1, "operator")
            + _encode_version(self.firmware_version)
            + _uint(self.firmware_build, 2, "firmware build")
            + _encode_dmy(self.firmware_date)
            + _uint(self.hall_number, 1, "hall number")
            + _uint(self.document_number, 2, "document number")
            + _uint(self.flags, 2, "flags")
            + bytes((join_mode(self.mode, self.mode_status),))
            + _uint(self.submode, 1, "submode")
            + _uint(self.port, 1, "port")
            + _encode_version(self.fp_firmware_version)
            + _uint(self.fp_firmware_build, 2, "FP build")
            + _encode_dmy(self.fp_firmware_date)
            + _encode_dmy(clock_date)
            + clock_time
            + _uint(self.fp_flags, 1, "FP flags")
            + _uint(_SERIAL_LOW_UNSET if self.serial_low is None else self.serial_low, 4, "serial (low)")
            + _uint(self.last_closed_shift, 2, "last closed shift")
            + _uint(self.free_fp_records, 2, "free FP records")
            + _uint(self.registrations_done, 1, "registrations done")
            + _uint(self.registrations_left, 1, "registrations left")
            + _uint(_INN_UNSET if self.inn is None else self.inn, 6, "INN")
        )
        # The optional tail is positional: a later field can only be sent with the earlier ones.
        tail = (self.fp_flags_high, self.fp_mode)
        for value, what in zip(tail, ("FP flags (high)", "FP mode"), strict=True):
            if value is None:
                return body
            body += _uint(value, 1, what)
        if self.serial_high is not None:
            body += _uint(self.serial_high, 2, "serial (high)")
        return body


def _decode_version(data: bytes) -> str:
    return data.decode("ascii", errors="replace").strip("\x00 ")


def _encode_version(value: str) -> bytes:
    raw = value.encode("ascii", errors="replace")
    if len(raw) > 2:
        raise EncodeError(f"firmware version code {value!r} is longer than 2 characters")
    return raw.ljust(2, b"\x00")


def _combine_clock(day: date | None, hms: bytes) -> datetime | None:
    hour, minute, second = hms
    if day is None:
        return None
    try:
        return datetime.combine(day, time(hour, minute, second))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# 0Fh long serial and RNM, 1Fh read table, FCh device type: the register's identity (specs §1.4).


@dataclass(frozen=True, slots=True)
class LongSerial:
    """0Fh: factory serial and RNM, 7 bytes LE each."""

    serial: int
    rnm: int

    def encode(self) -> bytes:
        return _uint(self.serial, 7, "serial") + _uint(self.rnm, 7, "RNM")

    @classmethod
    def decode(cls, data: bytes) -> LongSerial:
        reader = _Reader(data, "long serial")
        return cls(reader.uint(7), reader.uint(7))


@dataclass(frozen=True, slots=True)
class ReadTableRequest:
    """1Fh: read one field of a settings table (specs §1.4): table(1), row(2 LE), field(1)."""

    table: int
    row: int
    field: int
    password: int = SYSADMIN_PASSWORD

    def encode(self) -> bytes:
        return (
            _uint(self.password, 4, "password")
            + _uint(self.table, 1, "table")
            + _uint(self.row, 2, "row")
            + _uint(self.field, 1, "field")
        )

    @classmethod
    def decode(cls, data: bytes) -> ReadTableRequest:
        reader = _Reader(data, "read table request")
        password = reader.uint(4)
        return cls(table=reader.uint(1), row=reader.uint(2), field=reader.uint(1), password=password)


@dataclass(frozen=True, slots=True)
class TableValue:
    """1Fh answer: the field's raw bytes, an LE integer or a zero-padded cp1251 string."""

    value: bytes

    def encode(self) -> bytes:
        return self.value

    @classmethod
    def decode(cls, data: bytes) -> TableValue:
        if not data:
            raise DecodeError("read table: the answer carries no value")
        return cls(bytes(data))

    def as_int(self) -> int:
        return int.from_bytes(self.value, "little")

    def as_text(self) -> str:
        """A string field: cp1251, zero-padded to the field's width."""
        return _decode_text(self.value).strip()

    @classmethod
    def of_text(cls, value: str, width: int) -> TableValue:
        raw = value.encode(TEXT_ENCODING)
        if len(raw) > width:
            raise EncodeError(f"{value!r} is longer than the {width}-byte table field")
        return cls(raw.ljust(width, b"\x00"))


@dataclass(frozen=True, slots=True)
class NoParams:
    """FCh takes no password."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, data: bytes) -> NoParams:
        return cls()


@dataclass(frozen=True, slots=True)
class DeviceType:
    """FCh: type, subtype, protocol version, model id, language and the cp1251 model name."""

    device_type: int
    subtype: int
    protocol_version: int
    protocol_subversion: int
    model_id: int
    language: int
    name: str

    def encode(self) -> bytes:
        fields = (self.device_type, self.subtype, self.protocol_version, self.protocol_subversion)
        head = bytes(_uint(v, 1, "device type field")[0] for v in (*fields, self.model_id, self.language))
        try:
            return head + self.name.encode(TEXT_ENCODING)
        except UnicodeEncodeError as exc:
            raise EncodeError(f"model name {self.name!r} is not representable in cp1251") from exc

    @classmethod
    def decode(cls, data: bytes) -> DeviceType:
        reader = _Reader(data, "device type")
        device_type, subtype, version, subversion, model_id, language = reader.take(6)
        name = _decode_text(reader.rest()).strip()
        return cls(device_type, subtype, version, subversion, model_id, language, name)


# ---------------------------------------------------------------------------------------------
# FN commands FFxx (specs §1.4): thin wrappers whose answers are mostly the ФН layouts of
# protocol.kkt.fn (specs §2.3); only what differs is here.


@dataclass(frozen=True, slots=True)
class FindDocumentRequest:
    """FF0A: find a fiscal document by its number."""

    fd_number: int
    password: int = SYSADMIN_PASSWORD

    def encode(self) -> bytes:
        return _uint(self.password, 4, "password") + _uint(self.fd_number, 4, "FD number")

    @classmethod
    def decode(cls, data: bytes) -> FindDocumentRequest:
        reader = _Reader(data, "find FD request")
        password = reader.uint(4)
        return cls(fd_number=reader.uint(4), password=password)


@dataclass(frozen=True, slots=True)
class FnNumber:
    """FF02: the ФН serial, 16 ASCII."""

    serial: str

    def encode(self) -> bytes:
        return encode_ascii(self.serial, 16)

    @classmethod
    def decode(cls, data: bytes) -> FnNumber:
        return cls(decode_ascii(_Reader(data, "ФН number").take(16)))


@dataclass(frozen=True, slots=True)
class UnconfirmedCount:
    """FF3F: FDs without an OFD ticket; sent as 2 bytes, read as 2 or 4 [C]."""

    count: int

    def encode(self) -> bytes:
        return encode_unconfirmed_count(self.count)

    @classmethod
    def decode(cls, data: bytes) -> UnconfirmedCount:
        return cls(decode_unconfirmed_count(data))


# ---------------------------------------------------------------------------------------------
# Changing state: shift and receipt commands E0h, 41h, 8Dh, 80h, 85h, 88h (specs §1.4
# "Changing state", §6a).


@dataclass(frozen=True, slots=True)
class OperatorAnswer:
    """E0h/40h/41h/8Dh/80h/88h: the operator number; some firmware sends ERR alone."""

    operator: int | None = None

    def encode(self) -> bytes:
        return b"" if self.operator is None else _uint(self.operator, 1, "operator")

    @classmethod
    def decode(cls, data: bytes) -> OperatorAnswer:
        return cls(data[0] if data else None)


@dataclass(frozen=True, slots=True)
class OpenReceiptRequest:
    """8Dh: receipt type 0 sale, 1 purchase, 2 sale return, 3 purchase return."""

    receipt_type: int = 0
    password: int = CASHIER_PASSWORD

    def encode(self) -> bytes:
        return _uint(self.password, 4, "password") + _uint(self.receipt_type, 1, "receipt type")

    @classmethod
    def decode(cls, data: bytes) -> OpenReceiptRequest:
        reader = _Reader(data, "open receipt request")
        password = reader.uint(4)
        return cls(receipt_type=reader.uint(1), password=password)


@dataclass(frozen=True, slots=True)
class SaleRequest:
    """80h legacy sale line: quantity in thousandths, price in kopecks."""

    quantity: int
    price: int
    department: int = 0
    taxes: tuple[int, int, int, int] = (0, 0, 0, 0)
    text: str = ""
    password: int = CASHIER_PASSWORD

    def encode(self) -> bytes:
        return (
            _uint(self.password, 4, "password")
            + _uint(self.quantity, 5, "quantity")
            + _uint(self.price, 5, "price")
            + _uint(self.department, 1, "department")
            + b"".join(_uint(tax, 1, "tax group") for tax in self.taxes)
            + _encode_text(self.text)
        )

    @classmethod
    def decode(cls, data: bytes) -> SaleRequest:
        reader = _Reader(data, "sale request")
        password = reader.uint(4)
        quantity, price, department = reader.uint(5), reader.uint(5), reader.uint(1)
        taxes = (reader.uint(1), reader.uint(1), reader.uint(1), reader.uint(1))
        return cls(quantity, price, department, taxes, _decode_text(reader.take(TEXT_LENGTH)), password)


@dataclass(frozen=True, slots=True)
class CloseReceiptRequest:
    """85h legacy close: cash and three other payment sums, discount in hundredths of a percent."""

    cash: int
    other_payments: tuple[int, int, int] = (0, 0, 0)
    discount: int = 0  # signed, ±9999 = ±99.99 %
    taxes: tuple[int, int, int, int] = (0, 0, 0, 0)
    text: str = ""
    password: int = CASHIER_PASSWORD

    def encode(self) -> bytes:
        if not -9999 <= self.discount <= 9999:
            raise EncodeError(f"discount {self.discount} is outside ±9999")
        return (
            _uint(self.password, 4, "password")
            + _uint(self.cash, 5, "cash")
            + b"".join(_uint(sum_, 5, "payment") for sum_ in self.other_payments)
            + struct.pack("<h", self.discount)
            + b"".join(_uint(tax, 1, "tax group") for tax in self.taxes)
            + _encode_text(self.text)
        )

    @classmethod
    def decode(cls, data: bytes) -> CloseReceiptRequest:
        reader = _Reader(data, "close receipt request")
        password, cash = reader.uint(4), reader.uint(5)
        payments = (reader.uint(5), reader.uint(5), reader.uint(5))
        (discount,) = struct.unpack("<h", reader.take(2))
        taxes = (reader.uint(1), reader.uint(1), reader.uint(1), reader.uint(1))
        return cls(cash, payments, discount, taxes, _decode_text(reader.take(TEXT_LENGTH)), password)


@dataclass(frozen=True, slots=True)
class CloseReceiptAnswer:
    operator: int
    change: int

    def encode(self) -> bytes:
        return _uint(self.operator, 1, "operator") + _uint(self.change, 5, "change")

    @classmethod
    def decode(cls, data: bytes) -> CloseReceiptAnswer:
        reader = _Reader(data, "close receipt answer")
        return cls(reader.uint(1), reader.uint(5))


# ---------------------------------------------------------------------------------------------
# Remote actions: 40h X-report and the clock, 21h set time, 22h set date, 23h confirm date
# (specs §6a). 22h only proposes a date; the register applies it when 23h repeats it.


@dataclass(frozen=True, slots=True)
class SetTimeRequest:
    """21h: password(4) + hh mm ss, binary (the KKT time layout of 11h)."""

    value: time
    password: int = SYSADMIN_PASSWORD

    def encode(self) -> bytes:
        return _uint(self.password, 4, "password") + bytes((self.value.hour, self.value.minute, self.value.second))

    @classmethod
    def decode(cls, data: bytes) -> SetTimeRequest:
        reader = _Reader(data, "set time request")
        password = reader.uint(4)
        hour, minute, second = reader.take(3)
        try:
            return cls(time(hour, minute, second), password)
        except ValueError as exc:
            raise DecodeError(f"set time: {hour:02}:{minute:02}:{second:02} is not a time") from exc


@dataclass(frozen=True, slots=True)
class SetDateRequest:
    """22h (set) and 23h (confirm): password(4) + DD MM YY, binary."""

    value: date
    password: int = SYSADMIN_PASSWORD

    def encode(self) -> bytes:
        return _uint(self.password, 4, "password") + _encode_dmy(self.value)

    @classmethod
    def decode(cls, data: bytes) -> SetDateRequest:
        reader = _Reader(data, "set date request")
        password = reader.uint(4)
        raw = reader.take(3)
        value = _decode_dmy(raw)
        if value is None:
            raise DecodeError(f"set date: {raw.hex(' ')} is not a DD MM YY date")
        return cls(value, password)


@dataclass(frozen=True, slots=True)
class NoAnswerData:
    """21h/22h/23h: the answer is the error byte alone."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, data: bytes) -> NoAnswerData:
        return cls()


# ---------------------------------------------------------------------------------------------
# The registry: one Command per code, grouped as the sections above.


Req = TypeVar("Req", bound=Message)
Ans = TypeVar("Ans", bound=Message)


def code_bytes(code: int) -> bytes:
    """1-byte code, or 2 bytes big-endian for the FFxx/FExx families."""
    return code.to_bytes(2 if code > 0xFF else 1, "big")


def command_code(payload: bytes) -> int:
    """The command code at the start of a request or answer payload."""
    if not payload:
        raise DecodeError("empty payload has no command code")
    if payload[0] in (0xFE, 0xFF):
        if len(payload) < 2:
            raise DecodeError(f"two-byte command {payload[0]:02X}xx is cut short")
        return payload[0] << 8 | payload[1]
    return payload[0]


@dataclass(frozen=True, slots=True)
class Command(Generic[Req, Ans]):
    code: int
    name: str
    request: type[Req]
    answer: type[Ans]

    def encode_request(self, request: Req) -> bytes:
        return code_bytes(self.code) + request.encode()

    def decode_request(self, payload: bytes) -> Req:
        return self.request.decode(self._strip_code(payload))

    def encode_answer(self, answer: Ans) -> bytes:
        return code_bytes(self.code) + b"\x00" + answer.encode()

    def encode_error(self, error: int) -> bytes:
        if not 1 <= error <= 0xFF:
            raise EncodeError(f"error code {error} must be 1..255")
        return code_bytes(self.code) + bytes((error,))

    def decode_answer(self, payload: bytes) -> Ans | ErrorAnswer:
        body = self._strip_code(payload)
        if not body:
            raise DecodeError(f"answer to {self.code:#04x} has no error byte")
        if body[0]:
            return ErrorAnswer(self.code, body[0])
        return self.answer.decode(body[1:])

    def _strip_code(self, payload: bytes) -> bytes:
        code = command_code(payload)
        if code != self.code:
            raise DecodeError(f"expected command {self.code:#04x}, got {code:#04x}")
        return payload[len(code_bytes(code)) :]


# Status.
SHORT_STATUS = Command(0x10, "short status", PasswordRequest, ShortStatus)
FULL_STATUS = Command(0x11, "full status", PasswordRequest, FullStatus)

# Identity.
DEVICE_TYPE = Command(0xFC, "device type", NoParams, DeviceType)
LONG_SERIAL = Command(0x0F, "long serial and RNM", PasswordRequest, LongSerial)
READ_TABLE = Command(0x1F, "read table", ReadTableRequest, TableValue)
# Where desktop models keep the ФФД version (tag-1209 code), as Shtrih's own Java driver writes it
# when fiscalising: table 17, row 1, field 17 (Shtrih-Mobile: table 10, field 4) [V].
FFD_VERSION_FIELD = ReadTableRequest(table=17, row=1, field=17)
# The OFD server the register sends to: table 19 ("Параметры ОФД"), row 1, field 1 host (string),
# field 2 TCP port (specs §6a, [V] the vendor's Java driver readFDOParameters; Shtrih-Mobile: table 15).
OFD_HOST_FIELD = ReadTableRequest(table=19, row=1, field=1)
OFD_PORT_FIELD = ReadTableRequest(table=19, row=1, field=2)
OFD_HOST_WIDTH = 64  # the field's width on desktop models [I]: the simulator pads to it

# FN commands.
FN_STATUS = Command(0xFF01, "ФН status", PasswordRequest, FnStatus)
FN_NUMBER = Command(0xFF02, "ФН number", PasswordRequest, FnNumber)
FN_VALIDITY = Command(0xFF03, "ФН validity", PasswordRequest, FnValidity)
FN_FIRMWARE = Command(0xFF04, "ФН firmware", PasswordRequest, FnFirmware)
FN_FISCALISATION = Command(0xFF09, "fiscalisation result", PasswordRequest, FnFiscalisation)
FIND_DOCUMENT = Command(0xFF0A, "find FD by number", FindDocumentRequest, FnDocument)
OFD_EXCHANGE = Command(0xFF39, "OFD exchange status", PasswordRequest, FnExchangeStatus)
UNCONFIRMED_COUNT = Command(0xFF3F, "FDs without OFD ticket", PasswordRequest, UnconfirmedCount)
SHIFT_PARAMS = Command(0xFF40, "shift parameters", PasswordRequest, FnShiftParams)
FN_RESOURCE = Command(0xFF63, "ФН resource", PasswordRequest, FnResource)

# Changing state.
OPEN_SHIFT = Command(0xE0, "open shift", PasswordRequest, OperatorAnswer)
Z_REPORT = Command(0x41, "Z-report (close shift)", PasswordRequest, OperatorAnswer)
OPEN_RECEIPT = Command(0x8D, "open receipt", OpenReceiptRequest, OperatorAnswer)
SALE = Command(0x80, "sale", SaleRequest, OperatorAnswer)
CLOSE_RECEIPT = Command(0x85, "close receipt", CloseReceiptRequest, CloseReceiptAnswer)
CANCEL_RECEIPT = Command(0x88, "cancel receipt", PasswordRequest, OperatorAnswer)

# Remote actions.
X_REPORT = Command(0x40, "X-report", PasswordRequest, OperatorAnswer)
SET_TIME = Command(0x21, "set time", SetTimeRequest, NoAnswerData)
SET_DATE = Command(0x22, "set date", SetDateRequest, NoAnswerData)
CONFIRM_DATE = Command(0x23, "confirm date", SetDateRequest, NoAnswerData)

COMMANDS: dict[int, Command[Any, Any]] = {
    command.code: command
    for command in (
        SHORT_STATUS,
        FULL_STATUS,
        DEVICE_TYPE,
        LONG_SERIAL,
        FN_STATUS,
        FN_NUMBER,
        FN_VALIDITY,
        FN_FIRMWARE,
        FN_FISCALISATION,
        FIND_DOCUMENT,
        OFD_EXCHANGE,
        UNCONFIRMED_COUNT,
        SHIFT_PARAMS,
        FN_RESOURCE,
        OPEN_SHIFT,
        Z_REPORT,
        OPEN_RECEIPT,
        SALE,
        CLOSE_RECEIPT,
        CANCEL_RECEIPT,
        READ_TABLE,
        X_REPORT,
        SET_TIME,
        SET_DATE,
        CONFIRM_DATE,
    )
}


class UnknownCommand(DecodeError):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"command {code:#04x} is not in the Shtrih registry")


def find_command(payload: bytes) -> Command[Any, Any]:
    """The registry entry for a request or answer payload; :class:`UnknownCommand` if absent."""
    code = command_code(payload)
    command = COMMANDS.get(code)
    if command is None:
        raise UnknownCommand(code)
    return command
