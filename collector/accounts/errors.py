"""Typed refusals of the accounts package; the web layer maps them to 4xx answers."""

from __future__ import annotations


class AccountsError(Exception):
    """Base of every error this package raises on purpose; the message is safe to show.

    ``ru`` is the same refusal for a person using the Russian pages (the API and the CLI keep the
    English message); where it is None the pages fall back to a generic Russian sentence.
    """

    def __init__(self, message: str = "", *, ru: str | None = None) -> None:
        super().__init__(message)
        self.ru = ru


class NotFound(AccountsError, LookupError):
    """The thing does not exist, or exists in another tenant (the two are not told apart)."""


class Conflict(AccountsError):
    """The change clashes with existing data (duplicate e-mail, INN, name, non-empty node…)."""


class InvalidInput(AccountsError, ValueError):
    """A value that cannot be accepted as given."""


class PermissionDenied(AccountsError):
    """The actor's grants do not include the permission needed here."""


class AuthenticationFailed(AccountsError):
    """Wrong e-mail or password (deliberately not saying which)."""


class AccountLocked(AccountsError):
    """Too many failed logins: this client address, or this e-mail from it, must wait a while."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class EmailNotConfirmed(AccountsError):
    """The e-mail address has not been confirmed yet."""


class TokenInvalid(AccountsError):
    """A confirmation, reset or invitation link that is unknown, used or expired."""


class KepRequired(AccountsError):
    """The action legally needs a valid КЭП and the company has none."""
