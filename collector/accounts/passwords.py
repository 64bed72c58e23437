"""Password hashing with argon2id (argon2-cffi), rehashing when the cost parameters change.

The PHC string stored in ``users.password_hash`` carries its own parameters, so raising the
cost later needs no migration: ``verify`` says when a stored hash is weaker than the current
settings and the login path stores a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # argon2 takes any length; a cap stops megabyte "passwords" burning CPU


class WeakPassword(ValueError):
    """The password does not meet the policy (length); the message says what to change."""


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    new_hash: str | None = None  # set when ok and the stored hash used older parameters


@dataclass(frozen=True, slots=True)
class HashingCost:
    """argon2id cost; the defaults are argon2-cffi's RFC 9106 "low memory" profile."""

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4


# Tests pass this one: real argon2id, just cheap enough for a fast suite.
FAST_TEST_COST = HashingCost(time_cost=1, memory_cost_kib=1024, parallelism=1)


class Passwords:
    def __init__(self, cost: HashingCost | None = None) -> None:
        cost = cost or HashingCost()
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_cost_kib,
            parallelism=cost.parallelism,
            type=Type.ID,
        )

    def hash(self, password: str) -> str:
        check_password_policy(password)
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> Verification:
        """Never raises on a wrong password or a corrupt stored hash: both are simply "no"."""
        if stored_hash is None or len(password) > MAX_PASSWORD_LENGTH:
            return Verification(ok=False)
        try:
            self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(ok=False)
        if self._hasher.check_needs_rehash(stored_hash):
            return Verification(ok=True, new_hash=self._hasher.hash(password))
        return Verification(ok=True)


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() == "":
        raise WeakPassword("the password must not be blank")
