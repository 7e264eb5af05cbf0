"""The broker interface on RabbitMQ, with aio-pika's robust connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ConsumerTag,
)

from deliveryhub_kit.amqp_properties import read_any_properties
from deliveryhub_kit.broker import (
    BrokerError,
    BrokerUnavailable,
    HeaderValue,
    MessageHandler,
    OutgoingMessage,
    PublishRejected,
    QueueDeclaration,
    Subscription,
    Topology,
    Unroutable,
)

logger = logging.getLogger(__name__)

# What the client library raises when a line, a channel or the broker goes away mid-operation.
_LINE_ERRORS = (OSError, aiormq.exceptions.AMQPError, RuntimeError)  # OSError: timeouts, resets too

# aiormq hands the frames of each publish to its connection's writer task through a queue of 10; a
# publish that finds it full waits for the writer while holding the channel's lock, and every
# publish behind it then takes a turn of the event loop to get the lock. A relay batch of 200 took
# about 190 turns: in a process busy serving HTTP (a turn of 8 ms or more), 1.6-2.1 s a batch,
# while the outbox grew. With room for a whole batch, the publishes of a batch go out in one turn.
PUBLISH_FRAME_BUFFER = 10_000  # the largest OUTBOX_BATCH_SIZE
aiormq.Connection.FRAME_BUFFER_SIZE = max(aiormq.Connection.FRAME_BUFFER_SIZE, PUBLISH_FRAME_BUFFER)


class RabbitMessage:
    """An aio-pika delivery behind the `IncomingMessage` interface."""

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def headers(self) -> Mapping[str, object]:
        return dict(self._message.headers or {})

    @property
    def exchange(self) -> str:
        return self._message.exchange or ""

    @property
    def routing_key(self) -> str:
        return self._message.routing_key or ""

    @property
    def message_id(self) -> str | None:
        return self._message.message_id

    @property
    def content_type(self) -> str | None:
        return self._message.content_type

    @property
    def redelivered(self) -> bool:
        return bool(self._message.redelivered)

    @property
    def delivery_count(self) -> int:
        # Quorum queues count returns in a header; a classic queue only knows "redelivered".
        counted = (self._message.headers or {}).get("x-delivery-count")
        if isinstance(counted, int) and not isinstance(counted, bool):
            return counted
        return 1 if self._message.redelivered else 0

    # Settled without waiting for the frame to reach the socket: under load that wait is a turn of
    # a busy event loop per message. A settlement lost with the connection is harmless: the
    # broker delivers the message again, and the inbox knows it.
    async def ack(self) -> None:
        with _settling("ack"):
            await self._message.channel.basic_ack(self._delivery_tag(), wait=False)

    async def requeue(self) -> None:
        # basic.nack, not basic.reject: from RabbitMQ 4.3 a quorum queue counts a rejected return
        # toward its delivery limit and a nacked one not (earlier versions count both).
        with _settling("requeue"):
            await self._message.channel.basic_nack(self._delivery_tag(), requeue=True, wait=False)

    async def reject(self) -> None:
        with _settling("reject"):
            await self._message.channel.basic_reject(self._delivery_tag(), requeue=False, wait=False)

    def _delivery_tag(self) -> int:
        tag = self._message.delivery_tag
        assert tag is not None, "a consumed message has a delivery tag"
        return tag


@contextmanager
def _settling(what: str) -> Iterator[None]:
    """A message whose channel has closed cannot be settled: the broker hands it out again."""
    try:
        yield
    except _LINE_ERRORS as error:
        raise BrokerUnavailable(f"cannot {what} the message: its channel is closed ({error!r})") from error


class RabbitSubscription:
    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: aio_pika.abc.AbstractQueue,
        on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
        *,
        timeout_seconds: float,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._on_message = on_message
        self._timeout = timeout_seconds
        self._tag: ConsumerTag | None = None

    async def start(self) -> None:
        try:
            self._tag = await asyncio.wait_for(self._queue.consume(self._on_message), self._timeout)
        except _LINE_ERRORS as error:
            raise BrokerUnavailable(f"consuming {self._queue.name} failed: {error!r}") from error

    async def cancel(self) -> None:
        tag, self._tag = self._tag, None
        if tag is None:
            return
        try:
            await asyncio.wait_for(self._queue.cancel(tag), self._timeout)
        except _LINE_ERRORS as error:
            logger.debug("cancelling consumer %s: %r", tag, error)

    async def resume(self) -> None:
        if self._tag is None:
            await self.start()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._channel.close(), self._timeout)
        except _LINE_ERRORS as error:
            logger.debug("closing the channel of consumer %s: %r", self._queue.name, error)


class RabbitBroker:
    """Publishes on one confirmed channel; each consumer gets a channel of its own.

    Every exchange with the broker but a consumer's messages has a deadline (`operation_timeout_seconds`):
    a line that drops while a channel opens or a queue is declared leaves the client library
    waiting for an answer that will not come, and the caller is told the broker is unavailable
    instead of waiting for ever.
    """

    def __init__(
        self,
        url: str,
        *,
        publish_timeout_seconds: float = 10.0,
        operation_timeout_seconds: float = 10.0,
        name: str = "deliveryhub",
    ) -> None:
        self._url = url
        self._publish_timeout = publish_timeout_seconds
        self._timeout = operation_timeout_seconds
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._topologies: list[Topology] = []
        self._server_version: tuple[int, ...] = ()

    @property
    def connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def connect(self) -> None:
        """Connect and open the publishing channel; a connection that fails halfway is closed."""
        read_any_properties()
        await self.close()
        # Made here rather than by aio_pika.connect_robust, so that a connection whose opening
        # fails can still be closed: left alone, it would go on reconnecting unseen.
        connection = aio_pika.RobustConnection(
            aio_pika.connection.make_url(self._url), client_properties={"connection_name": self._name}
        )
        try:
            await asyncio.wait_for(connection.connect(timeout=self._timeout), self._timeout)
            channel = await asyncio.wait_for(
                connection.channel(publisher_confirms=True, on_return_raises=True), self._timeout
            )
        except _LINE_ERRORS as error:
            await _close_quietly(connection, self._timeout)
            raise BrokerUnavailable(f"cannot connect to RabbitMQ: {error!r}") from error
        except BaseException:
            await _close_quietly(connection, self._timeout)
            raise
        assert isinstance(channel, AbstractRobustChannel)
        self._connection, self._publish_channel = connection, channel
        self._read_server_version()
        connection.reconnect_callbacks.add(self._on_reconnect)

    @property
    def server_version(self) -> tuple[int, ...]:
        """The version of the RabbitMQ server connected to, e.g. (4, 0, 5); () if unknown."""
        return self._server_version

    def _read_server_version(self) -> None:
        transport = self._connection.transport if self._connection is not None else None
        properties = transport.connection.server_properties if transport is not None else {}
        version = properties.get("version") if isinstance(properties, dict) else None
        text = version.decode() if isinstance(version, bytes) else str(version or "")
        numbers = [part for part in text.split("+")[0].split("-")[0].split(".") if part.isdigit()]
        self._server_version = tuple(int(part) for part in numbers)

    async def _on_reconnect(self, *_: object) -> None:
        # The broker may have lost non-durable state or been replaced: declare everything again.
        self._read_server_version()
        for topology in self._topologies:
            try:
                await asyncio.wait_for(self._declare(topology), self._timeout)
            except _LINE_ERRORS as error:
                logger.warning("declaring the topology again after a reconnect failed: %r", error)

    async def close(self) -> None:
        connection, self._connection, self._publish_channel = self._connection, None, None
        if connection is not None:
            await _close_quietly(connection, self._timeout)

    async def declare(self, topology: Topology) -> None:
        try:
            await asyncio.wait_for(self._declare(topology), self._timeout)
        except aiormq.exceptions.ChannelAccessRefused as error:
            raise BrokerError(f"the broker refused to declare the topology: {error}") from error
        except _LINE_ERRORS as error:
            raise BrokerUnavailable(f"declaring the topology failed: {error!r}") from error
        if topology not in self._topologies:
            self._topologies.append(topology)

    async def _declare(self, topology: Topology) -> None:
        connection = self._require_connection()
        channels = [await connection.channel()]
        try:
            for exchange in topology.exchanges:
                await channels[-1].declare_exchange(
                    exchange.name, aio_pika.ExchangeType(exchange.type), durable=True
                )
            for queue in topology.queues:
                try:
                    declared = await channels[-1].declare_queue(
                        queue.name, durable=True, arguments=self.queue_arguments(queue)
                    )
                except aiormq.exceptions.ChannelPreconditionFailed as error:
                    # Declared earlier with other arguments (RabbitMQ cannot change them in place):
                    # keep the queue as it is rather than stop; an operator policy can set the rest.
                    logger.error(
                        "queue %s exists with other arguments than this version declares; it is used as "
                        "it is (%s). Set its delivery limit by policy, or delete it once drained.",
                        queue.name,
                        error,
                    )
                    channels.append(await connection.channel())  # the refusal closed the channel
                    declared = await channels[-1].declare_queue(queue.name, passive=True)
                for exchange_name, routing_key in queue.bindings:
                    await declared.bind(exchange_name, routing_key)
        finally:
            for channel in channels:
                if not channel.is_closed:
                    await channel.close()

    def queue_arguments(self, queue: QueueDeclaration) -> dict[str, HeaderValue]:
        """A declaration's arguments as this server reads them."""
        arguments = dict(queue.arguments)
        if arguments.get("x-queue-type") == "quorum":
            if queue.delivery_limit is not None:
                arguments["x-delivery-limit"] = queue.delivery_limit
            elif self._server_version >= (4,):
                # From 4.0 a quorum queue limits deliveries to 20 unless told -1 (no limit); earlier
                # versions have no default, and take -1 as "dead-letter at once".
                arguments["x-delivery-limit"] = -1
        return arguments

    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage) -> None:
        channel = self._publish_channel
        if channel is None or not self.connected or channel.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        amqp_message = aio_pika.Message(
            body=message.body,
            message_id=message.message_id,
            content_type=message.content_type,
            type=message.type,
            headers=dict(message.headers),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            # aiormq's own publish, which can skip waiting for its frames to reach the socket: that
            # wait holds the channel's lock across a turn of the event loop, so a batch of publishes
            # would take a turn each. The confirm awaited here is what says the broker has it.
            underlay = await channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)
            await underlay.basic_publish(
                amqp_message.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=amqp_message.properties,
                mandatory=True,
                timeout=self._publish_timeout,
                wait=False,
            )
        except aiormq.exceptions.PublishError as error:
            raise Unroutable(f"no queue is bound to {exchange or '(default)'}/{routing_key}") from error
        except aiormq.exceptions.DeliveryError as error:
            raise PublishRejected(f"the broker refused {routing_key}: {error}") from error
        except _LINE_ERRORS as error:
            raise BrokerUnavailable(f"publishing {routing_key} failed: {error!r}") from error

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> Subscription:
        connection = self._require_connection()
        try:
            channel = await asyncio.wait_for(connection.channel(), self._timeout)
            assert isinstance(channel, AbstractRobustChannel)
            await asyncio.wait_for(channel.set_qos(prefetch_count=prefetch), self._timeout)
            declared = await asyncio.wait_for(channel.get_queue(queue, ensure=True), self._timeout)
        except aiormq.exceptions.ChannelNotFoundEntity as error:
            raise BrokerError(f"there is no queue {queue!r} to consume") from error
        except aiormq.exceptions.ChannelAccessRefused as error:
            raise BrokerError(f"the broker refused consuming {queue}: {error}") from error
        except _LINE_ERRORS as error:
            raise BrokerUnavailable(f"opening a channel to consume {queue} failed: {error!r}") from error

        async def on_message(message: AbstractIncomingMessage) -> None:
            await handler(RabbitMessage(message))

        subscription = RabbitSubscription(channel, declared, on_message, timeout_seconds=self._timeout)
        await subscription.start()
        return subscription

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None or self._connection.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        return self._connection


async def _close_quietly(connection: AbstractRobustConnection, timeout_seconds: float) -> None:
    """Close a connection, whatever state its line is in; it stops reconnecting either way."""
    try:
        await asyncio.wait_for(connection.close(), timeout_seconds)
    except _LINE_ERRORS as error:
        logger.debug("closing the connection to RabbitMQ: %r", error)
