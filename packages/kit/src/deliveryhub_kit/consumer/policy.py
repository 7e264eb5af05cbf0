"""What becomes of a message that is not simply applied: the consumer's one table of outcomes.

| what the message met                                   | what becomes of it                        |
|--------------------------------------------------------|-------------------------------------------|
| applied, committed                                     | acked                                     |
| its event id is in the inbox already                   | acked, not applied again                  |
| too large, no event, no route, not from its sender     | dead-lettered at once                     |
| verdict POISON (`deliveryhub_kit.failures`)            | dead-lettered at once                     |
| verdict RETRY                                          | moved to wait in the next delay queue;    |
|                                                        | after the last delay, dead-lettered       |
| verdict OUTAGE                                         | held unacked and applied once the         |
|                                                        | database answers; returned to the queue   |
|                                                        | once if the outage outlasts the hold      |
| the consumer stops with it in hand                     | returned to the queue                     |
| its copy could not be moved (the broker refused)       | returned to the queue after a pause       |

A message moved to a delay or dead-letter queue is a copy published with confirms; the original
is acked only once the broker confirms the copy. A dead letter says why in its headers
(`x-death-reason`, `x-error-class`, `x-attempts`, `x-original-queue`, `x-failed-at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from deliveryhub_contracts.topology import Names
from deliveryhub_kit.broker import Broker, BrokerError, HeaderValue, IncomingMessage, OutgoingMessage
from deliveryhub_kit.db import utcnow
from deliveryhub_kit.errors import DomainError
from deliveryhub_kit.failures import Failure, Verdict
from deliveryhub_kit.metrics import Metrics

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What becomes of a message whose handling failed."""

    HOLD = "hold"  # kept unacked through a database outage
    DELAY = "delay"  # waits in a delay queue, then comes back
    DEAD_LETTER = "dead-letter"  # parked with its reason


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    delay_seconds: float = 0.0
    attempt: int = 0


@dataclass(frozen=True)
class FailurePolicy:
    """The table above, as code: the outcome of a failure, given how often the message failed."""

    retry_delays: tuple[float, ...] = ()

    def decide(self, failure: Failure, *, attempts_before: int) -> Decision:
        if failure.verdict is Verdict.OUTAGE:
            return Decision(Outcome.HOLD)
        attempt = attempts_before + 1
        if failure.verdict is Verdict.RETRY and attempt <= len(self.retry_delays):
            return Decision(Outcome.DELAY, self.retry_delays[attempt - 1], attempt)
        return Decision(Outcome.DEAD_LETTER, attempt=attempt)


def attempts(message: IncomingMessage) -> int:
    """How often this message has failed before (its `x-attempts` header)."""
    value = message.headers.get("x-attempts")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# What of a message's own headers its moved copy keeps: an AMQP header frame holds at most 128 KiB,
# and a copy whose headers grew past that would take the consumer's connection down with it.
MAX_KEPT_HEADERS = 32
MAX_KEPT_HEADER_CHARS = 1024
_STORY_HEADERS = frozenset(
    {"x-first-failed-at", "x-original-routing-key", "x-attempts", "traceparent", "x-request-id"}
)


def _failure_headers(message: IncomingMessage, error: BaseException) -> dict[str, HeaderValue]:
    """The message's own (short) headers, with when it first and last failed and why, kept across
    retries."""
    headers: dict[str, HeaderValue] = {}
    own = message.headers
    # The story this system keeps comes first; a producer's other headers after, while there is room.
    for name in sorted(own, key=lambda name: name not in _STORY_HEADERS):
        value = own[name]
        if len(headers) >= MAX_KEPT_HEADERS:
            break
        if isinstance(value, str) and len(value) > MAX_KEPT_HEADER_CHARS:
            continue
        if isinstance(value, str | int | float | bool) and len(name) <= 128:
            headers[name] = value
    now = utcnow().isoformat()
    headers.setdefault("x-first-failed-at", now)
    headers.setdefault("x-original-routing-key", message.routing_key)
    headers["x-last-failed-at"] = now
    headers["x-last-error"] = f"{type(error).__name__}: {error}"[:1000]
    return headers


class Settlement:
    """Carries out the outcomes for one queue: moves copies to the delay and dead-letter queues
    (acking the original once the copy is confirmed) and returns messages to their queue."""

    def __init__(
        self,
        *,
        name: str,
        queue: str,
        dead_letter_queue: str,
        broker: Broker,
        policy: FailurePolicy,
        keys: Collection[str],
        metrics: Metrics,
    ) -> None:
        self.name = name
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue
        self._broker = broker
        self._policy = policy
        self._keys = keys
        self._metrics = metrics

    async def failed(self, message: IncomingMessage, key: str, error: Exception, failure: Failure) -> None:
        """Delay a message that failed for a passing cause; dead-letter one that cannot succeed."""
        decision = self._policy.decide(failure, attempts_before=attempts(message))
        if decision.outcome is Outcome.HOLD:  # held by the consumer while it can; else, back it goes
            await self.give_back([message], "outage")
            return
        if failure.verdict is Verdict.RETRY:
            self._metrics.events_retried.labels(key).inc()
        if decision.outcome is Outcome.DELAY:
            headers = _failure_headers(message, error)
            headers["x-attempts"] = decision.attempt
            logger.warning(
                "%s: %s; retrying %s in %ss (attempt %d)",
                self.name,
                error,
                key,
                decision.delay_seconds,
                decision.attempt,
            )
            await self._move(message, Names.retry_queue(self.queue, decision.delay_seconds), headers)
            return
        if (
            failure.verdict is Verdict.POISON
            and not isinstance(error, DomainError | ValueError)
            and not failure.from_database
        ):
            logger.exception("%s: unexpected failure applying a message", self.name)
        await self.dead_letter(message, error, key=key)

    async def dead_letter(
        self, message: IncomingMessage, error: BaseException, *, key: str | None = None
    ) -> None:
        """Park the message in the dead-letter queue with why, then ack the original."""
        # Only the keys this consumer handles name a series: a stranger's routing key must not.
        series = key if key in self._keys else "unknown"
        self._metrics.events_dead_lettered.labels(series, type(error).__name__).inc()
        headers = _failure_headers(message, error)
        headers.update(
            {
                "x-death-reason": str(error)[:1000],
                "x-error-class": type(error).__name__,
                "x-attempts": attempts(message) + 1,
                "x-original-queue": self.queue,
                "x-failed-at": headers["x-last-failed-at"],
            }
        )
        logger.error(
            "%s: dead-lettering a message: %s: %s", self.name, type(error).__name__, str(error)[:300]
        )
        await self._move(message, self.dead_letter_queue, headers)

    async def _move(self, message: IncomingMessage, queue: str, headers: dict[str, HeaderValue]) -> None:
        """Publish a copy to `queue` and, once the broker confirms it, ack the original."""
        try:
            await self._broker.publish(
                "",
                queue,
                OutgoingMessage(
                    body=message.body,
                    message_id=message.message_id or str(uuid.uuid4()),
                    content_type=message.content_type or "application/octet-stream",
                    headers=headers,
                ),
            )
        except BrokerError as publish_error:
            # Not moved, so not acked: after a pause (not to spin on a broker in trouble) it goes back
            # to the queue; the broker's delivery limit is the backstop if this never succeeds.
            logger.error("%s: could not move a message to %s: %s", self.name, queue, publish_error)
            await asyncio.sleep(1.0)
            await self.give_back([message], "move failed")
            return
        await message.ack()
        self._metrics.delivery_counts.labels(self.queue).observe(message.delivery_count)

    async def give_back(self, messages: Sequence[IncomingMessage], reason: str) -> None:
        """Return unsettled messages to their queue (the broker hands them out again)."""
        for message in messages:
            self._metrics.messages_returned.labels(self.queue, reason).inc()
            with contextlib.suppress(BrokerError):
                await message.requeue()
