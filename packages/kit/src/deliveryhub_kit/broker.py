"""The small interface services use to reach a message broker: confirmed publish, acked consume."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

HeaderValue = str | int | float | bool


@dataclass(frozen=True)
class OutgoingMessage:
    """A persistent message to publish."""

    body: bytes
    message_id: str
    content_type: str = "application/json"
    type: str | None = None
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)


class IncomingMessage(Protocol):
    """A delivered message; exactly one of `ack`, `requeue` or `reject` settles it."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, object]: ...
    @property
    def exchange(self) -> str:
        """The exchange it was published (or dead-lettered) to; "" for the default exchange."""

    @property
    def routing_key(self) -> str: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def redelivered(self) -> bool: ...
    @property
    def delivery_count(self) -> int:
        """How often the queue handed it out before and had it back (0 on its first delivery)."""

    async def ack(self) -> None: ...

    async def requeue(self) -> None:
        """Give it back to its queue, for this or another consumer (a classic queue puts it at the
        head, a quorum queue behind the messages waiting)."""

    async def reject(self) -> None:
        """Refuse it: the queue dead-letters it to its own dead-letter target (or drops it)."""


MessageHandler = Callable[[IncomingMessage], Awaitable[None]]


@dataclass(frozen=True)
class ExchangeDeclaration:
    name: str
    type: str = "topic"


@dataclass(frozen=True)
class QueueDeclaration:
    name: str
    arguments: Mapping[str, HeaderValue] = field(default_factory=dict)
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)
    # For a quorum queue: after this many returns the broker dead-letters a message itself (the
    # backstop of a consumer that never settles it). None: no limit, however the broker spells it.
    delivery_limit: int | None = None


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[ExchangeDeclaration, ...] = ()
    queues: tuple[QueueDeclaration, ...] = ()


class BrokerError(Exception):
    """Base of broker failures."""


class BrokerUnavailable(BrokerError):
    """No connection to the broker now; the same call may succeed later."""


class Unroutable(BrokerError):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class PublishRejected(BrokerError):
    """The broker refused to take responsibility for the message (a negative confirm)."""


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop receiving new messages; those in hand can still be settled."""

    async def resume(self) -> None:
        """Receive messages again after `cancel`, on the same terms."""

    async def close(self) -> None:
        """Give up the subscription; unsettled messages go back to the queue."""


class Broker(Protocol):
    """What the services need of a broker: RabbitMQ, or the in-process one of the embedded mode."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def declare(self, topology: Topology) -> None:
        """Create the exchanges, queues and bindings, idempotently; again on every reconnect."""

    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage) -> None:
        """Publish persistently and mandatorily; return only once the broker has confirmed it."""

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> Subscription:
        """Hand each message of `queue` to `handler`, at most `prefetch` unsettled at a time."""
