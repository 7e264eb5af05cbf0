"""Inbox consumer: decode, apply in one transaction with the inbox row, ack only after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_contracts.events import (
    TYPE_PREFIX,
    MalformedEvent,
    Payload,
    check_origin,
    parse_envelope,
    parse_payload,
)
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
from deliveryhub_kit.errors import DomainError
from deliveryhub_kit.failures import Failure, Verdict, classify
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


class MessageTooLarge(MalformedEvent):
    """The message is larger than any event this system sends; it is not even read."""


def cloud_event_decoder(routes: Mapping[str, EventRoute]) -> Decoder:
    """Decode a structured CloudEvent whose short type has a route and that its sender could send."""

    def decode(message: IncomingMessage) -> DecodedMessage:
        envelope = parse_envelope(message.body)
        check_origin(envelope, published_as(message))
        route = routes.get(envelope.routing_key) if envelope.type.startswith(TYPE_PREFIX) else None
        if route is None:
            raise MalformedEvent(f"no handler for event type {envelope.type[:100]!r}")
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


def published_as(message: IncomingMessage) -> str | None:
    """The routing key a message was published to the events exchange with, if known.

    A message that came back through the default exchange (from a delay queue, or replayed from the
    dead letters) carries the routing key it first had in a header; one that a producer put straight
    into the queue has none.
    """
    if message.exchange:
        return message.routing_key
    original = message.headers.get("x-original-routing-key")
    return original if isinstance(original, str) else None


def plain_json_decoder(key: str, payload_type: type[BaseModel], namespace: uuid.UUID) -> Decoder:
    """Decode a plain JSON message; without a message id, its content names it (uuid5)."""

    def decode(message: IncomingMessage) -> DecodedMessage:
        try:
            payload = payload_type.model_validate_json(message.body)
        except (ValidationError, RecursionError) as error:
            summary = (
                "; ".join(
                    f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
                    for item in error.errors(include_url=False)
                )
                if isinstance(error, ValidationError)
                else "nested too deeply"
            )
            raise MalformedEvent(f"invalid {key} message: {summary[:900]}") from error
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


# What of a message's own headers its moved copy keeps: an AMQP header frame holds at most 128 KiB,
# and a copy whose headers grew past that would take the consumer's connection down with it.
MAX_KEPT_HEADERS = 32
MAX_KEPT_HEADER_CHARS = 1024
_STORY_HEADERS = frozenset(
    {"x-first-failed-at", "x-original-routing-key", "x-attempts", "traceparent", "x-request-id"}
)


def _failure_headers(message: IncomingMessage, error: BaseException) -> dict[str, HeaderValue]:
    """The message's own (short) headers, with when it first and last failed and why, kept across
    retries."""
    headers: dict[str, HeaderValue] = {}
    own = message.headers
    # The story this system keeps comes first; a producer's other headers after, while there is room.
    for name in sorted(own, key=lambda name: name not in _STORY_HEADERS):
        value = own[name]
        if len(headers) >= MAX_KEPT_HEADERS:
            break
        if isinstance(value, str) and len(value) > MAX_KEPT_HEADER_CHARS:
            continue
        if isinstance(value, str | int | float | bool) and len(name) <= 128:
            headers[name] = value
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


@dataclass(frozen=True)
class ConsumerState:
    """What a consumer is doing, for readiness: taking messages, or paused and why."""

    queue: str
    paused: bool = False
    reason: str | None = None
    paused_since: datetime | None = None
    messages_held: int = 0


class _Outage:
    """One stretch of database trouble, from a batch that met it until a batch commits again."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        self.since = utcnow()
        self.started = time.monotonic()
        # The probe says the database takes writes again (cleared if work fails again anyway).
        self.answering = asyncio.Event()
        # Held long enough: what was in hand went back to the queue (once per outage).
        self.gave_back = asyncio.Event()
        self.probe_delay = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()


class InboxConsumer:
    """Consumes one queue; side effects happen once per event id and the ack follows the commit.

    Every message ends in exactly one way, as `deliveryhub_kit.failures` decides: applied and
    acked; held through a database outage and applied once a probe says the database answers again;
    sent to wait in a delay queue; or dead-lettered with its error class and reason.

    Through an outage the consumer applies nothing and holds what it has, up to its prefetch, so
    the broker sends no more; no message is returned, so no quorum queue counts a delivery. Only if
    the outage outlasts `outage_hold_seconds` does it stop consuming and give what it holds back to
    the queue, once, for consumers that can reach their database; it consumes again once the probe
    answers.
    """

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
        max_backoff_seconds: float = 5.0,
        outage_hold_seconds: float = 10.0,
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
        self._outage_hold = outage_hold_seconds
        self._outage: _Outage | None = None
        self._subscription: Subscription | None = None
        # False between giving back what was held and the database answering again.
        self._consuming = True
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._metrics = metrics or Metrics()
        self._retry_delays = tuple(retry_delays)

    async def start(self) -> None:
        self._subscription = await self._broker.consume(self.queue, self.handle, prefetch=self._prefetch)

    @property
    def state(self) -> ConsumerState:
        outage = self._outage
        if outage is None or outage.answering.is_set():
            return ConsumerState(self.queue)
        return ConsumerState(
            self.queue,
            paused=True,
            reason=outage.failure.cause,
            paused_since=outage.since,
            messages_held=0 if outage.gave_back.is_set() else self._in_flight,
        )

    async def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop taking messages, let the ones in hand finish, and return the rest to the queue."""
        if self._subscription is None:
            return
        subscription, self._subscription = self._subscription, None
        self._stopping = True
        self._stopped.set()  # messages held through an outage go back now
        if self._outage is not None:
            self._outage.close()
        await subscription.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_seconds)
        except TimeoutError:
            logger.warning("%s: %d messages still in hand at shutdown", self.name, self._in_flight)
        await subscription.close()

    async def handle(self, message: IncomingMessage) -> None:
        if self._stopping or not self._consuming:
            # Delivered as the consumer stopped, or cancelled for an outage: back to the queue.
            await self._give_back([message], "stopping" if self._stopping else "outage")
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
            decoded, route = self._read(message)
        except Exception as error:  # whatever the bytes did to the decoder, they end as a dead letter
            if not isinstance(error, MalformedEvent):
                logger.exception("%s: reading a message failed unexpectedly", self.name)
            await self.dead_letter(message, error)
            return
        pending = _Pending(message, decoded, route, asyncio.get_running_loop().create_future())
        lane = zlib.crc32((decoded.subject or str(decoded.event_id)).encode()) % len(self._waiting)
        self._waiting[lane].append(pending)
        self._start_batch(lane)
        try:
            # Shielded: a handler cancelled at shutdown leaves its message to the batch that holds it.
            await asyncio.shield(pending.settled)
        except BrokerError as error:  # the channel went away: the broker hands the message out again
            logger.warning("%s: a message could not be settled: %s", self.name, error)
            return
        self._metrics.event_handling.labels(decoded.key).observe(time.perf_counter() - started)

    def _read(self, message: IncomingMessage) -> tuple[DecodedMessage, EventRoute]:
        if len(message.body) > self._max_message_bytes:
            raise MessageTooLarge(
                f"the message is {len(message.body)} bytes, "
                f"more than the {self._max_message_bytes} bytes an event may have"
            )
        decoded = self._decode(message)
        route = self._routes.get(decoded.key)
        if route is None:
            raise MalformedEvent(f"no handler for {decoded.key!r}")
        return decoded, route

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
        message's failure is its own. Through a database outage the batch waits and is applied
        again (or goes back to the queue).
        """
        while True:
            try:
                applied = await self._apply_in_one_transaction(batch)
            except Exception as error:
                failure = classify(error)
                if failure.verdict is Verdict.OUTAGE:
                    if await self._ride_out(batch, failure):
                        continue  # the database answers again: the same messages once more
                    return  # given back to the queue
                if len(batch) == 1:
                    with self._handling(batch[0].decoded):
                        await self._failed(batch[0].message, batch[0].decoded, error, failure)
                else:
                    logger.info(
                        "%s: a batch of %d failed (%s); applying each alone", self.name, len(batch), error
                    )
                    for pending in batch:
                        await self._settle(pending, self._apply([pending]))
                return
            self._outage_over()
            self._metrics.consumer_batch_size.labels(self.queue).observe(len(batch))
            for index, pending in enumerate(batch):
                await self._settle(pending, self._acked(pending.message, pending.decoded, index in applied))
            return

    async def _apply_in_one_transaction(self, batch: list[_Pending]) -> set[int]:
        """Record the batch's events in the inbox and apply the new ones; the indexes applied."""
        applied: set[int] = set()
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
        return applied

    async def _ride_out(self, batch: list[_Pending], failure: Failure) -> bool:
        """Hold a batch through a database outage: True once the database answers (apply it
        again), False once it went back to the queue (the outage lasted, or the consumer stops)."""
        outage = self._paused_by(failure)
        for pending in batch:
            self._metrics.events_retried.labels(pending.decoded.key).inc()
        if self._consuming:
            waits = [outage.answering.wait(), self._stopped.wait()]
            # Taken after consuming again, within the same outage: held, not given back a second time.
            if not outage.gave_back.is_set():
                waits.append(outage.gave_back.wait())
            tasks = [asyncio.ensure_future(wait) for wait in waits]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
            if outage.answering.is_set() and not self._stopping:
                return True
        # Given back: the consumer gave back what it held (this batch was still on its way) or stops.
        await self._give_back(
            [pending.message for pending in batch], "stopping" if self._stopping else "outage"
        )
        for pending in batch:
            _resolve(pending.settled)
        return False

    def _paused_by(self, failure: Failure) -> _Outage:
        """Apply nothing more and probe the database until it answers; the outage under way."""
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(failure)
            logger.warning(
                "%s: %s; applying nothing, holding what is in hand (%d), until the database answers",
                self.name,
                failure.cause,
                self._in_flight,
            )
            if not self._stopping:
                outage.tasks.add(asyncio.create_task(self._give_back_when_held_too_long(outage)))
        elif outage.answering.is_set():
            # The probe said yes, yet the work failed again (out of disk, say): wait once more.
            outage.answering.clear()
            outage.failure = failure
            logger.warning("%s: %s again; waiting for the database once more", self.name, failure.cause)
        else:
            return outage
        self._metrics.consumer_paused.labels(self.queue).set(1)
        if not self._stopping:
            outage.tasks.add(asyncio.create_task(self._probe_until_answering(outage)))
        return outage

    async def _give_back_when_held_too_long(self, outage: _Outage) -> None:
        """Once an outage has lasted `outage_hold_seconds`, stop consuming and let what is held go
        to consumers that can reach their database."""
        await asyncio.sleep(self._outage_hold)
        if outage.answering.is_set() or self._outage is not outage:
            return
        self._consuming = False
        if self._subscription is not None:
            with contextlib.suppress(BrokerError):
                await self._subscription.cancel()
        waiting = [pending for lane in self._waiting for pending in lane]
        for lane in self._waiting:
            lane.clear()
        outage.gave_back.set()  # the batches held wake and give themselves back
        await self._give_back([pending.message for pending in waiting], "outage")
        for pending in waiting:
            _resolve(pending.settled)
        logger.warning(
            "%s: the outage has lasted %.0fs; what was held went back to the queue",
            self.name,
            time.monotonic() - outage.started,
        )

    async def _probe_until_answering(self, outage: _Outage) -> None:
        """Probe the database with a growing pause; once it takes writes, carry on."""
        while not self._stopping:
            outage.probe_delay = min(max(0.5, outage.probe_delay * 2), self._max_backoff)
            await asyncio.sleep(outage.probe_delay)
            try:
                await asyncio.wait_for(self._database.probe(), timeout=self._max_backoff)
            except Exception as error:  # any failure: not yet
                outage.failure = classify(error)
                logger.info("%s: the database does not answer yet (%s)", self.name, outage.failure.cause)
                continue
            if not await self._consume_again():
                continue
            outage.answering.set()
            self._metrics.consumer_paused.labels(self.queue).set(0)
            logger.info(
                "%s: the database answers again after %.1fs; carrying on",
                self.name,
                time.monotonic() - outage.started,
            )
            return

    async def _consume_again(self) -> bool:
        """Take messages again if an outage had stopped it; False if the broker will not yet."""
        if self._consuming or self._subscription is None:
            return True
        # Set first: the broker's first deliveries can come in before the consume call returns.
        self._consuming = True
        try:
            await self._subscription.resume()
        except BrokerError as error:
            self._consuming = False
            logger.warning("%s: cannot consume again yet: %s", self.name, error)
            return False
        return True

    def _outage_over(self) -> None:
        """A batch committed: whatever outage there was is over."""
        outage, self._outage = self._outage, None
        if outage is None:
            return
        outage.close()
        if not outage.answering.is_set():
            # Committed before the probe said so (another lane was luckier): carry on now.
            outage.answering.set()
            self._metrics.consumer_paused.labels(self.queue).set(0)
            resumed = asyncio.ensure_future(self._consume_again())
            resumed.add_done_callback(_log_failure)

    async def _give_back(self, messages: Sequence[IncomingMessage], reason: str) -> None:
        """Return unsettled messages to their queue (the broker hands them out again)."""
        for message in messages:
            self._metrics.messages_returned.labels(self.queue, reason).inc()
            with contextlib.suppress(BrokerError):
                await message.requeue()

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
        self._metrics.delivery_counts.labels(self.queue).observe(message.delivery_count)
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

    async def _failed(
        self, message: IncomingMessage, decoded: DecodedMessage, error: Exception, failure: Failure
    ) -> None:
        """Retry a message that failed for a passing cause; dead-letter one that cannot succeed."""
        if failure.verdict is Verdict.RETRY:
            self._metrics.events_retried.labels(decoded.key).inc()
            await self._retry_later(message, error, decoded.key)
            return
        if not isinstance(error, DomainError | ValueError) and not failure.from_database:
            logger.exception("%s: unexpected failure applying %s", self.name, decoded.event_id)
        await self.dead_letter(message, error, key=decoded.key)

    async def _retry_later(self, message: IncomingMessage, error: BaseException, key: str) -> None:
        """Send the message to wait in the next delay queue; after the last one, dead-letter it."""
        attempt = _int_header(message, "x-attempts") + 1
        if attempt > len(self._retry_delays):
            await self.dead_letter(message, error, key=key)
            return
        delay = self._retry_delays[attempt - 1]
        headers = _failure_headers(message, error)
        headers["x-attempts"] = attempt
        logger.warning("%s: %s; retrying %s in %ss (attempt %d)", self.name, error, key, delay, attempt)
        await self._move(message, Names.retry_queue(self.queue, delay), headers)

    async def dead_letter(
        self, message: IncomingMessage, error: BaseException, *, key: str | None = None
    ) -> None:
        """Park the message in the dead-letter queue with why, then ack the original."""
        # Only the keys this consumer handles name a series: a stranger's routing key must not.
        series = key if key in self._routes else "unknown"
        self._metrics.events_dead_lettered.labels(series, type(error).__name__).inc()
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
        logger.error(
            "%s: dead-lettering a message: %s: %s", self.name, type(error).__name__, str(error)[:300]
        )
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
            # Not moved, so not acked: after a pause (not to spin on a broker in trouble) it goes back
            # to the queue; the broker's delivery limit is the backstop if this never succeeds.
            logger.error("%s: could not move a message to %s: %s", self.name, queue, publish_error)
            await asyncio.sleep(1.0)
            await self._give_back([message], "move failed")
            return
        await message.ack()
        self._metrics.delivery_counts.labels(self.queue).observe(message.delivery_count)


def _log_failure(task: asyncio.Future[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("resuming a consumer failed: %s", task.exception())
