"""The broker interface in process: RabbitMQ's routing, acks and dead-lettering within one process.

`deliveryhub up --embedded` runs the services in one process on this broker, named by the URL
`memory://FILE` in `AMQP_URL`. Brokers opened on the same URL in one process share one
`MemoryHub`, which stands in for the RabbitMQ server: the same exchanges, queues and messages.

What it keeps of RabbitMQ's meaning: topic, direct and fanout exchanges with their bindings (in a
topic key `*` is one word and `#` any number of words; one copy per queue however many of its
bindings match); the default exchange `""`, which routes to the queue named by the routing key; a
mandatory publish that no queue is bound for raises `Unroutable`; consumers with a prefetch limit,
served in turn; ack, requeue (delivered again with `redelivered` set: a quorum queue puts it
behind the messages waiting, a classic queue back at the head) and reject, which dead-letters the
message to the queue's `x-dead-letter-exchange` / `x-dead-letter-routing-key` (or drops it) as a
new message there, with the `x-first-death-*` headers; a queue's `x-message-ttl`, after which a
waiting message is dead-lettered the same way (the delay queues of the consumers' retries); a
subscription that closes gives the messages in its hands back to the head of the queue; and, as a
quorum queue of RabbitMQ 3.x and 4.0 to 4.2 does, every return to a quorum queue (a requeue, a
closed subscription) counts in the message's `x-delivery-count` header, and past the queue's
`x-delivery-limit` the message is dead-lettered instead; a classic queue counts nothing, so its
`delivery_count` only says whether the message was handed out before. Where RabbitMQ versions
differ it does as 3.x does: a dead letter carries no count from the queue it left (RabbitMQ 4
carries a rejection's count into a quorum target), and it gets no `x-last-death-*` headers. Not
kept: the `x-death` header. Other queue arguments (overflow, dead-letter strategy) are accepted
and ignored.

Durability: with a FILE, the exchanges, queues, bindings and messages live in that SQLite file,
written before each call returns. A publish is confirmed once its copies are stored, an ack
deletes the message, and a process that starts again on the same file finds every message that
was not acked due again (marked redelivered if it had been handed out), every binding in place
before any service declares it again, and each delay queue's countdown where it stood. With
`memory://` alone, nothing outlives the last broker that closes.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

from deliveryhub_contracts.topology import topic_matches
from deliveryhub_kit.broker import (
    BrokerError,
    BrokerUnavailable,
    HeaderValue,
    MessageHandler,
    OutgoingMessage,
    Topology,
    Unroutable,
)

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


@dataclass
class _Message:
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
class _Exchange:
    name: str
    type: str
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (binding key, queue)

    def route(self, routing_key: str) -> list[str]:
        if self.type == "fanout":
            matched = [queue for _, queue in self.bindings]
        elif self.type == "direct":
            matched = [queue for key, queue in self.bindings if key == routing_key]
        else:
            matched = [queue for key, queue in self.bindings if topic_matches(key, routing_key)]
        return list(dict.fromkeys(matched))  # one copy per queue, however many bindings match


class _Queue:
    def __init__(self, name: str, arguments: dict[str, HeaderValue]) -> None:
        self.name = name
        self.arguments = arguments
        self.ready: deque[_Message] = deque()
        self.consumers: list[_Consumer] = []
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

    def next_consumer(self) -> _Consumer | None:
        """The next consumer in turn with room under its prefetch, if any."""
        for step in range(len(self.consumers)):
            consumer = self.consumers[(self._turn + step) % len(self.consumers)]
            if len(consumer.unacked) < consumer.prefetch:
                self._turn = (self._turn + step + 1) % len(self.consumers)
                return consumer
        return None


class _Consumer:
    def __init__(
        self, queue: str, handler: MessageHandler, prefetch: int, context: contextvars.Context
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        # The handler runs in the context of whoever subscribed, not of whoever published.
        self.context = context
        self.unacked: dict[int, _Message] = {}
        self.open = True
        self.tasks: set[asyncio.Task[None]] = set()


class MemoryMessage:
    """A message handed to a consumer of the in-process broker, as it stood when handed out."""

    def __init__(self, hub: MemoryHub, consumer: _Consumer, message: _Message, *, redelivered: bool) -> None:
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


class MemorySubscription:
    def __init__(self, hub: MemoryHub, consumer: _Consumer) -> None:
        self._hub = hub
        self._consumer = consumer

    async def cancel(self) -> None:
        self._hub.cancel(self._consumer)

    async def resume(self) -> None:
        self._hub.resume(self._consumer)

    async def close(self) -> None:
        self._hub.close_consumer(self._consumer)


class MemoryHub:
    """The in-process stand-in for a broker server: exchanges, queues, consumers and their store.

    Everything happens on the event loop of the process; build it inside that loop.
    """

    _shared: ClassVar[dict[str, MemoryHub]] = {}

    def __init__(self, path: Path | None = None) -> None:
        self._store = _Store(path) if path is not None else None
        self._exchanges: dict[str, _Exchange] = {}
        self._queues: dict[str, _Queue] = {}
        self._clients = 0
        self._closed = False
        last_id = 0
        if self._store is not None:
            exchanges, queues, bindings, messages = self._store.load()
            self._exchanges = {name: _Exchange(name, kind) for name, kind in exchanges}
            self._queues = {name: _Queue(name, arguments) for name, arguments in queues}
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
        self._exchanges[name] = _Exchange(name, kind)
        if self._store is not None:
            self._store.save_exchange(name, kind)

    def _declare_queue(self, name: str, arguments: dict[str, HeaderValue]) -> None:
        known = self._queues.get(name)
        if known is not None and known.arguments == arguments:
            return
        if known is None:
            self._queues[name] = _Queue(name, arguments)
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
        content = _Message(
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

    def _copy(self, content: _Message, queue: str) -> _Message:
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

    def _enqueue(self, message: _Message) -> None:
        queue = self._queues[message.queue]
        queue.ready.append(message)
        self._dispatch(queue)

    def consume(
        self, queue: str, handler: MessageHandler, *, prefetch: int, context: contextvars.Context
    ) -> _Consumer:
        self._require_open()
        if queue not in self._queues:
            raise BrokerError(f"there is no queue {queue!r} to consume")
        consumer = _Consumer(queue, handler, max(prefetch, 1), context)
        self._queues[queue].consumers.append(consumer)
        self._dispatch(self._queues[queue])
        return consumer

    def cancel(self, consumer: _Consumer) -> None:
        """Hand the consumer nothing more; it may still settle what it holds."""
        queue = self._queues.get(consumer.queue)
        if queue is not None and consumer in queue.consumers:
            queue.consumers.remove(consumer)

    def resume(self, consumer: _Consumer) -> None:
        """Hand a cancelled consumer messages again."""
        queue = self._queues.get(consumer.queue)
        if queue is None or not consumer.open or consumer in queue.consumers:
            return
        queue.consumers.append(consumer)
        self._dispatch(queue)

    def close_consumer(self, consumer: _Consumer) -> None:
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

    def _return(self, queue: _Queue, message: _Message, *, to_head: bool) -> None:
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

    def settle(self, consumer: _Consumer, message: _Message, outcome: Outcome) -> None:
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

    def _dead_letter(self, queue: _Queue, message: _Message, *, reason: str) -> bool:
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

    def _dispatch(self, queue: _Queue) -> None:
        """Dead-letter what has expired, then hand waiting messages to consumers with room."""
        self._expire_due(queue)
        while queue.ready:
            consumer = queue.next_consumer()
            if consumer is None:
                return
            self._hand_out(consumer, queue.ready.popleft())

    def _hand_out(self, consumer: _Consumer, message: _Message) -> None:
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

    def _expire_due(self, queue: _Queue) -> None:
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

    def _schedule_expiry(self, queue: _Queue, delay: float | None = None) -> None:
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

    def _write(self, *, added: Sequence[_Message] = (), deleted: Sequence[_Message] = ()) -> None:
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


async def _handle(consumer: _Consumer, message: MemoryMessage) -> None:
    try:
        await consumer.handler(message)
    except Exception:  # the message stays in hand, as with RabbitMQ, until it is settled or closed
        logger.exception("a consumer of %s failed on a message", consumer.queue)


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


class _Store:
    """A hub's exchanges, queues, bindings and messages in an SQLite file.

    Each call is one short local transaction, made in line: the file then changes in the very
    order the hub does, and a publish returns only once its message is written.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS exchanges (name TEXT PRIMARY KEY, type TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, arguments TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS bindings (
            exchange TEXT NOT NULL, binding_key TEXT NOT NULL, queue TEXT NOT NULL,
            PRIMARY KEY (exchange, binding_key, queue)
        );
        CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, properties TEXT NOT NULL,
            exchange TEXT NOT NULL, routing_key TEXT NOT NULL, delivered INTEGER NOT NULL,
            expires_at REAL
        );
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        # A write survives the process at once (not the machine: this is a development mode).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(self.SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def load(
        self,
    ) -> tuple[
        list[tuple[str, str]],
        list[tuple[str, dict[str, HeaderValue]]],
        list[tuple[str, str, str]],
        list[_Message],
    ]:
        db = self._db
        exchanges = [(str(name), str(kind)) for name, kind in db.execute("SELECT name, type FROM exchanges")]
        queues = [
            (str(name), json.loads(arguments)) for name, arguments in db.execute("SELECT * FROM queues")
        ]
        bindings = [
            (str(exchange), str(key), str(queue))
            for exchange, key, queue in db.execute("SELECT exchange, binding_key, queue FROM bindings")
        ]
        messages = [
            _Message(
                id=row[0],
                queue=row[1],
                body=bytes(row[2]),
                message_id=properties.get("message_id"),
                content_type=properties.get("content_type"),
                type=properties.get("type"),
                headers=properties.get("headers") or {},
                exchange=row[4],
                routing_key=row[5],
                delivered=bool(row[6]),
                expires_at=row[7],
                returns=int(properties.get("returns") or 0),
            )
            for row in db.execute(
                "SELECT id, queue, body, properties, exchange, routing_key, delivered, expires_at "
                "FROM messages ORDER BY id"
            )
            for properties in (json.loads(row[3]),)
        ]
        return exchanges, queues, bindings, messages

    def last_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    def save_exchange(self, name: str, kind: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO exchanges VALUES (?, ?)", (name, kind))

    def save_queue(self, name: str, arguments: Mapping[str, HeaderValue]) -> None:
        self._db.execute("INSERT OR REPLACE INTO queues VALUES (?, ?)", (name, json.dumps(dict(arguments))))

    def save_binding(self, exchange: str, key: str, queue: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO bindings VALUES (?, ?, ?)", (exchange, key, queue))

    def write(self, added: Sequence[_Message], deleted: Sequence[int]) -> None:
        """Add and delete messages in one transaction: a move between queues is all or nothing."""
        with self._transaction() as db:
            db.executemany("DELETE FROM messages WHERE id = ?", [(message_id,) for message_id in deleted])
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        message.id,
                        message.queue,
                        message.body,
                        _properties(message),
                        message.exchange,
                        message.routing_key,
                        int(message.delivered),
                        message.expires_at,
                    )
                    for message in added
                ],
            )

    def mark_delivered(self, message_id: int) -> None:
        self._db.execute("UPDATE messages SET delivered = 1 WHERE id = ?", (message_id,))

    def mark_returned(self, message: _Message) -> None:
        self._db.execute(
            "UPDATE messages SET properties = ? WHERE id = ?", (_properties(message), message.id)
        )

    def close(self) -> None:
        self._db.close()


def _properties(message: _Message) -> str:
    return json.dumps(
        {
            "message_id": message.message_id,
            "content_type": message.content_type,
            "type": message.type,
            "headers": message.headers,
            "returns": message.returns,
        }
    )
