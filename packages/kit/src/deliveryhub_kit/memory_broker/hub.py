"""The in-process stand-in for a RabbitMQ server: routing through exchanges to queues, consumers
served under their prefetch, settling, the queues' TTL and delivery limit, and dead-lettering."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, Literal

from deliveryhub_kit.broker import (
    BrokerError,
    BrokerUnavailable,
    HeaderValue,
    MessageHandler,
    OutgoingMessage,
    Topology,
    Unroutable,
)
from deliveryhub_kit.memory_broker.delivery import MemoryMessage
from deliveryhub_kit.memory_broker.queues import Consumer, Exchange, Queue, QueuedMessage
from deliveryhub_kit.memory_broker.store import Store

logger = logging.getLogger(__name__)

MEMORY_SCHEME = "memory://"
EXCHANGE_TYPES = ("topic", "direct", "fanout")
# How soon an expired message whose dead-letter target is missing is tried again.
UNROUTABLE_EXPIRY_RETRY_SECONDS = 1.0

Outcome = Literal["ack", "requeue", "dead-letter"]


def is_memory_url(url: str) -> bool:
    """Whether the broker URL names the in-process broker."""
    return url.startswith(MEMORY_SCHEME)


def store_path(url: str) -> Path | None:
    """The file a `memory://FILE` URL keeps its state in; None for `memory://` alone."""
    path = url.removeprefix(MEMORY_SCHEME)
    return Path(path) if path else None


class MemoryHub:
    """The in-process stand-in for a broker server: exchanges, queues, consumers and their store.

    Everything happens on the event loop of the process; build it inside that loop.
    """

    _shared: ClassVar[dict[str, MemoryHub]] = {}

    def __init__(self, path: Path | None = None) -> None:
        self._store = Store(path) if path is not None else None
        self._exchanges: dict[str, Exchange] = {}
        self._queues: dict[str, Queue] = {}
        self._clients = 0
        self._closed = False
        last_id = 0
        if self._store is not None:
            exchanges, queues, bindings, messages = self._store.load()
            self._exchanges = {name: Exchange(name, kind) for name, kind in exchanges}
            self._queues = {name: Queue(name, arguments) for name, arguments in queues}
            for exchange_name, key, queue_name in bindings:
                self._exchanges[exchange_name].bindings.append((key, queue_name))
            for message in messages:
                self._queues[message.queue].ready.append(message)
            last_id = self._store.last_id()
            for waiting in self._queues.values():
                self._schedule_expiry(waiting)
        self._ids = itertools.count(last_id + 1)

    @classmethod
    def attach(cls, url: str) -> MemoryHub:
        """The hub of `url` in this process, opened on first use; pair with `detach`."""
        path = store_path(url)
        key = str(path.resolve()) if path is not None else MEMORY_SCHEME
        hub = cls._shared.get(key)
        if hub is None:
            try:
                hub = cls(path)
            except (OSError, sqlite3.Error) as error:
                raise BrokerUnavailable(f"cannot open the in-process broker's {path}: {error}") from error
            cls._shared[key] = hub
        hub._clients += 1
        return hub

    @classmethod
    def detach(cls, hub: MemoryHub) -> None:
        """Let go of a hub from `attach`; the last one to let go closes it."""
        hub._clients -= 1
        if hub._clients <= 0:
            for key, shared in list(cls._shared.items()):
                if shared is hub:
                    del cls._shared[key]
            hub.close()

    def close(self) -> None:
        """Stop the countdowns and close the store; the messages stay in it for the next start."""
        self._closed = True
        for queue in self._queues.values():
            if queue.expiry is not None:
                queue.expiry.cancel()
        if self._store is not None:
            self._store.close()

    def declare(self, topology: Topology) -> None:
        for exchange in topology.exchanges:
            self._declare_exchange(exchange.name, exchange.type)
        for queue in topology.queues:
            arguments = dict(queue.arguments)
            if queue.delivery_limit is not None:
                arguments["x-delivery-limit"] = queue.delivery_limit
            self._declare_queue(queue.name, arguments)
            for exchange_name, key in queue.bindings:
                self._bind(queue.name, exchange_name, key)

    def _declare_exchange(self, name: str, kind: str) -> None:
        if kind not in EXCHANGE_TYPES:
            raise BrokerError(f"the in-process broker has no {kind!r} exchanges")
        known = self._exchanges.get(name)
        if known is not None:
            if known.type != kind:
                raise BrokerError(f"exchange {name!r} exists as a {known.type} exchange, not {kind}")
            return
        self._exchanges[name] = Exchange(name, kind)
        if self._store is not None:
            self._store.save_exchange(name, kind)

    def _declare_queue(self, name: str, arguments: dict[str, HeaderValue]) -> None:
        known = self._queues.get(name)
        if known is not None and known.arguments == arguments:
            return
        if known is None:
            self._queues[name] = Queue(name, arguments)
        else:
            # The code's declaration is the truth here (RabbitMQ would refuse the change).
            logger.info("queue %s declared with new arguments %s", name, arguments)
            known.arguments = arguments
        if self._store is not None:
            self._store.save_queue(name, arguments)

    def _bind(self, queue: str, exchange: str, key: str) -> None:
        target = self._exchanges.get(exchange)
        if target is None:
            raise BrokerError(f"cannot bind {queue!r} to {exchange!r}: there is no such exchange")
        if (key, queue) in target.bindings:
            return
        target.bindings.append((key, queue))
        if self._store is not None:
            self._store.save_binding(exchange, key, queue)

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        target = self._exchanges.get(exchange)
        if target is None:
            # As RabbitMQ closes the channel: not this message's fault, try again once declared.
            raise BrokerUnavailable(f"there is no exchange {exchange!r}")
        return target.route(routing_key)

    def publish(self, exchange: str, routing_key: str, message: OutgoingMessage) -> None:
        """Store a copy in each queue the message routes to, then hand those out; the return is
        the confirm."""
        self._require_open()
        queues = self._route(exchange, routing_key)
        if not queues:
            raise Unroutable(f"no queue is bound to {exchange or '(default)'}/{routing_key}")
        content = QueuedMessage(
            id=0,
            queue="",
            body=message.body,
            message_id=message.message_id,
            content_type=message.content_type,
            type=message.type,
            headers=dict(message.headers),
            exchange=exchange,
            routing_key=routing_key,
        )
        copies = [self._copy(content, queue) for queue in queues]
        self._write(added=copies)
        for copy in copies:
            self._enqueue(copy)

    def _copy(self, content: QueuedMessage, queue: str) -> QueuedMessage:
        """A new message in `queue` with the content of another, not yet handed out."""
        ttl = self._queues[queue].ttl_seconds
        return replace(
            content,
            id=next(self._ids),
            queue=queue,
            delivered=False,
            returns=0,
            expires_at=time.time() + ttl if ttl is not None else None,
        )

    def _enqueue(self, message: QueuedMessage) -> None:
        queue = self._queues[message.queue]
        queue.ready.append(message)
        self._dispatch(queue)

    def consume(
        self, queue: str, handler: MessageHandler, *, prefetch: int, context: contextvars.Context
    ) -> Consumer:
        self._require_open()
        if queue not in self._queues:
            raise BrokerError(f"there is no queue {queue!r} to consume")
        consumer = Consumer(queue, handler, max(prefetch, 1), context)
        self._queues[queue].consumers.append(consumer)
        self._dispatch(self._queues[queue])
        return consumer

    def cancel(self, consumer: Consumer) -> None:
        """Hand the consumer nothing more; it may still settle what it holds."""
        queue = self._queues.get(consumer.queue)
        if queue is not None and consumer in queue.consumers:
            queue.consumers.remove(consumer)

    def resume(self, consumer: Consumer) -> None:
        """Hand a cancelled consumer messages again."""
        queue = self._queues.get(consumer.queue)
        if queue is None or not consumer.open or consumer in queue.consumers:
            return
        queue.consumers.append(consumer)
        self._dispatch(queue)

    def close_consumer(self, consumer: Consumer) -> None:
        """End the subscription: what it still holds goes back to the head of its queue."""
        self.cancel(consumer)
        if not consumer.open:
            return
        consumer.open = False
        returned = sorted(consumer.unacked.values(), key=lambda message: message.id)
        consumer.unacked.clear()
        queue = self._queues[consumer.queue]
        for message in reversed(returned):
            self._return(queue, message, to_head=True)
        if not self._closed:
            self._dispatch(queue)

    def _return(self, queue: Queue, message: QueuedMessage, *, to_head: bool) -> None:
        """Put a message handed out back in its queue, counting the return in a quorum queue; past
        the queue's delivery limit it is dead-lettered instead."""
        if queue.is_quorum:
            message.returns += 1
        limit = queue.delivery_limit
        if limit is not None and message.returns > limit:
            if not self._dead_letter(queue, message, reason="delivery_limit"):
                logger.warning(
                    "a message of %s past its delivery limit had nowhere to go; dropped", queue.name
                )
                self._write(deleted=[message])
            return
        if self._store is not None:
            self._store.mark_returned(message)
        if to_head:
            queue.ready.appendleft(message)
        else:
            queue.ready.append(message)

    def settle(self, consumer: Consumer, message: QueuedMessage, outcome: Outcome) -> None:
        if not consumer.open:
            raise BrokerUnavailable("the subscription is closed; the message went back to its queue")
        if consumer.unacked.pop(message.id, None) is None:
            raise BrokerError(f"message {message.message_id} was settled already")
        queue = self._queues[message.queue]
        if outcome == "ack":
            self._write(deleted=[message])
        elif outcome == "requeue":
            # As RabbitMQ does: a quorum queue puts a requeued message behind those waiting, a
            # classic one back at the head.
            self._return(queue, message, to_head=not queue.is_quorum)
        elif not self._dead_letter(queue, message, reason="rejected"):
            # RabbitMQ drops it as well; say so at least.
            logger.warning("a rejected message of %s had nowhere to go and was dropped", queue.name)
            self._write(deleted=[message])
        self._dispatch(queue)

    def _dead_letter(self, queue: Queue, message: QueuedMessage, *, reason: str) -> bool:
        """Move the message to its queue's dead-letter target; False if there is none to take it."""
        target = queue.dead_letter_target
        if target is None:
            return False
        exchange, key = target
        routing_key = key if key is not None else message.routing_key
        try:
            targets = self._route(exchange, routing_key)
        except BrokerUnavailable:
            return False
        if not targets:
            return False
        headers = dict(message.headers)
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", queue.name)
        headers.setdefault("x-first-death-exchange", message.exchange)
        content = replace(message, headers=headers, exchange=exchange, routing_key=routing_key)
        copies = [self._copy(content, target_queue) for target_queue in targets]
        self._write(added=copies, deleted=[message])
        for copy in copies:
            self._enqueue(copy)
        return True

    def _dispatch(self, queue: Queue) -> None:
        """Dead-letter what has expired, then hand waiting messages to consumers with room."""
        self._expire_due(queue)
        while queue.ready:
            consumer = queue.next_consumer()
            if consumer is None:
                return
            self._hand_out(consumer, queue.ready.popleft())

    def _hand_out(self, consumer: Consumer, message: QueuedMessage) -> None:
        redelivered = message.delivered
        if not message.delivered:
            message.delivered = True
            if self._store is not None:
                self._store.mark_delivered(message.id)
        consumer.unacked[message.id] = message
        incoming = MemoryMessage(self, consumer, message, redelivered=redelivered)
        task = asyncio.get_running_loop().create_task(
            _handle(consumer, incoming), context=consumer.context.copy()
        )
        consumer.tasks.add(task)
        task.add_done_callback(consumer.tasks.discard)

    def _expire_due(self, queue: Queue) -> None:
        now = time.time()
        while queue.ready:
            head = queue.ready[0]
            if head.expires_at is None or head.expires_at > now:
                break
            queue.ready.popleft()
            if not self._dead_letter(queue, head, reason="expired"):
                # Kept until its target can take it, as RabbitMQ's at-least-once dead-lettering does.
                queue.ready.appendleft(head)
                self._schedule_expiry(queue, UNROUTABLE_EXPIRY_RETRY_SECONDS)
                return
        self._schedule_expiry(queue)

    def _schedule_expiry(self, queue: Queue, delay: float | None = None) -> None:
        if queue.expiry is not None:
            queue.expiry.cancel()
            queue.expiry = None
        if self._closed or not queue.ready or queue.ready[0].expires_at is None:
            return
        wait = delay if delay is not None else max(0.0, queue.ready[0].expires_at - time.time())
        queue.expiry = asyncio.get_running_loop().call_later(wait, self._dispatch_by_name, queue.name)

    def _dispatch_by_name(self, name: str) -> None:
        queue = self._queues.get(name)
        if queue is not None and not self._closed:
            queue.expiry = None
            self._dispatch(queue)

    def _write(self, *, added: Sequence[QueuedMessage] = (), deleted: Sequence[QueuedMessage] = ()) -> None:
        if self._store is not None:
            self._store.write(added, [message.id for message in deleted])

    def _require_open(self) -> None:
        if self._closed:
            raise BrokerUnavailable("the in-process broker is closed")

    def message_count(self, queue: str) -> int:
        """How many messages wait in `queue`, not counting those handed out."""
        known = self._queues.get(queue)
        return len(known.ready) if known is not None else 0

    def unsettled_count(self, queue: str) -> int:
        """How many messages of `queue` wait or are handed out and not yet acked or rejected."""
        known = self._queues.get(queue)
        if known is None:
            return 0
        return len(known.ready) + sum(len(consumer.unacked) for consumer in known.consumers)


async def _handle(consumer: Consumer, message: MemoryMessage) -> None:
    try:
        await consumer.handler(message)
    except Exception:  # the message stays in hand, as with RabbitMQ, until it is settled or closed
        logger.exception("a consumer of %s failed on a message", consumer.queue)
