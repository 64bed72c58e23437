"""Mosquitto password hashes: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>``.

The format ``mosquitto_passwd`` (2.0, ``-H sha512-pbkdf2``, the default) writes: a 12-byte salt,
a 64-byte PBKDF2-HMAC-SHA512 digest, standard base64 with padding. The broker reads the
iteration count from the hash, so any count works; 101 is mosquitto_passwd's own default and is
enough here because every password we issue is 256 random bits, not something a person chose.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

MOSQUITTO_PBKDF2_ID = "7"
DEFAULT_ITERATIONS = 101
SALT_BYTES = 12


class InvalidHash(ValueError):
    """Text that is not a ``$7$`` Mosquitto PBKDF2 hash."""


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"${MOSQUITTO_PBKDF2_ID}${iterations}${_b64(salt)}${_b64(digest)}"


def verify(password: str, hashed: str) -> bool:
    """True when ``password`` matches ``hashed``; raises :class:`InvalidHash` for malformed text."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != MOSQUITTO_PBKDF2_ID or not parts[2].isdigit():
        raise InvalidHash(f"not a Mosquitto $7$ hash: {hashed[:20]!r}…")
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except binascii.Error as exc:
        raise InvalidHash(f"bad base64 in Mosquitto hash: {exc}") from None
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def new_password() -> str:
    """A broker password for a machine: 256 random bits, URL-safe (no quoting in TOML or URLs)."""
    return secrets.token_urlsafe(32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
