"""What a hub holds in memory: exchanges with their bindings, queues with the messages waiting in
them, and the consumers with the messages in their hands."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from dataclasses import dataclass, field

from deliveryhub_contracts.topology import topic_matches
from deliveryhub_kit.broker import HeaderValue, MessageHandler


@dataclass
class QueuedMessage:
    """One copy of a published message, in one queue."""

    id: int
    queue: str
    body: bytes
    message_id: str | None
    content_type: str | None
    type: str | None
    headers: dict[str, HeaderValue]
    exchange: str
    routing_key: str
    # Handed out before: its next delivery is a redelivery.
    delivered: bool = False
    # Handed out and returned this many times; only a quorum queue counts.
    returns: int = 0
    # Wall-clock time (not the loop's), so that a countdown goes on across a restart.
    expires_at: float | None = None


@dataclass
class Exchange:
    """An exchange and its bindings, which route a message to queues by its routing key."""

    name: str
    type: str
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (binding key, queue)

    def route(self, routing_key: str) -> list[str]:
        """The queues a message with this routing key goes to, each once."""
        if self.type == "fanout":
            matched = [queue for _, queue in self.bindings]
        elif self.type == "direct":
            matched = [queue for key, queue in self.bindings if key == routing_key]
        else:
            matched = [queue for key, queue in self.bindings if topic_matches(key, routing_key)]
        return list(dict.fromkeys(matched))  # one copy per queue, however many bindings match


class Queue:
    """A queue: its arguments, the messages waiting in order, and its consumers served in turn."""

    def __init__(self, name: str, arguments: dict[str, HeaderValue]) -> None:
        self.name = name
        self.arguments = arguments
        self.ready: deque[QueuedMessage] = deque()
        self.consumers: list[Consumer] = []
        self.expiry: asyncio.TimerHandle | None = None
        self._turn = 0

    @property
    def is_quorum(self) -> bool:
        return self.arguments.get("x-queue-type") == "quorum"

    @property
    def delivery_limit(self) -> int | None:
        limit = self.arguments.get("x-delivery-limit")
        if not self.is_quorum or not isinstance(limit, int) or limit < 0:
            return None
        return limit

    @property
    def ttl_seconds(self) -> float | None:
        ttl = self.arguments.get("x-message-ttl")
        return None if ttl is None or isinstance(ttl, bool | str) else ttl / 1000

    @property
    def dead_letter_target(self) -> tuple[str, str | None] | None:
        """The exchange and routing key (None: the message's own) of what this queue discards."""
        exchange = self.arguments.get("x-dead-letter-exchange")
        if exchange is None:
            return None
        key = self.arguments.get("x-dead-letter-routing-key")
        return str(exchange), None if key is None else str(key)

    def next_consumer(self) -> Consumer | None:
        """The next consumer in turn with room under its prefetch, if any."""
        for step in range(len(self.consumers)):
            consumer = self.consumers[(self._turn + step) % len(self.consumers)]
            if len(consumer.unacked) < consumer.prefetch:
                self._turn = (self._turn + step + 1) % len(self.consumers)
                return consumer
        return None


class Consumer:
    """A subscriber of one queue, with the messages handed to it and not yet settled."""

    def __init__(
        self, queue: str, handler: MessageHandler, prefetch: int, context: contextvars.Context
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        # The handler runs in the context of whoever subscribed, not of whoever published.
        self.context = context
        self.unacked: dict[int, QueuedMessage] = {}
        self.open = True
        self.tasks: set[asyncio.Task[None]] = set()
