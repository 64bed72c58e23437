"""Shtrih-M error byte meanings (specs §1.5); FFxx commands carry ФН codes instead (§2.5)."""

from __future__ import annotations

from protocol.kkt.errors import DeviceError
from protocol.kkt.fn import FN_ERRORS, fn_error_meaning

VENDOR = "shtrih"

WRONG_PARAMETERS = 0x33
NOT_SUPPORTED = 0x37
SHIFT_NOT_OPEN = 0x3D
RECEIPT_OPEN = 0x4A
SHIFT_OVER_24H = 0x4E
WRONG_PASSWORD = 0x4F
NO_RECEIPT_PAPER = 0x6B
NOT_IN_THIS_SUBMODE = 0x72
NOT_IN_THIS_MODE = 0x73

KKT_ERRORS: dict[int, str] = {
    0x00: "ошибок нет",
    0x33: "некорректные параметры в команде",
    0x37: "команда не поддерживается в данной реализации ККТ",
    0x3D: "смена не открыта – операция невозможна",
    0x4A: "открыт чек – операция невозможна",
    0x4E: "смена превысила 24 часа",
    0x4F: "неверный пароль",
    0x50: "идет печать результатов выполнения предыдущей команды",
    0x58: "ожидание команды продолжения печати",
    0x6B: "нет чековой ленты",
    0x6C: "нет контрольной ленты",
    0x72: "команда не поддерживается в данном подрежиме",
    0x73: "команда не поддерживается в данном режиме",
    0x8E: "нулевой итог чека",
    0x8F: "ККТ не фискализирована",
    0xC0: "контроль даты и времени (подтвердите дату и время)",
    0xCF: "неверная дата (проверьте дату и время)",
}


def is_fn_command(command: int) -> bool:
    """FFxx commands are ФН pass-through: their error byte is a ФН result code."""
    return command >> 8 == 0xFF


def fn_result_code(command: int, code: int) -> int | None:
    """The ФН result code behind a refusal of ``command``, or None for the KKT's own errors."""
    return code if is_fn_command(command) and code in FN_ERRORS and code != 0 else None


def error_meaning(command: int, code: int) -> str:
    """FFxx errors are ФН codes (00..20h); the KKT itself still refuses FFxx with its own codes
    above that range (37h unsupported, 4Fh wrong password), which are not ФН codes."""
    if is_fn_command(command) and code in FN_ERRORS:
        return fn_error_meaning(code)
    return KKT_ERRORS.get(code, f"неизвестный код ошибки ККТ {code:#04x}")


def device_error(command: int, code: int) -> DeviceError:
    return DeviceError(VENDOR, command, code, error_meaning(command, code))
