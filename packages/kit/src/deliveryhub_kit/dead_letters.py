"""Dead-letter queues for an operator: look without consuming, put back for another try, empty."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from deliveryhub_contracts.topology import Names, QueueSpec, legacy_queues
from deliveryhub_kit.amqp_properties import read_any_properties
from deliveryhub_kit.db import utcnow

# Headers of a dead letter's story; a replayed message starts its story again.
_STORY_HEADERS = (
    "x-death-reason",
    "x-error-class",
    "x-attempts",
    "x-first-failed-at",
    "x-last-failed-at",
    "x-last-error",
    "x-failed-at",
    "x-death",
)


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    type: str
    subject: str
    reason: str
    error_class: str
    attempts: int
    failed_at: datetime | None
    original_queue: str | None

    @property
    def age_seconds(self) -> float | None:
        return (utcnow() - self.failed_at).total_seconds() if self.failed_at else None


def dead_letter_queues(
    broker_prefix: str, consuming: Sequence[QueueSpec], legacy_prefix: str = ""
) -> list[str]:
    """The dead-letter queues of a system: one beside each consuming queue (and legacy queue)."""
    names = Names(broker_prefix)
    queues = [names.queue(spec) for spec in consuming]
    if legacy_prefix:
        queues += legacy_queues(legacy_prefix)
    return [Names.dead_letter_queue(queue) for queue in queues]


def _describe(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    kind, subject = str(headers.get("x-original-routing-key") or message.routing_key or "?"), "-"
    try:
        body = json.loads(message.body)
    except (ValueError, RecursionError):  # a dead letter is often bytes that are no JSON at all
        body = None
    if isinstance(body, dict):
        kind = str(body.get("type") or kind)[:200]
        subject = str(body.get("subject") or body.get("order_id") or body.get("id") or "-")[:200]
    failed_at = headers.get("x-last-failed-at") or headers.get("x-failed-at")
    try:
        when = datetime.fromisoformat(str(failed_at)) if failed_at else None
    except ValueError:
        when = None
    attempts = headers.get("x-attempts")
    original = headers.get("x-original-queue")
    return DeadLetter(
        queue=queue,
        message_id=message.message_id or "-",
        type=kind,
        subject=subject,
        reason=str(headers.get("x-death-reason") or "-"),
        error_class=str(headers.get("x-error-class") or "-"),
        attempts=attempts if isinstance(attempts, int) else 0,
        failed_at=when,
        original_queue=str(original) if original else None,
    )


class DeadLetterBox:
    """Works on dead-letter queues through one connection; reading never removes a message."""

    def __init__(self, connection: AbstractConnection) -> None:
        read_any_properties()  # a dead letter is what a producer sent, properties and all
        self._connection = connection

    async def _take_all(self, channel: AbstractChannel, queue: str) -> list[AbstractIncomingMessage]:
        """Every message of the queue, held unacknowledged: closing the channel gives them back."""
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return []
        taken: list[AbstractIncomingMessage] = []
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            taken.append(message)
        return taken

    async def browse(self, queues: Sequence[str]) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for queue in queues:
            channel = await self._connection.channel()
            try:
                found += [_describe(queue, message) for message in await self._take_all(channel, queue)]
            finally:
                await _close(channel)
        return found

    async def replay(self, queues: Sequence[str], message_ids: set[str] | None = None) -> int:
        """Put the chosen dead letters (all when `message_ids` is None) back on their queue."""
        replayed = 0
        for queue in queues:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                for message in await self._take_all(channel, queue):
                    letter = _describe(queue, message)
                    if message_ids is not None and letter.message_id not in message_ids:
                        continue
                    if letter.original_queue is None:
                        continue
                    headers = {
                        name: value
                        for name, value in (message.headers or {}).items()
                        if name not in _STORY_HEADERS
                    }
                    headers["x-replayed-at"] = utcnow().isoformat()
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            message.body,
                            message_id=message.message_id,
                            content_type=message.content_type,
                            headers=headers,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=letter.original_queue,
                        mandatory=True,
                    )
                    await message.ack()
                    replayed += 1
            finally:
                await _close(channel)
        return replayed

    async def purge(self, queues: Sequence[str]) -> int:
        purged = 0
        for queue in queues:
            channel = await self._connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                result = await declared.purge()
                purged += int(getattr(result, "message_count", 0) or 0)
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue
            finally:
                await _close(channel)
        return purged


async def _close(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        await channel.close()
