"""Real X.509 certificates shaped like Russian qualified ones (ИНН and ИНН ЮЛ in the subject),
built with ``cryptography`` for the КЭП tests (EC keys: ``cryptography`` has no GOST)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.accounts.certificates import OID_INN, OID_INN_LE

_KEY = ec.generate_private_key(ec.SECP256R1())


def make_certificate(
    *,
    company_inn: str | None,
    person_inn: str | None = "500100732259",
    surname: str = "Иванов",
    given_name: str = "Иван Иванович",
    not_before: datetime,
    days: int = 365,
    serial: int = 0x01D9A1B2C3D4E5F6,
    pem: bool = False,
) -> bytes:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, "ООО Ромашка")]
    if surname:
        attributes += [x509.NameAttribute(NameOID.SURNAME, surname), x509.NameAttribute(NameOID.GIVEN_NAME, given_name)]
    if company_inn:
        attributes.append(x509.NameAttribute(OID_INN_LE, company_inn))
    if person_inn:
        attributes.append(x509.NameAttribute(OID_INN, person_inn))
    subject = x509.Name(attributes)
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Тестовый УЦ")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .sign(_KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)
