"""A message the in-process broker hands to a consumer: the kit's `IncomingMessage` on a hub."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from deliveryhub_kit.memory_broker.queues import Consumer, QueuedMessage

if TYPE_CHECKING:
    from deliveryhub_kit.memory_broker.hub import MemoryHub


class MemoryMessage:
    """A message handed to a consumer of the in-process broker, as it stood when handed out."""

    def __init__(
        self, hub: MemoryHub, consumer: Consumer, message: QueuedMessage, *, redelivered: bool
    ) -> None:
        self._hub = hub
        self._consumer = consumer
        self._message = message
        self._redelivered = redelivered
        # Fixed at delivery, as RabbitMQ's header is: a later return counts toward the next one.
        self._returns = message.returns

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def headers(self) -> Mapping[str, object]:
        headers: dict[str, object] = dict(self._message.headers)
        if self._returns:
            headers["x-delivery-count"] = self._returns
        return headers

    @property
    def exchange(self) -> str:
        return self._message.exchange

    @property
    def routing_key(self) -> str:
        return self._message.routing_key

    @property
    def message_id(self) -> str | None:
        return self._message.message_id

    @property
    def content_type(self) -> str | None:
        return self._message.content_type

    @property
    def redelivered(self) -> bool:
        return self._redelivered

    @property
    def delivery_count(self) -> int:
        # What RabbitBroker reads: a quorum queue's count, else whether it was handed out before.
        return self._returns or int(self._redelivered)

    async def ack(self) -> None:
        self._hub.settle(self._consumer, self._message, "ack")

    async def requeue(self) -> None:
        self._hub.settle(self._consumer, self._message, "requeue")

    async def reject(self) -> None:
        self._hub.settle(self._consumer, self._message, "dead-letter")
