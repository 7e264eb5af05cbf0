"""Inbox consumer: decode, apply in one transaction with the inbox row, ack only after commit."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_contracts.events import MalformedEvent, Payload, parse_envelope, parse_payload
from deliveryhub_contracts.topology import Names
from deliveryhub_kit.broker import (
    Broker,
    BrokerError,
    HeaderValue,
    IncomingMessage,
    OutgoingMessage,
    Subscription,
)
from deliveryhub_kit.context import correlated, trace_context
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.errors import DomainError, is_database_unavailable
from deliveryhub_kit.inbox import InboxMessageMixin, record_in_inbox
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.tracing import tracer

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Route(Generic[P]):
    """How to apply one kind of event: its payload type and the function that applies it."""

    payload_type: type[P]
    apply: Callable[[AsyncSession, P], Awaitable[None]]

    async def __call__(self, session: AsyncSession, payload: BaseModel) -> None:
        assert isinstance(payload, self.payload_type)
        await self.apply(session, payload)


def route(payload_type: type[P], apply: Callable[[AsyncSession, P], Awaitable[None]]) -> EventRoute:
    """A route for events whose payload is `payload_type`."""
    return Route(payload_type, apply)


class EventRoute(Protocol):
    """Any route, whatever its payload type."""

    @property
    def payload_type(self) -> type[BaseModel]: ...

    async def __call__(self, session: AsyncSession, payload: BaseModel) -> None: ...


@dataclass(frozen=True)
class DecodedMessage:
    event_id: uuid.UUID
    key: str
    payload: BaseModel
    traceparent: str | None = None
    correlation_id: str | None = None
    # What the event is about (an order's id): events about one subject are applied in order.
    subject: str | None = None


Decoder = Callable[[IncomingMessage], DecodedMessage]

# Called once per batch, in its transaction, with the payloads about to be applied: a service reads
# (and locks) in one query what the batch's handlers will need, instead of one query each.
BatchPreparer = Callable[[AsyncSession, Sequence[BaseModel]], Awaitable[None]]


@dataclass(frozen=True)
class _Pending:
    """A decoded message waiting for its batch; `settled` resolves when it is acked or moved."""

    message: IncomingMessage
    decoded: DecodedMessage
    route: EventRoute
    settled: asyncio.Future[None]


class RetryLater(Exception):
    """A handler cannot apply the event yet, for a reason that will pass."""


class MessageTooLarge(MalformedEvent):
    """The message is larger than any event this system sends; it is not even read."""


def cloud_event_decoder(routes: Mapping[str, EventRoute]) -> Decoder:
    """Decode a structured CloudEvent whose short type has a route."""

    def decode(message: IncomingMessage) -> DecodedMessage:
        envelope = parse_envelope(message.body)
        route = routes.get(envelope.routing_key)
        if route is None:
            raise MalformedEvent(f"no handler for event type {envelope.type!r}")
        payload_type = route.payload_type
        if not issubclass(payload_type, Payload):
            raise MalformedEvent(f"route {envelope.routing_key} has no event payload type")
        return DecodedMessage(
            envelope.id,
            envelope.routing_key,
            parse_payload(envelope, payload_type),
            traceparent=envelope.traceparent,
            correlation_id=envelope.correlationid,
            subject=envelope.subject,
        )

    return decode


def plain_json_decoder(key: str, payload_type: type[BaseModel], namespace: uuid.UUID) -> Decoder:
    """Decode a plain JSON message; without a message id, its content names it (uuid5)."""

    def decode(message: IncomingMessage) -> DecodedMessage:
        try:
            payload = payload_type.model_validate_json(message.body)
        except ValidationError as error:
            raise MalformedEvent(f"invalid {key} message: {error.errors(include_url=False)}") from error
        event_id = _message_uuid(message.message_id) or uuid.uuid5(namespace, message.body.hex())
        return DecodedMessage(
            event_id,
            key,
            payload,
            traceparent=_header(message, "traceparent"),
            correlation_id=_header(message, "x-request-id"),
        )

    return decode


def _int_header(message: IncomingMessage, name: str) -> int:
    value = message.headers.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _failure_headers(message: IncomingMessage, error: BaseException) -> dict[str, HeaderValue]:
    """The message's own headers, with when it first and last failed and why, kept across retries."""
    headers: dict[str, HeaderValue] = {
        name: value for name, value in message.headers.items() if isinstance(value, str | int | float | bool)
    }
    now = utcnow().isoformat()
    headers.setdefault("x-first-failed-at", now)
    headers.setdefault("x-original-routing-key", message.routing_key)
    headers["x-last-failed-at"] = now
    headers["x-last-error"] = f"{type(error).__name__}: {error}"[:1000]
    return headers


def _header(message: IncomingMessage, name: str) -> str | None:
    value = message.headers.get(name)
    return value if isinstance(value, str) else None


def _message_uuid(message_id: str | None) -> uuid.UUID | None:
    if not message_id:
        return None
    try:
        return uuid.UUID(message_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, message_id)


def _resolve(future: asyncio.Future[None], error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, RetryLater):
        return True
    # Deadlocks and serialization failures succeed when run again.
    code = getattr(getattr(error, "orig", None), "sqlstate", None) or getattr(
        getattr(error, "orig", None), "pgcode", None
    )
    # A unique violation means a concurrent handler created the record first: look again.
    return isinstance(error, sa_exc.DBAPIError) and code in {"40001", "40P01", "23505"}


class InboxConsumer:
    """Consumes one queue; side effects happen once per event id and the ack follows the commit."""

    def __init__(
        self,
        *,
        name: str,
        queue: str,
        dead_letter_queue: str,
        database: Database,
        broker: Broker,
        inbox_model: type[InboxMessageMixin],
        routes: Mapping[str, EventRoute],
        decoder: Decoder | None = None,
        prefetch: int = 32,
        batch_size: int = 1,
        prepare_batch: BatchPreparer | None = None,
        lanes: int = 1,
        max_message_bytes: int = 1_048_576,
        max_backoff_seconds: float = 15.0,
        retry_delays: Sequence[float] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue
        self._database = database
        self._broker = broker
        self._inbox_model = inbox_model
        self._routes = routes
        self._decode = decoder or cloud_event_decoder(routes)
        self._prefetch = prefetch
        self._batch_size = max(1, batch_size)
        self._prepare_batch = prepare_batch
        # Each lane applies its batches one after the other; lanes run side by side. A subject
        # always takes the same lane, so the events about one order are applied in order.
        self._waiting: list[list[_Pending]] = [[] for _ in range(max(1, lanes))]
        self._batches: list[asyncio.Task[None] | None] = [None] * len(self._waiting)
        self._max_message_bytes = max_message_bytes
        self._max_backoff = max_backoff_seconds
        self._failing_since: float | None = None
        self._subscription: Subscription | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._metrics = metrics or Metrics()
        self._retry_delays = tuple(retry_delays)

    async def start(self) -> None:
        self._subscription = await self._broker.consume(self.queue, self.handle, prefetch=self._prefetch)

    async def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop taking messages, let the ones in hand finish, and return the rest to the queue."""
        if self._subscription is None:
            return
        subscription, self._subscription = self._subscription, None
        self._stopping = True
        await subscription.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_seconds)
        except TimeoutError:
            logger.warning("%s: %d messages still in hand at shutdown", self.name, self._in_flight)
        await subscription.close()

    async def handle(self, message: IncomingMessage) -> None:
        if self._stopping:
            await message.reject(requeue=True)
            return
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _handle(self, message: IncomingMessage) -> None:
        started = time.perf_counter()
        try:
            if len(message.body) > self._max_message_bytes:
                raise MessageTooLarge(
                    f"the message is {len(message.body)} bytes, "
                    f"more than the {self._max_message_bytes} bytes an event may have"
                )
            decoded = self._decode(message)
            route = self._routes.get(decoded.key)
            if route is None:
                raise MalformedEvent(f"no handler for {decoded.key!r}")
        except MalformedEvent as error:
            await self.dead_letter(message, error)
            return
        pending = _Pending(message, decoded, route, asyncio.get_running_loop().create_future())
        lane = zlib.crc32((decoded.subject or str(decoded.event_id)).encode()) % len(self._waiting)
        self._waiting[lane].append(pending)
        self._start_batch(lane)
        # Shielded: a handler cancelled at shutdown leaves its message to the batch that holds it.
        await asyncio.shield(pending.settled)
        self._metrics.event_handling.labels(decoded.key).observe(time.perf_counter() - started)

    def _start_batch(self, lane: int) -> None:
        """Apply what waits in a lane, a batch at a time: what arrives meanwhile forms the next one."""
        waiting = self._waiting[lane]
        if self._batches[lane] is not None or not waiting:
            return
        batch, self._waiting[lane] = waiting[: self._batch_size], waiting[self._batch_size :]
        self._batches[lane] = asyncio.get_running_loop().create_task(self._run_batch(lane, batch))

    async def _run_batch(self, lane: int, batch: list[_Pending]) -> None:
        try:
            await self._apply(batch)
        except Exception as error:  # settling failed (the channel closed): the broker keeps them
            for pending in batch:
                _resolve(pending.settled, error)
        finally:
            self._batches[lane] = None
            for pending in batch:  # cancelled at shutdown: unacked, so the broker keeps them
                _resolve(pending.settled)
            self._start_batch(lane)

    async def _apply(self, batch: list[_Pending]) -> None:
        """Apply messages in one transaction with their inbox rows, then ack each.

        Each message still ends on its own: applied and acked, retried or dead-lettered. When a
        batch's transaction fails, each of its messages is applied again alone, so that one
        message's failure is its own.
        """
        applied: set[int] = set()
        try:
            async with self._database.transaction() as session:
                fresh = await record_in_inbox(
                    session, self._inbox_model, [(p.decoded.event_id, p.decoded.key) for p in batch]
                )
                for index, pending in enumerate(batch):
                    if pending.decoded.event_id in fresh:
                        fresh.discard(pending.decoded.event_id)  # a copy later in the batch is a duplicate
                        applied.add(index)
                if self._prepare_batch is not None and len(applied) > 1:
                    await self._prepare_batch(session, [batch[index].decoded.payload for index in applied])
                for index in sorted(applied):
                    pending = batch[index]
                    with self._handling(pending.decoded):
                        await pending.route(session, pending.decoded.payload)
        except Exception as error:
            if is_database_unavailable(error):
                # An outage is nobody's message's fault: keep them, neither acked nor dead-lettered.
                for pending in batch:
                    self._metrics.events_retried.labels(pending.decoded.key).inc()
                await self._hold_and_requeue_all([pending.message for pending in batch], error)
            elif len(batch) == 1:
                with self._handling(batch[0].decoded):
                    await self._failed(batch[0].message, batch[0].decoded, error)
            else:
                logger.info(
                    "%s: a batch of %d failed (%s); applying each alone", self.name, len(batch), error
                )
                for pending in batch:
                    await self._settle(pending, self._apply([pending]))
            return
        self._failing_since = None
        self._metrics.consumer_batch_size.labels(self.queue).observe(len(batch))
        for index, pending in enumerate(batch):
            await self._settle(pending, self._acked(pending.message, pending.decoded, index in applied))

    @staticmethod
    async def _settle(pending: _Pending, outcome: Awaitable[None]) -> None:
        """Await what ends one message; its handler sees the error if ending it failed."""
        try:
            await outcome
        except Exception as error:
            _resolve(pending.settled, error)
        else:
            _resolve(pending.settled)

    async def _acked(self, message: IncomingMessage, decoded: DecodedMessage, applied: bool) -> None:
        await message.ack()
        self._consumed(decoded, applied=applied)

    @contextmanager
    def _handling(self, decoded: DecodedMessage) -> Iterator[None]:
        """The handling continues the trace and the correlation id of the request that caused it."""
        correlation_id = decoded.correlation_id or str(decoded.event_id)
        with (
            correlated(correlation_id, event_id=str(decoded.event_id), event_type=decoded.key),
            tracer().start_as_current_span(
                f"{self.queue} process",
                context=trace_context(decoded.traceparent),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "rabbitmq", "messaging.message.id": str(decoded.event_id)},
            ),
        ):
            yield

    def _consumed(self, decoded: DecodedMessage, *, applied: bool) -> None:
        outcome = "applied" if applied else "duplicate"
        self._metrics.events_consumed.labels(decoded.key, outcome).inc()
        if logger.isEnabledFor(logging.INFO):
            correlation_id = decoded.correlation_id or str(decoded.event_id)
            with correlated(correlation_id, event_id=str(decoded.event_id), event_type=decoded.key):
                logger.info("%s: event %s %s", self.name, decoded.key, outcome)

    async def _failed(self, message: IncomingMessage, decoded: DecodedMessage, error: Exception) -> None:
        """Retry a message that failed for a passing cause; dead-letter one that cannot succeed."""
        if _is_transient(error):
            self._metrics.events_retried.labels(decoded.key).inc()
            await self._retry_later(message, error, decoded.key)
        else:
            if not isinstance(error, DomainError | ValueError | sa_exc.SQLAlchemyError):
                logger.exception("%s: unexpected failure applying %s", self.name, decoded.event_id)
            await self.dead_letter(message, error, key=decoded.key)

    async def _retry_later(self, message: IncomingMessage, error: BaseException, key: str) -> None:
        """Send the message to wait in the next delay queue; after the last one, dead-letter it."""
        if not self._retry_delays:
            await self._hold_and_requeue_all([message], error)
            return
        attempt = _int_header(message, "x-attempts") + 1
        if attempt > len(self._retry_delays):
            await self.dead_letter(message, error, key=key)
            return
        delay = self._retry_delays[attempt - 1]
        headers = _failure_headers(message, error)
        headers["x-attempts"] = attempt
        logger.warning("%s: %s; retrying %s in %ss (attempt %d)", self.name, error, key, delay, attempt)
        await self._move(message, Names.retry_queue(self.queue, delay), headers)

    async def _hold_and_requeue_all(self, messages: Sequence[IncomingMessage], error: BaseException) -> None:
        """Return the messages to the queue after a pause that grows while the cause persists."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        # The pause grows with how long the cause has lasted, not with how many messages in hand met it.
        delay = min(max(0.5, now - self._failing_since), self._max_backoff)
        logger.warning(
            "%s: %s, returning %d message(s) to the queue in %.1fs", self.name, error, len(messages), delay
        )
        await asyncio.sleep(delay)
        for message in messages:
            await message.reject(requeue=True)

    async def dead_letter(
        self, message: IncomingMessage, error: BaseException, *, key: str | None = None
    ) -> None:
        """Park the message in the dead-letter queue with why, then ack the original."""
        self._metrics.events_dead_lettered.labels(
            key or message.routing_key or "unknown", type(error).__name__
        ).inc()
        headers = _failure_headers(message, error)
        headers.update(
            {
                "x-death-reason": str(error)[:1000],
                "x-error-class": type(error).__name__,
                "x-attempts": _int_header(message, "x-attempts") + 1,
                "x-original-queue": self.queue,
                "x-failed-at": headers["x-last-failed-at"],
            }
        )
        logger.error("%s: dead-lettering a message: %s: %s", self.name, type(error).__name__, error)
        await self._move(message, self.dead_letter_queue, headers)

    async def _move(self, message: IncomingMessage, queue: str, headers: dict[str, HeaderValue]) -> None:
        """Publish a copy to `queue` and, once the broker confirms it, ack the original."""
        try:
            await self._broker.publish(
                "",
                queue,
                OutgoingMessage(
                    body=message.body,
                    message_id=message.message_id or str(uuid.uuid4()),
                    content_type=message.content_type or "application/octet-stream",
                    headers=headers,
                ),
            )
        except BrokerError as publish_error:
            # Not moved, so not acked: the broker hands it out again.
            logger.error("%s: could not move a message to %s: %s", self.name, queue, publish_error)
            await message.reject(requeue=True)
            return
        await message.ack()
