"""The kit's `Broker` and `Subscription` on a `MemoryHub`: what a service uses in the embedded mode."""

from __future__ import annotations

import contextvars

from deliveryhub_kit.broker import BrokerUnavailable, MessageHandler, OutgoingMessage, Topology
from deliveryhub_kit.memory_broker.hub import MEMORY_SCHEME, MemoryHub
from deliveryhub_kit.memory_broker.queues import Consumer


class MemorySubscription:
    """A consumer's hold on a hub's queue, as the kit's `Subscription`."""

    def __init__(self, hub: MemoryHub, consumer: Consumer) -> None:
        self._hub = hub
        self._consumer = consumer

    async def cancel(self) -> None:
        self._hub.cancel(self._consumer)

    async def resume(self) -> None:
        self._hub.resume(self._consumer)

    async def close(self) -> None:
        self._hub.close_consumer(self._consumer)


class MemoryBroker:
    """The broker interface on a `MemoryHub`: what a service uses in the embedded mode."""

    def __init__(self, url: str = MEMORY_SCHEME, *, hub: MemoryHub | None = None, name: str = "") -> None:
        self._url = url
        self._given_hub = hub
        self._hub: MemoryHub | None = None
        self.name = name
        self._subscriptions: list[MemorySubscription] = []

    @property
    def connected(self) -> bool:
        return self._hub is not None

    @property
    def hub(self) -> MemoryHub:
        return self._require_hub()

    async def connect(self) -> None:
        if self._hub is None:
            self._hub = self._given_hub or MemoryHub.attach(self._url)

    async def close(self) -> None:
        hub, self._hub = self._hub, None
        if hub is None:
            return
        for subscription in self._subscriptions:
            await subscription.close()
        self._subscriptions.clear()
        if self._given_hub is None:
            MemoryHub.detach(hub)

    async def declare(self, topology: Topology) -> None:
        self._require_hub().declare(topology)

    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage) -> None:
        self._require_hub().publish(exchange, routing_key, message)

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> MemorySubscription:
        hub = self._require_hub()
        consumer = hub.consume(queue, handler, prefetch=prefetch, context=contextvars.copy_context())
        subscription = MemorySubscription(hub, consumer)
        self._subscriptions.append(subscription)
        return subscription

    def _require_hub(self) -> MemoryHub:
        if self._hub is None:
            raise BrokerUnavailable("not connected to the in-process broker")
        return self._hub
