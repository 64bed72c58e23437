"""Reading a КЭП certificate file (.cer, DER or PEM) with the ``cryptography`` package: serial,
owner, the ИНН it was issued for and its validity — and the check that it belongs to the company.
Refusals are in Russian: the person who uploaded the file reads them beside the form.

Russian qualified certificates carry the ИНН in their subject (приказ ФСБ № 795): the
organisation's in ``ИНН ЮЛ`` (OID 1.2.643.100.4), a person's or sole trader's in ``ИНН``
(OID 1.2.643.3.131.1.1; older certificates put an organisation's there too, padded with "00").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from collector.accounts.errors import InvalidInput

MAX_CERTIFICATE_BYTES = 64 * 1024  # a certificate is a few kilobytes; anything bigger is not one
OID_INN = x509.ObjectIdentifier("1.2.643.3.131.1.1")
OID_INN_LE = x509.ObjectIdentifier("1.2.643.100.4")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    serial: str  # hex, upper case, as CryptoPro and the ФНС show it
    owner_name: str
    inns: frozenset[str]  # every ИНН the subject names (organisation and/or person)
    valid_from: datetime
    valid_until: datetime


def _text(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return ""
    value = values[0].value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())


def _inns(subject: x509.Name) -> frozenset[str]:
    found = set()
    for oid in (OID_INN_LE, OID_INN):
        digits = _text(subject, oid)
        if len(digits) == 12 and digits.startswith("00"):
            digits = digits[2:]  # an organisation's ИНН in the old 12-character field
        if digits.isdigit():
            found.add(digits)
    return frozenset(found)


def parse_certificate(data: bytes) -> CertificateInfo:
    """The facts of a certificate file; ``InvalidInput`` for anything that is not one."""
    if not data:
        raise InvalidInput("Файл сертификата пустой.")
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise InvalidInput(f"Файл больше {MAX_CERTIFICATE_BYTES // 1024} КБ — это не сертификат. Выберите файл .cer.")
    try:
        loaded = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise InvalidInput("Это не файл сертификата: нужен .cer (DER или Base64/PEM), выгруженный из КриптоПро или от удостоверяющего центра.") from None
    subject = loaded.subject
    person = " ".join(part for part in (_text(subject, NameOID.SURNAME), _text(subject, NameOID.GIVEN_NAME)) if part)
    owner = person or _text(subject, NameOID.COMMON_NAME)
    if not owner:
        raise InvalidInput("В сертификате не указан владелец (нет фамилии, имени или CN).")
    return CertificateInfo(
        serial=format(loaded.serial_number, "X"),
        owner_name=owner[:200],
        inns=_inns(subject),
        valid_from=loaded.not_valid_before_utc,
        valid_until=loaded.not_valid_after_utc,
    )


def check_belongs_to(info: CertificateInfo, company_inn: str, at: datetime) -> None:
    """Refuse a certificate of another company, without an ИНН, not yet valid or expired at ``at``."""
    if not info.inns:
        raise InvalidInput("В сертификате нет ИНН, поэтому это не КЭП компании.")
    if company_inn not in info.inns:
        named = ", ".join(sorted(info.inns))
        raise InvalidInput(f"Сертификат выдан на ИНН {named}, а ИНН компании — {company_inn}. Внесите КЭП своей компании.")
    if info.valid_from > at:
        raise InvalidInput(f"Сертификат начнёт действовать только {info.valid_from:%d.%m.%Y}.")
    if info.valid_until <= at:
        raise InvalidInput(f"Срок сертификата истёк {info.valid_until:%d.%m.%Y}: закажите новую КЭП.")
