"""The broker as the tests see it: names of their own on the shared RabbitMQ, and their own side of it.

Every queue and exchange a test declares is named after the test's namespace and deleted at its end.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
    HeadersType,
)

from deliveryhub_contracts import topology as contract_topology
from deliveryhub_contracts.events import Envelope
from deliveryhub_contracts.topology import Names, QueueSpec, legacy_queues
from deliveryhub_kit.settings import DEFAULT_AMQP_URL, ServiceSettings
from tests.support.waiting import wait_for

AMQP_URL = os.environ.get("TEST_AMQP_URL", DEFAULT_AMQP_URL)


def _contract_queue_specs() -> list[QueueSpec]:
    return [value for value in vars(contract_topology).values() if isinstance(value, QueueSpec)]


@dataclass
class BrokerNamespace:
    """The broker names of one test; everything named here is deleted when the test ends."""

    prefix: str
    legacy_prefix: str
    extra_queues: list[str] = field(default_factory=list)
    # Delays of retry queues a test declares beyond the default ones.
    retry_delays: list[float] = field(default_factory=list)

    @classmethod
    def fresh(cls) -> BrokerNamespace:
        """Names no other test uses."""
        token = uuid.uuid4().hex[:12]
        return cls(prefix=f"t-{token}.", legacy_prefix=f"t-{token}-legacy_")

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def exchange(self) -> str:
        return self.names.exchange

    def queue(self, spec: QueueSpec) -> str:
        return self.names.queue(spec)

    def track_queue(self, name: str) -> str:
        """Have a queue the test declares itself deleted at the end."""
        self.extra_queues.append(name)
        return name

    def new_queue_name(self, label: str) -> str:
        return self.track_queue(f"{self.prefix}{label}-{uuid.uuid4().hex[:6]}")

    def queues(self) -> list[str]:
        consuming = [self.queue(spec) for spec in _contract_queue_specs()]
        consuming += [*legacy_queues(self.legacy_prefix), *self.extra_queues]
        delays = {*ServiceSettings.model_fields["retry_delays_seconds"].default, *self.retry_delays}
        return (
            consuming
            + [Names.dead_letter_queue(name) for name in consuming]
            + [Names.retry_queue(name, delay) for name in consuming for delay in delays]
        )

    def exchanges(self) -> list[str]:
        return [self.exchange]


async def delete_broker_names(namespace: BrokerNamespace) -> None:
    """Delete every queue and exchange the namespace may have declared."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel()
        for queue in namespace.queues():
            try:
                await channel.queue_delete(queue)
            except aiormq.exceptions.ChannelClosed:
                channel = await connection.channel()  # an error closes the channel
        for exchange in namespace.exchanges():
            try:
                await channel.exchange_delete(exchange)
            except aiormq.exceptions.ChannelClosed:
                channel = await connection.channel()
    finally:
        await connection.close()


class Tap:
    """A queue bound to the test's exchange that keeps a copy of what is published there."""

    def __init__(self, queue: AbstractQueue) -> None:
        self.queue = queue

    async def get(self) -> AbstractIncomingMessage | None:
        return await self.queue.get(no_ack=True, fail=False)

    async def take(
        self,
        count: int,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[AbstractIncomingMessage]:
        """The next `count` messages, failing if they do not arrive within `timeout`."""
        taken: list[AbstractIncomingMessage] = []
        for _ in range(count):
            taken.append(
                await wait_for(self.get, timeout=timeout, message=f"message {len(taken) + 1} of {count}")
            )
        return taken


class Amqp:
    """The test's own side of the broker: raw publishing, reading queues, tapping the exchange."""

    def __init__(self, connection: AbstractConnection, namespace: BrokerNamespace) -> None:
        self._connection = connection
        self.namespace = namespace
        self._channel: AbstractChannel | None = None

    async def channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str = "",
        message_id: str | None = None,
        headers: HeadersType | None = None,
        content_type: str | None = "application/json",
    ) -> None:
        """Publish as another client would; without `message_id` aio-pika makes up a random one."""
        channel = await self.channel()
        target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
        await target.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                headers=dict(headers or {}),
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key,
        )

    async def get(self, queue: str) -> AbstractIncomingMessage | None:
        """Take one message off `queue`, or None if it has none ready."""
        declared = await (await self.channel()).get_queue(queue, ensure=False)
        return await declared.get(no_ack=True, fail=False)

    async def message_count(self, queue: str) -> int:
        """How many messages wait in `queue`, ready to be delivered (not those a consumer holds)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        finally:
            await channel.close()
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def declare_exchange(self) -> None:
        """The test's events exchange, declared as the services declare it."""
        channel = await self.channel()
        await channel.declare_exchange(self.namespace.exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    async def tap(self, binding_key: str = "#") -> Tap:
        """A new queue that receives a copy of what the exchange routes by `binding_key`."""
        await self.declare_exchange()
        channel = await self.channel()
        name = self.namespace.new_queue_name("tap")
        queue = await channel.declare_queue(name, exclusive=True)
        await queue.bind(self.namespace.exchange, binding_key)
        return Tap(queue)


class PublishEvent(Protocol):
    async def __call__(self, envelope: Envelope) -> None: ...
