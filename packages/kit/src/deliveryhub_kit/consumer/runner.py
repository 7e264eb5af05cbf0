"""The inbox consumer: takes one queue's messages, applies each event once in one transaction with
its inbox row, in lanes and batches, and acks only after the commit.

What a message means is `decoding`'s; what becomes of one that fails is `policy`'s table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from deliveryhub_contracts.events import MalformedEvent
from deliveryhub_kit.broker import Broker, BrokerError, IncomingMessage, Subscription
from deliveryhub_kit.consumer.decoding import (
    DecodedMessage,
    Decoder,
    MessageTooLarge,
    Route,
    Routes,
    cloud_event_decoder,
)
from deliveryhub_kit.consumer.policy import FailurePolicy, Settlement
from deliveryhub_kit.context import continuing, correlated
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.failures import Failure, Verdict, classify
from deliveryhub_kit.inbox import InboxMessageMixin, record_in_inbox
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.tracing import exporting, message_span
from deliveryhub_kit.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)
_consumption = structlog.get_logger(__name__)

# Called once per batch, in its transaction, with the payloads about to be applied: a service reads
# (and locks) in one query what the batch's handlers will need, instead of one query each.
BatchPreparer = Callable[[UnitOfWork, Sequence[BaseModel]], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerOptions:
    """How a consumer takes and applies its messages; a service's come from its settings."""

    prefetch: int = 32
    batch_size: int = 1
    lanes: int = 1
    max_message_bytes: int = 1_048_576
    max_backoff_seconds: float = 5.0
    outage_hold_seconds: float = 10.0
    retry_delays: tuple[float, ...] = ()

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ConsumerOptions:
        return cls(
            prefetch=settings.consumer_prefetch,
            batch_size=settings.consumer_batch_size,
            lanes=settings.consumer_lanes,
            max_message_bytes=settings.max_message_bytes,
            outage_hold_seconds=settings.consumer_outage_hold_seconds,
            retry_delays=tuple(settings.retry_delays_seconds),
        )


@dataclass(frozen=True)
class _Pending:
    """A decoded message waiting for its batch; `settled` resolves when it is acked or moved."""

    message: IncomingMessage
    decoded: DecodedMessage
    route: Route[Any]
    settled: asyncio.Future[None]


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


def lane_of(subject: str, lanes: int) -> int:
    """The lane the events about `subject` take, of `lanes`: always the same one, so that they are
    applied in the order they came."""
    return zlib.crc32(subject.encode()) % lanes


class InboxConsumer:
    """Consumes one queue; side effects happen once per event id and the ack follows the commit.

    Every message ends in exactly one way, as `policy` decides (its table): applied and
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
        routes: Routes,
        decoder: Decoder | None = None,
        prepare_batch: BatchPreparer | None = None,
        options: ConsumerOptions | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        options = options or ConsumerOptions()
        self.name = name
        self.queue = queue
        self._database = database
        self._broker = broker
        self._inbox_model = inbox_model
        self._routes = routes
        self._decode = decoder or cloud_event_decoder(routes)
        self._options = options
        self._batch_size = max(1, options.batch_size)
        self._prepare_batch = prepare_batch
        # Each lane applies its batches one after the other; lanes run side by side. A subject
        # always takes the same lane, so the events about one order are applied in order.
        self._waiting: list[list[_Pending]] = [[] for _ in range(max(1, options.lanes))]
        self._batches: list[asyncio.Task[None] | None] = [None] * len(self._waiting)
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
        self._settlement = Settlement(
            name=name,
            queue=queue,
            dead_letter_queue=dead_letter_queue,
            broker=broker,
            policy=FailurePolicy(tuple(options.retry_delays)),
            keys=routes.keys(),
            metrics=self._metrics,
        )

    @property
    def dead_letter_queue(self) -> str:
        return self._settlement.dead_letter_queue

    async def start(self) -> None:
        self._subscription = await self._broker.consume(
            self.queue, self.handle, prefetch=self._options.prefetch
        )

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
            await self._settlement.give_back([message], "stopping" if self._stopping else "outage")
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
            await self._settlement.dead_letter(message, error)
            return
        pending = _Pending(message, decoded, route, asyncio.get_running_loop().create_future())
        lane = lane_of(decoded.subject or str(decoded.event_id), len(self._waiting))
        self._waiting[lane].append(pending)
        self._start_batch(lane)
        try:
            # Shielded: a handler cancelled at shutdown leaves its message to the batch that holds it.
            await asyncio.shield(pending.settled)
        except BrokerError as error:  # the channel went away: the broker hands the message out again
            logger.warning("%s: a message could not be settled: %s", self.name, error)
            return
        self._metrics.event_handling.labels(decoded.key).observe(time.perf_counter() - started)

    def _read(self, message: IncomingMessage) -> tuple[DecodedMessage, Route[Any]]:
        if len(message.body) > self._options.max_message_bytes:
            raise MessageTooLarge(
                f"the message is {len(message.body)} bytes, "
                f"more than the {self._options.max_message_bytes} bytes an event may have"
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
                    with self._handling(batch[0].decoded, exporting()):
                        await self._settlement.failed(batch[0].message, batch[0].decoded.key, error, failure)
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
        async with self._database.transaction() as work:
            fresh = await record_in_inbox(
                work, self._inbox_model, [(p.decoded.event_id, p.decoded.key) for p in batch]
            )
            for index, pending in enumerate(batch):
                if pending.decoded.event_id in fresh:
                    fresh.discard(pending.decoded.event_id)  # a copy later in the batch is a duplicate
                    applied.add(index)
            if self._prepare_batch is not None and len(applied) > 1:
                await self._prepare_batch(work, [batch[index].decoded.payload for index in applied])
            recording = exporting()  # once a batch: the tracer provider is looked up each time
            for index in sorted(applied):
                pending = batch[index]
                with self._handling(pending.decoded, recording):
                    await pending.route.apply(work, pending.decoded.payload)
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
        await self._settlement.give_back(
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
        await asyncio.sleep(self._options.outage_hold_seconds)
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
        await self._settlement.give_back([pending.message for pending in waiting], "outage")
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
            outage.probe_delay = min(max(0.5, outage.probe_delay * 2), self._options.max_backoff_seconds)
            await asyncio.sleep(outage.probe_delay)
            try:
                await asyncio.wait_for(self._database.probe(), timeout=self._options.max_backoff_seconds)
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
    def _handling(self, decoded: DecodedMessage, recording: bool) -> Iterator[None]:
        """The handling continues the trace and the correlation id of the request that caused it."""
        correlation_id = decoded.correlation_id or str(decoded.event_id)
        # Unrecorded, the event's trace is carried on without a span (the events written inside
        # continue it).
        span: AbstractContextManager[object] = (
            message_span(
                f"{self.queue} process", decoded.traceparent, SpanKind.CONSUMER, str(decoded.event_id)
            )
            if recording
            else continuing(decoded.traceparent)
        )
        with correlated(correlation_id, event_id=str(decoded.event_id), event_type=decoded.key), span:
            yield

    def _consumed(self, decoded: DecodedMessage, *, applied: bool) -> None:
        outcome = "applied" if applied else "duplicate"
        self._metrics.events_consumed.labels(decoded.key, outcome).inc()
        if logger.isEnabledFor(logging.INFO):
            # One line a message: written straight by structlog (deliveryhub_kit.logs), with the
            # ids a line inside `correlated` carries.
            _consumption.info(
                f"{self.name}: event {decoded.key} {outcome}",
                request_id=decoded.correlation_id or str(decoded.event_id),
                event_id=str(decoded.event_id),
                event_type=decoded.key,
            )


def _log_failure(task: asyncio.Future[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("resuming a consumer failed: %s", task.exception())
