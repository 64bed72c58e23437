"""Fiscal accumulator (ФН) data layouts, shared by Shtrih-M (FFxx) and ATOL (A4 xx) pass-through.

Both vendors pass the ФН's own binary little-endian answers through unchanged, so one codec
serves both: ``decode`` takes the data *after* the vendor's error byte, ``encode`` builds it
(the simulator's device role). Layouts: specs/kkt-protocols.md §2.3 and §1.4.

Dates and times are the register's local wall clock: the ФН has no time zone, so naive
``datetime`` values are used on purpose.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum, IntFlag

from protocol.kkt.errors import DecodeError, EncodeError

FN_SERIAL_LENGTH = 16


class FnPhase(IntEnum):
    """Lifecycle phase (30h byte 0): one bit per transition, so only these values occur."""

    SETUP = 0
    READY_FOR_FISCALISATION = 1
    FISCAL = 3
    POST_FISCAL = 7
    ARCHIVE = 15

    @property
    def meaning(self) -> str:
        return _PHASE_MEANINGS[self]


_PHASE_MEANINGS = {
    FnPhase.SETUP: "настройка (производство)",
    FnPhase.READY_FOR_FISCALISATION: "готов к фискализации",
    FnPhase.FISCAL: "фискальный режим",
    FnPhase.POST_FISCAL: "постфискальный режим (передача ФД в ОФД)",
    FnPhase.ARCHIVE: "чтение данных из архива",
}


class FnWarning(IntFlag):
    """Warning flags (30h byte 4): the main monitoring byte."""

    URGENT_REPLACEMENT = 0x01  # ≤ 3 days of validity left
    REPLACE_SOON = 0x02  # ≤ 30 days of validity left
    MEMORY_ALMOST_FULL = 0x04  # archive ≥ 90 % full
    OFD_TIMEOUT = 0x08  # unsent documents too old
    FLC_REJECTION = 0x10  # format-logic control rejection in an OFD ticket [V, one source]
    KKT_SETUP_REQUIRED = 0x20  # from an OFD ticket [V, one source]
    OFD_ANNULLED = 0x40  # from an OFD ticket [V, one source]
    CRITICAL_ERROR = 0x80


FN_WARNING_MEANINGS: dict[FnWarning, str] = {
    FnWarning.URGENT_REPLACEMENT: "срочная замена КС (до окончания срока ≤ 3 дней)",
    FnWarning.REPLACE_SOON: "исчерпание ресурса КС (до окончания срока ≤ 30 дней)",
    FnWarning.MEMORY_ALMOST_FULL: "переполнение памяти ФН (архив заполнен на 90 %)",
    FnWarning.OFD_TIMEOUT: "превышено время ожидания ответа ОФД",
    FnWarning.FLC_REJECTION: "отказ по данным ФЛК",
    FnWarning.KKT_SETUP_REQUIRED: "требуется настройка ККТ",
    FnWarning.OFD_ANNULLED: "ОФД аннулирован",
    FnWarning.CRITICAL_ERROR: "критическая ошибка ФН",
}


def warning_names(flags: int) -> list[str]:
    """Names of the set warning bits, lowest bit first (``["REPLACE_SOON", ...]``)."""
    return [flag.name for flag in FnWarning if flags & flag and flag.name]


class OfdExchangeFlag(IntFlag):
    """OFD exchange status bits (20h byte 0)."""

    TRANSPORT_CONNECTED = 0x01
    MESSAGE_PENDING = 0x02
    WAITING_FOR_TICKET = 0x04
    COMMAND_FROM_OFD = 0x08
    SETTINGS_CHANGED = 0x10
    WAITING_FOR_COMMAND_ANSWER = 0x20


class FnDocumentType(IntEnum):
    """FFD document codes (FF0A / 40h "find FD" answers; STLV tags of documents)."""

    REGISTRATION = 1
    SHIFT_OPEN = 2
    RECEIPT = 3
    BSO = 4
    SHIFT_CLOSE = 5
    FN_CLOSE = 6
    OPERATOR_CONFIRMATION = 7
    REREGISTRATION = 11
    SETTLEMENT_REPORT = 21
    CORRECTION_RECEIPT = 31
    CORRECTION_BSO = 41


# ФН result codes (§2.5), also carried in Shtrih's error byte for FFxx commands.
FN_ERRORS: dict[int, str] = {
    0x00: "успешно",
    0x01: "неизвестная команда, неверный формат посылки или неизвестные параметры",
    0x02: "неверное состояние ФН",
    0x03: "ошибка ФН",
    0x04: "ошибка КС",
    0x05: "закончен срок эксплуатации ФН",
    0x06: "архив ФН переполнен",
    0x07: "неверные дата и/или время",
    0x08: "нет запрошенных данных",
    0x09: "некорректное значение параметров команды",
    0x10: "превышение размеров TLV данных",
    0x11: "нет транспортного соединения",
    0x12: "исчерпан ресурс КС (требуется закрытие фискального режима)",
    0x14: "исчерпан ресурс хранения документов для ОФД",
    0x15: "исчерпан ресурс ожидания передачи сообщения (старейшее непереданное старше 30 дней)",
    0x16: "продолжительность смены более 24 часов",
    0x17: "неверная разница во времени между двумя операциями (более 5 минут)",
    0x20: "сообщение от ОФД не может быть принято",
}

FN_ERROR_OFD_WAIT_EXHAUSTED = 0x15
FN_ERROR_SHIFT_OVER_24H = 0x16
FN_ERROR_SERVICE_LIFE_ENDED = 0x05
FN_ERROR_ARCHIVE_FULL = 0x06


def fn_error_meaning(code: int) -> str:
    return FN_ERRORS.get(code, f"неизвестный код ошибки ФН {code:#04x}")


# ---------------------------------------------------------------------------------------------
# Primitive types: DATE_TIME (5 bytes YY MM DD hh mm, binary), DATE (3 bytes YY MM DD), strings.


def decode_datetime5(data: bytes) -> datetime | None:
    """5-byte ФН date-time; all zeros means "no document yet" and decodes to ``None``."""
    if len(data) != 5:
        raise DecodeError(f"DATE_TIME needs 5 bytes, got {len(data)}")
    if not any(data):
        return None
    yy, mm, dd, hh, mi = data
    try:
        return datetime(2000 + yy, mm, dd, hh, mi)
    except ValueError as exc:
        raise DecodeError(f"invalid ФН date-time {data.hex(' ')}: {exc}") from exc


def encode_datetime5(value: datetime | None) -> bytes:
    if value is None:
        return bytes(5)
    _check_year(value.year)
    return bytes((value.year - 2000, value.month, value.day, value.hour, value.minute))


def decode_date3(data: bytes) -> date | None:
    if len(data) != 3:
        raise DecodeError(f"DATE needs 3 bytes, got {len(data)}")
    if not any(data):
        return None
    yy, mm, dd = data
    try:
        return date(2000 + yy, mm, dd)
    except ValueError as exc:
        raise DecodeError(f"invalid ФН date {data.hex(' ')}: {exc}") from exc


def encode_date3(value: date | None) -> bytes:
    if value is None:
        return bytes(3)
    _check_year(value.year)
    return bytes((value.year - 2000, value.month, value.day))


def _check_year(year: int) -> None:
    if not 2000 <= year <= 2255:
        raise EncodeError(f"year {year} is outside the ФН range 2000..2255")


def decode_ascii(data: bytes) -> str:
    """Zero-padded ASCII/CP866 field (ФН serials are digits, so CP866 covers both)."""
    return data.split(b"\x00", 1)[0].decode("cp866").strip()


def encode_ascii(value: str, length: int) -> bytes:
    raw = value.encode("cp866")
    if len(raw) > length:
        raise EncodeError(f"{value!r} is longer than {length} bytes")
    return raw.ljust(length, b"\x00")


def _require(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise DecodeError(f"{what}: need at least {size} bytes, got {len(data)}")


# ---------------------------------------------------------------------------------------------
# Structured answers.


@dataclass(frozen=True, slots=True)
class FnStatus:
    """30h / Shtrih FF01 / ATOL A4 30: 30 bytes of data."""

    phase: int
    current_document: int
    document_data: bool
    shift_open: bool
    warnings: FnWarning
    last_document_at: datetime | None
    fn_serial: str
    last_fd_number: int

    SIZE = 30

    @classmethod
    def decode(cls, data: bytes) -> FnStatus:
        _require(data, cls.SIZE, "ФН status")
        (last_fd,) = struct.unpack_from("<I", data, 26)
        return cls(
            phase=data[0],
            current_document=data[1],
            document_data=bool(data[2]),
            shift_open=bool(data[3]),
            warnings=FnWarning(data[4]),
            last_document_at=decode_datetime5(data[5:10]),
            fn_serial=decode_ascii(data[10:26]),
            last_fd_number=last_fd,
        )

    def encode(self) -> bytes:
        return (
            bytes((self.phase, self.current_document, int(self.document_data), int(self.shift_open), int(self.warnings)))
            + encode_datetime5(self.last_document_at)
            + encode_ascii(self.fn_serial, FN_SERIAL_LENGTH)
            + struct.pack("<I", self.last_fd_number)
        )


@dataclass(frozen=True, slots=True)
class FnExchangeStatus:
    """20h / Shtrih FF39 / ATOL A4 20: OFD exchange state, 13 bytes."""

    flags: OfdExchangeFlag
    reading_message: bool
    unsent_count: int
    first_unsent_number: int  # 0 = queue empty
    first_unsent_at: datetime | None

    SIZE = 13

    @classmethod
    def decode(cls, data: bytes) -> FnExchangeStatus:
        _require(data, cls.SIZE, "OFD exchange status")
        count, first = struct.unpack_from("<HI", data, 2)
        return cls(
            flags=OfdExchangeFlag(data[0]),
            reading_message=bool(data[1]),
            unsent_count=count,
            first_unsent_number=first,
            first_unsent_at=decode_datetime5(data[8:13]),
        )

    def encode(self) -> bytes:
        return (
            bytes((int(self.flags), int(self.reading_message)))
            + struct.pack("<HI", self.unsent_count, self.first_unsent_number)
            + encode_datetime5(self.first_unsent_at)
        )

    @property
    def transport_connected(self) -> bool:
        return bool(self.flags & OfdExchangeFlag.TRANSPORT_CONNECTED)


@dataclass(frozen=True, slots=True)
class FnShiftParams:
    """10h / Shtrih FF40 / ATOL A4 10: shift state(1), shift number(2), receipt number(2).

    When the shift is closed the numbers describe the last closed shift. ATOL's A4 10 is
    decoded as the ФН's own LE binary layout (atol4j reads BCD; the spec tags LE as likely [I]).
    """

    shift_open: bool
    shift_number: int
    receipt_number: int

    SIZE = 5

    @classmethod
    def decode(cls, data: bytes) -> FnShiftParams:
        _require(data, cls.SIZE, "shift parameters")
        number, receipts = struct.unpack_from("<HH", data, 1)
        return cls(shift_open=bool(data[0]), shift_number=number, receipt_number=receipts)

    def encode(self) -> bytes:
        return bytes((int(self.shift_open),)) + struct.pack("<HH", self.shift_number, self.receipt_number)


@dataclass(frozen=True, slots=True)
class FnValidity:
    """32h / Shtrih FF03 / ATOL A4 32.

    The 2016 ФН document shows only the 3-byte date; newer firmware appends re-registrations
    remaining and done [C]. Decoding accepts both; encoding emits the 5-byte form unless the
    counters are unknown.
    """

    valid_until: date | None
    registrations_left: int | None = None
    registrations_done: int | None = None

    @classmethod
    def decode(cls, data: bytes) -> FnValidity:
        _require(data, 3, "ФН validity")
        valid_until = decode_date3(data[:3])
        if len(data) >= 5:
            return cls(valid_until, registrations_left=data[3], registrations_done=data[4])
        return cls(valid_until)

    def encode(self) -> bytes:
        head = encode_date3(self.valid_until)
        if self.registrations_left is None or self.registrations_done is None:
            return head
        return head + bytes((self.registrations_left, self.registrations_done))


@dataclass(frozen=True, slots=True)
class FnResource:
    """Shtrih FF63: documents that can still be made (5-year storage) and free 30-day area in KB."""

    documents_left: int
    free_kb: int

    SIZE = 8

    @classmethod
    def decode(cls, data: bytes) -> FnResource:
        _require(data, cls.SIZE, "ФН resource")
        documents_left, free_kb = struct.unpack_from("<II", data, 0)
        return cls(documents_left=documents_left, free_kb=free_kb)

    def encode(self) -> bytes:
        return struct.pack("<II", self.documents_left, self.free_kb)


@dataclass(frozen=True, slots=True)
class FnFirmware:
    """33h / Shtrih FF04: version string (16 ASCII) + type (0 debug, 1 serial)."""

    version: str
    serial_build: bool

    SIZE = 17

    @classmethod
    def decode(cls, data: bytes) -> FnFirmware:
        _require(data, cls.SIZE, "ФН firmware")
        return cls(version=decode_ascii(data[:16]), serial_build=bool(data[16]))

    def encode(self) -> bytes:
        return encode_ascii(self.version, 16) + bytes((int(self.serial_build),))


def decode_unconfirmed_count(data: bytes) -> int:
    """42h / Shtrih FF3F: FDs without an OFD ticket — 2 bytes per spec, javapos reads 4 [C]."""
    if len(data) >= 4:
        return int(struct.unpack_from("<I", data, 0)[0])
    _require(data, 2, "unconfirmed FD count")
    return int(struct.unpack_from("<H", data, 0)[0])


def encode_unconfirmed_count(count: int) -> bytes:
    """2 bytes as the spec; a count past 65535 takes the 4-byte form the decoder also reads."""
    if not 0 <= count <= 0xFFFFFFFF:
        raise EncodeError(f"unconfirmed FD count {count} does not fit 4 bytes")
    return struct.pack("<H" if count <= 0xFFFF else "<I", count)


@dataclass(frozen=True, slots=True)
class FnDocument:
    """40h / Shtrih FF0A "find FD by number": the common prefix plus type-specific fields.

    Only the fields monitoring needs are typed (the shift number for shift open/close reports,
    which lets a driver recover the shift-open time); the rest stays in ``extra``.
    """

    document_type: int
    ticket_received: bool
    created_at: datetime | None
    fd_number: int
    fiscal_sign: int
    shift_number: int | None = None
    extra: bytes = b""

    @classmethod
    def decode(cls, data: bytes) -> FnDocument:
        _require(data, 15, "ФН document")
        fd_number, fiscal_sign = struct.unpack_from("<II", data, 7)
        rest = data[15:]
        shift_number = None
        if data[0] in (FnDocumentType.SHIFT_OPEN, FnDocumentType.SHIFT_CLOSE) and len(rest) >= 2:
            shift_number = int(struct.unpack_from("<H", rest, 0)[0])
            rest = rest[2:]
        return cls(
            document_type=data[0],
            ticket_received=bool(data[1]),
            created_at=decode_datetime5(data[2:7]),
            fd_number=fd_number,
            fiscal_sign=fiscal_sign,
            shift_number=shift_number,
            extra=bytes(rest),
        )

    def encode(self) -> bytes:
        body = (
            bytes((self.document_type, int(self.ticket_received)))
            + encode_datetime5(self.created_at)
            + struct.pack("<II", self.fd_number, self.fiscal_sign)
        )
        if self.shift_number is not None:
            body += struct.pack("<H", self.shift_number)
        return body + self.extra


# ---- ФФД version (tag 1209, specs §5.1): the document format the register works in

FFD_VERSION_TAG = 1209
FFD_VERSIONS = {1: "1.0", 2: "1.05", 3: "1.1", 4: "1.2"}  # 4 = 1.2 is [I] in the spec


def ffd_version_name(code: int) -> str | None:
    """``2`` → ``"1.05"``; a code the format does not define is unknown, not guessed."""
    return FFD_VERSIONS.get(code)


def ffd_version_code(name: str) -> int:
    for code, known in FFD_VERSIONS.items():
        if known == name:
            return code
    raise EncodeError(f"unknown ФФД version {name!r}; known: {', '.join(FFD_VERSIONS.values())}")


@dataclass(frozen=True, slots=True)
class FnTlv:
    """One TLV (§5.2: tag 2 LE, length 2 LE, value), e.g. the ФН's answer to 44h for a tag."""

    tag: int
    value: bytes

    @classmethod
    def decode(cls, data: bytes) -> FnTlv:
        _require(data, 4, "TLV header")
        tag, length = struct.unpack_from("<HH", data, 0)
        _require(data, 4 + length, f"TLV {tag} value")
        return cls(tag, bytes(data[4 : 4 + length]))

    def encode(self) -> bytes:
        if not 0 <= self.tag <= 0xFFFF or len(self.value) > 0xFFFF:
            raise EncodeError(f"TLV {self.tag} with {len(self.value)} bytes does not fit the 2-byte fields")
        return struct.pack("<HH", self.tag, len(self.value)) + self.value
