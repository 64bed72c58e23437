"""ATOL error codes (the byte after ``55h``), decimal as in atol4j ``error-messages.properties`` (specs §3.4)."""

from __future__ import annotations

from protocol.kkt.errors import DeviceError

VENDOR = "atol"

OK = 0
NOT_IN_THIS_MODE = 102
NO_PAPER = 103
SHIFT_OVER_24H = 136
WRONG_PASSWORD = 140
RECEIPT_CLOSED = 154
RECEIPT_OPEN = 155
SHIFT_OPEN = 156
NOT_FISCALISED = 168
WRONG_FN_STATE = 212
FN_SERVICE_LIFE_ENDED = 215
FN_ARCHIVE_FULL = 216
FN_OFD_WAIT_EXHAUSTED = 239
FN_SHIFT_OVER_24H = 240
# Not in the §3.4 list: our own code for a command the register does not know [I]. atol4j has no
# "unknown command" entry; 1 is unused by the listed codes, so it cannot be mistaken for one.
UNKNOWN_COMMAND = 1

ERRORS: dict[int, str] = {
    OK: "ошибок нет",
    UNKNOWN_COMMAND: "неизвестная команда",
    NOT_IN_THIS_MODE: "команда не реализуется в данном режиме ККТ",
    NO_PAPER: "нет бумаги",
    104: "нет связи с принтером чеков",
    SHIFT_OVER_24H: "смена превысила 24 часа",
    WRONG_PASSWORD: "неверный пароль",
    RECEIPT_CLOSED: "чек закрыт — операция невозможна",
    RECEIPT_OPEN: "чек открыт — операция невозможна",
    SHIFT_OPEN: "смена открыта — операция невозможна",
    NOT_FISCALISED: "ККТ не фискализирована",
    186: "ошибка обмена с фискальным модулем",
    191: "номера смен в ККТ и ФН различаются",
    210: "ошибка интерфейса I²C с ФН",
    211: "ошибка формата передачи ФН",
    WRONG_FN_STATE: "неверное состояние ФН",
    213: "неисправимая ошибка ФН",
    214: "ошибка КС ФН",
    FN_SERVICE_LIFE_ENDED: "закончен срок эксплуатации ФН",
    FN_ARCHIVE_FULL: "архив ФН переполнен",
    217: "неверные дата или время переданы в ФН",
    218: "нет запрошенных данных в ФН",
    219: "переполнение ФН",
    225: "неверный номер ФН",
    231: "некорректное значение параметров команды ФН",
    232: "превышение размеров TLV данных ФН",
    233: "нет транспортного соединения",
    234: "исчерпан ресурс КС ФН",
    235: "исчерпан ресурс хранения ФН для ОФД",
    236: "сообщение от ОФД не может быть принято ФН",
    237: "в ФН есть неотправленные ФД",
    238: "расширенный код ошибки в регистре 55",
    FN_OFD_WAIT_EXHAUSTED: "исчерпан ресурс ожидания передачи сообщения (правило 30 дней)",
    FN_SHIFT_OVER_24H: "продолжительность смены ФН более 24 часов",
    241: "неверная разница во времени между двумя операциями ФН",
}

# ATOL codes that pass a ФН refusal through → the ФН result code (``protocol.kkt.fn.FN_ERRORS``).
# Paired by their meaning in the two tables [I]: the ATOL table renumbers the ФН's codes.
FN_RESULT_CODES: dict[int, int] = {
    WRONG_FN_STATE: 0x02,
    213: 0x03,
    214: 0x04,
    FN_SERVICE_LIFE_ENDED: 0x05,
    FN_ARCHIVE_FULL: 0x06,
    217: 0x07,
    218: 0x08,
    231: 0x09,
    232: 0x10,
    233: 0x11,
    234: 0x12,
    235: 0x14,
    236: 0x20,
    FN_OFD_WAIT_EXHAUSTED: 0x15,
    FN_SHIFT_OVER_24H: 0x16,
    241: 0x17,
}

# Codes that mean "the open shift has run past 24 h": the register's own word that it is expired.
SHIFT_EXPIRED_CODES = frozenset((SHIFT_OVER_24H, FN_SHIFT_OVER_24H))


def fn_result_code(code: int) -> int | None:
    """The ФН result code an ATOL error passes through, or None for the register's own errors."""
    return FN_RESULT_CODES.get(code)


def error_meaning(code: int) -> str:
    return ERRORS.get(code, f"неизвестный код ошибки АТОЛ {code}")


def device_error(command: int, code: int) -> DeviceError:
    """The typed error for a non-zero ATOL error byte; ``command`` is the request code (A4 30 → 0xA430)."""
    return DeviceError(VENDOR, command, code, error_meaning(code))
