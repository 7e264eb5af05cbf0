"""The moving parts of one service process, started and stopped together by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol

from typing_extensions import TypeVar

from deliveryhub_kit.broker import Broker, BrokerError, BrokerUnavailable, Topology
from deliveryhub_kit.consumer import InboxConsumer
from deliveryhub_kit.db import Database
from deliveryhub_kit.inbox import InboxMessageMixin, InboxPruner
from deliveryhub_kit.memory_broker import MemoryBroker, is_memory_url
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.migrations import head_revision
from deliveryhub_kit.outbox import OutboxMessageMixin, OutboxRelay
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.settings import ServiceSettings

logger = logging.getLogger(__name__)

# A service's runtime is typed by its own settings class: its consumers read their fields as they are.
S = TypeVar("S", bound=ServiceSettings, default=ServiceSettings)

ConsumerFactory = Callable[["ServiceRuntime[S]"], Sequence[InboxConsumer]]


def open_broker(settings: ServiceSettings) -> Broker:
    """The broker `AMQP_URL` names: RabbitMQ, or the in-process one for a `memory://` URL."""
    if is_memory_url(settings.amqp_url):
        return MemoryBroker(settings.amqp_url, name=settings.service_name)
    return RabbitBroker(
        settings.amqp_url,
        publish_timeout_seconds=settings.publish_timeout_seconds,
        name=settings.service_name,
    )


@dataclass(frozen=True)
class Wiring(Generic[S]):
    """What differs between services: their tables, their topology, consumers and migrations."""

    outbox_model: type[OutboxMessageMixin]
    inbox_model: type[InboxMessageMixin]
    topologies: Sequence[Topology]
    consumers: ConsumerFactory[S]
    migrations: Path | None = None


class Runtime(Protocol):
    """What the app's lifespan, health and routes need of a process's moving parts."""

    @property
    def settings(self) -> ServiceSettings: ...

    @property
    def database(self) -> Database: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def broker(self) -> Broker | None: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def consumers(self) -> Sequence[InboxConsumer]:
        """The process's consumers (none for a service that consumes nothing)."""

    @property
    def expected_revision(self) -> str | None:
        """The migration the database must be at to serve; None to not check."""

    @property
    def attached(self) -> bool:
        """The broker's topology is declared and the consumers run (False without a broker)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServiceRuntime(Generic[S]):
    """Database, broker, outbox relay and consumers of one service process."""

    def __init__(
        self,
        settings: S,
        wiring: Wiring[S],
        *,
        broker: Broker | None = None,
        database: Database | None = None,
    ) -> None:
        self.settings = settings
        self.wiring = wiring
        self.database = database or Database(
            settings.async_database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            timeout_seconds=settings.database_timeout_seconds,
        )
        self._broker: Broker = broker or open_broker(settings)
        self.metrics = Metrics()
        self.metrics.watch_pool(self.database.engine)
        self.expected_revision = head_revision(wiring.migrations) if wiring.migrations else None
        self.relay = OutboxRelay(
            self.database,
            self._broker,
            wiring.outbox_model,
            exchange=self.exchange,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
            retention_seconds=settings.outbox_retention_seconds,
            metrics=self.metrics,
        )
        self.inbox_pruner = InboxPruner(
            self.database, wiring.inbox_model, retention_seconds=settings.inbox_retention_seconds
        )
        self.consumers: Sequence[InboxConsumer] = ()
        # True once the topology is declared and the consumers run; the broker reconnects by itself after.
        self.attached = False
        self.stopping = False
        self._broker_task: asyncio.Task[None] | None = None

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def exchange(self) -> str:
        from deliveryhub_contracts.topology import Names

        return Names(self.settings.broker_prefix).exchange

    async def start(self) -> None:
        self.relay.start()
        self.inbox_pruner.start()
        # The API serves even while the broker is away: the outbox keeps the events meanwhile.
        self._broker_task = asyncio.create_task(self._attach_broker(), name="attach-broker")

    async def _attach_broker(self) -> None:
        """Connect, declare the topology and start the consumers; after any failure, let go of
        whatever the attempt had made and start over, until the service is attached or stops."""
        delay = 0.5
        while not self.stopping:
            consumers: list[InboxConsumer] = []
            try:
                await self.broker.connect()
                for topology in self.wiring.topologies:
                    await self.broker.declare(topology)
                consumers = list(self.wiring.consumers(self))
                for consumer in consumers:
                    await consumer.start()
            except BrokerUnavailable as error:
                logger.warning("broker not reachable (%s); trying again in %.1fs", error, delay)
            except BrokerError as error:
                # Refused (a user without the rights it needs, say): an operator must act; keep trying.
                logger.error("the broker refused this service (%s); trying again in %.1fs", error, delay)
            except Exception:  # a task that died here would leave the service unattached for good
                logger.exception("attaching to the broker failed; trying again in %.1fs", delay)
            else:
                self.consumers = consumers
                self.attached = True
                self.relay.wake()
                logger.info("%s attached to the broker", self.settings.service_name)
                return
            await self._let_go(consumers)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _let_go(self, consumers: Sequence[InboxConsumer]) -> None:
        """Close the connection (and the channels on it) and the consumers of a failed attempt."""
        await self.broker.close()
        for consumer in consumers:
            await consumer.stop(timeout_seconds=1.0)

    async def wait_until_attached(self) -> None:
        if self._broker_task is not None:
            await asyncio.shield(self._broker_task)

    async def stop(self) -> None:
        """Stop consuming, finish the relay's batch, close the broker and the database."""
        self.stopping = True
        if self._broker_task is not None and not self._broker_task.done():
            self._broker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._broker_task
        for consumer in self.consumers:
            await consumer.stop()
        await self.inbox_pruner.stop()
        await self.relay.stop()
        await self.broker.close()
        await self.database.dispose()
