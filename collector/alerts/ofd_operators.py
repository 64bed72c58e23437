"""The big OFDs and the servers a register sends fiscal documents to (table 19 on Shtrih).

Used to tell «в кассе указан неверный адрес ОФД» apart: a register set to another operator's
server than the contracted one. Hosts and ports agree in two independent public sources read on
2026-12-06: a register vendor's OFD enum (Dreamkas ``com.dreamkas.enums.OfdEnum``) and an
installer's reference bot (``list_ofd``), and a third (a KKT kiosk driver's OFD table) for Первый
ОФД, Такском and ОФД.ру. Alternative hosts are the operators' marking-code servers (also
«ОФД» settings on the register), accepted as theirs. A host not listed here is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OfdOperator:
    key: str
    name: str
    inn: str
    hosts: frozenset[str]
    port: int  # the fiscal-data port named in the sources


OFD_OPERATORS: tuple[OfdOperator, ...] = (
    OfdOperator("taxcom", "Такском", "7704211201", frozenset({"f1.taxcom.ru"}), 7777),
    OfdOperator("first-ofd", "Первый ОФД", "7709364346", frozenset({"k-server.1-ofd.ru"}), 7777),
    OfdOperator("platforma-ofd", "Платформа ОФД", "9715260691", frozenset({"ofdp.platformaofd.ru"}), 21101),
    OfdOperator("ofd-ru", "ОФД.ру", "7841465198", frozenset({"gate.ofd.ru", "crpt.ofd.ru"}), 4000),
    OfdOperator("kontur", "Контур.ОФД", "6658497833", frozenset({"ofd.kontur.ru"}), 7777),
    OfdOperator("sbis", "Тензор (СБИС ОФД)", "7605016030", frozenset({"kkt.sbis.ru"}), 7777),
    OfdOperator("yandex", "Яндекс ОФД", "7704358518", frozenset({"kkt.ofd.yandex.net"}), 12345),
    OfdOperator("ofd-ya", "ОФД-Я (Ярус)", "7728699517", frozenset({"connect.ofd-ya.ru"}), 7779),
    OfdOperator("astral", "Астрал.ОФД", "4029017981", frozenset({"ofd.astralnalog.ru"}), 7777),
)
_BY_KEY = {operator.key: operator for operator in OFD_OPERATORS}


def operator_by_key(key: str | None) -> OfdOperator | None:
    return _BY_KEY.get(key) if key else None


def parse_operator(value: str) -> str | None:
    """An operator named by its key, its name or its ИНН (as a contract file may say) → the key;
    empty → None. Raises ``ValueError`` naming the known operators for anything else."""
    wanted = value.strip().lower()
    if not wanted:
        return None
    for operator in OFD_OPERATORS:
        if wanted in (operator.key, operator.name.lower(), operator.inn):
            return operator.key
    known = ", ".join(f"{o.key} ({o.name})" for o in OFD_OPERATORS)
    raise ValueError(f"unknown OFD {value!r}: expected one of {known}, or its ИНН")


def operator_of_host(host: str) -> OfdOperator | None:
    """The listed operator whose server ``host`` is (case-insensitive, a trailing dot ignored)."""
    wanted = host.strip().rstrip(".").lower()
    return next((operator for operator in OFD_OPERATORS if wanted in operator.hosts), None)
