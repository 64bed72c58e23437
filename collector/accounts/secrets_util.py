"""Random bearer secrets and their at-rest form (SHA-256 hex).

Session, API and e-mail tokens carry 256 bits from ``secrets``, so a fast hash is as good as a
slow one against guessing, and a stolen table gives no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_secret() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison (CSRF tokens and the like)."""
    return hmac.compare_digest(a.encode(), b.encode())
