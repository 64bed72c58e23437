"""Retry and dead-letter policy shared by every channel.

A channel turns one delivery attempt into ``None`` (delivered), ``TransientDeliveryError``
(worth retrying: timeouts, refused connections, HTTP 5xx/429, SMTP 4xx) or
``PermanentDeliveryError`` (retrying cannot help: HTTP 4xx, SMTP 5xx, bad credentials).
Retries back off exponentially with jitter (tenacity); after the last attempt, or at once on a
permanent error, the delivery becomes a ``DeadLetter`` handed to the sink with the last error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A delivery attempt failed."""


class TransientDeliveryError(DeliveryError):
    """Failed, but the same attempt may succeed later."""


class PermanentDeliveryError(DeliveryError):
    """Failed in a way a retry cannot fix."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_backoff: float = 1.0  # seconds before the second attempt
    max_backoff: float = 60.0
    jitter: float = 1.0  # up to this many random seconds added, so receivers are not hit in lockstep

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if min(self.initial_backoff, self.max_backoff, self.jitter) < 0:
            raise ValueError("backoff and jitter must not be negative")


@dataclass(frozen=True)
class DeadLetter:
    channel: str
    receiver_id: str
    group_key: str
    attempts: int
    last_error: str
    failed_at: datetime


DeadLetterSink = Callable[[DeadLetter], None]


class DeadLetterList:
    """The default sink: keeps failed deliveries in memory for the service to expose or persist."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def __call__(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


class RetryingChannel:
    """Base of the senders: one retry policy and one dead-letter sink per channel."""

    channel: str = ""

    def __init__(self, policy: RetryPolicy | None = None, dead_letters: DeadLetterSink | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.dead_letters: DeadLetterSink = dead_letters or DeadLetterList()

    async def _deliver(
        self, receiver_id: str, group_key: str, attempt: Callable[[], Awaitable[None]]
    ) -> bool:
        target = DeliveryTarget(self.channel, receiver_id, group_key)
        return await deliver_with_retry(attempt, self.policy, target, self.dead_letters)


@dataclass(frozen=True)
class DeliveryTarget:
    """What a dead letter needs to say about the delivery that failed."""

    channel: str
    receiver_id: str
    group_key: str


async def deliver_with_retry(
    attempt: Callable[[], Awaitable[None]],
    policy: RetryPolicy,
    target: DeliveryTarget,
    dead_letters: DeadLetterSink,
) -> bool:
    """Run ``attempt`` under ``policy``; True when delivered, False when dead-lettered."""
    tries = 0

    async def counted() -> None:
        nonlocal tries
        tries += 1
        await attempt()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        # exponential + uniform jitter, composed so it works on tenacity 8 and 9 alike
        wait=wait_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)
        + wait_random(0, policy.jitter),
        retry=retry_if_exception_type(TransientDeliveryError),
        reraise=False,
    )
    try:
        await retrying(counted)
    except RetryError as exc:
        error = exc.last_attempt.exception()
        dead_letters(_letter(target, tries, error))
        return False
    except PermanentDeliveryError as exc:
        dead_letters(_letter(target, tries, exc))
        return False
    except Exception as exc:
        # A channel bug must cost one delivery, not the notification loop.
        log.exception("unexpected error delivering %s to %s", target.group_key, target.receiver_id)
        dead_letters(_letter(target, tries, exc))
        return False
    return True


def _letter(target: DeliveryTarget, tries: int, error: BaseException | None) -> DeadLetter:
    log.warning("%s delivery %s to %s dead-lettered after %d attempt(s): %s",
                target.channel, target.group_key, target.receiver_id, tries, error)  # fmt: skip
    return DeadLetter(
        channel=target.channel,
        receiver_id=target.receiver_id,
        group_key=target.group_key,
        attempts=tries,
        last_error=f"{type(error).__name__}: {error}" if error else "unknown error",
        failed_at=datetime.now(UTC),
    )
