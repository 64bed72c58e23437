"""Webhook channel: POST the group's JSON, signed with the receiver's secret.

Signing (what a receiver must check, see ``verify_signature``):

* ``X-Kassa-Timestamp``: Unix time in whole seconds when this attempt was made;
* ``X-Kassa-Signature``: ``sha256=`` + hex HMAC-SHA256 over the bytes ``<timestamp>.<raw body>``
  keyed with the receiver's secret (UTF-8). Signing the timestamp with the body lets a receiver
  reject replays of an old, valid message: refuse timestamps older than a few minutes.
* ``X-Kassa-Delivery``: one id for all retries of the same message, so a receiver can de-duplicate
  a delivery whose response was lost.

Every retry is signed afresh with a new timestamp, so a slow retry chain is not rejected as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable

import aiohttp

from collector.notify.delivery import (
    DeadLetterSink,
    PermanentDeliveryError,
    RetryingChannel,
    RetryPolicy,
    TransientDeliveryError,
)
from collector.notify.notice import Receiver

SIGNATURE_HEADER = "X-Kassa-Signature"
TIMESTAMP_HEADER = "X-Kassa-Timestamp"
DELIVERY_HEADER = "X-Kassa-Delivery"
SIGNATURE_PREFIX = "sha256="
# HTTP answers that say "try again later" rather than "this request is wrong".
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    max_age: float = 300.0,
) -> bool:
    """Receiver side: True when ``header`` signs ``timestamp.body`` with ``secret``.

    With ``now`` (Unix seconds) given, a timestamp more than ``max_age`` seconds away from it
    is refused too, which stops replays of captured messages.
    """
    if not header.startswith(SIGNATURE_PREFIX) or not timestamp.isdigit():
        return False
    if now is not None and abs(now - int(timestamp)) > max_age:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


class WebhookSender(RetryingChannel):
    """Posts signed JSON bodies; owns its aiohttp session unless one is passed in."""

    channel = "webhook"

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        dead_letters: DeadLetterSink | None = None,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        user_agent: str = "kassa-monitor-notify/1",
    ) -> None:
        super().__init__(policy, dead_letters)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._user_agent = user_agent

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, receiver: Receiver, body: bytes, group_key: str) -> bool:
        """Deliver ``body`` to the receiver's URL; False when it ended in the dead-letter sink."""
        if receiver.channel != "webhook" or not receiver.secret:
            raise ValueError(f"receiver {receiver.receiver_id} is not a webhook receiver")
        secret = receiver.secret
        delivery_id = uuid.uuid4().hex

        async def attempt() -> None:
            await self._post(receiver.address, secret, body, delivery_id)

        return await self._deliver(receiver.receiver_id, group_key, attempt)

    async def _post(self, url: str, secret: str, body: bytes, delivery_id: str) -> None:
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self._user_agent,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
        }
        session = self._open_session()
        try:
            # No redirects: a signed alert is for the configured URL only.
            async with session.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                reason = response.reason or ""
                await response.read()  # drain so the connection can be reused
        except TimeoutError as exc:
            raise TransientDeliveryError(f"timed out posting to {url}") from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentDeliveryError(f"invalid webhook URL {url!r}") from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__} posting to {url}: {exc}") from exc
        if 200 <= status < 300:
            return
        message = f"HTTP {status} {reason} from {url}"
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise TransientDeliveryError(message)
        raise PermanentDeliveryError(message)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session
