"""What the outbox writes, and how the relay marks rows by what the broker answered."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from deliveryhub_contracts.events import DELIVERY_SOURCE, DeliveryCanceled, parse_envelope, parse_payload
from deliveryhub_delivery.models import OutboxMessage
from deliveryhub_kit.broker import (
    BrokerError,
    BrokerUnavailable,
    MessageHandler,
    OutgoingMessage,
    PublishRejected,
    Subscription,
    Topology,
    Unroutable,
)
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.outbox import Outbox, OutboxRelay, WaitingEvent
from deliveryhub_kit.unit_of_work import UnitOfWork


class ScriptedBroker:
    """Answers each publish as scripted for its routing key, and keeps what was confirmed."""

    def __init__(self, failures: dict[str, BrokerError] | None = None, *, connected: bool = True) -> None:
        self.failures = failures or {}
        self._connected = connected
        self.confirmed: list[tuple[str, str, OutgoingMessage]] = []

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def declare(self, topology: Topology) -> None:
        return None

    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage) -> None:
        if routing_key in self.failures:
            raise self.failures[routing_key]
        self.confirmed.append((exchange, routing_key, message))

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> Subscription:
        raise AssertionError("the relay never consumes")


_ids = iter(range(1, 1_000_000))


def outbox_row(routing_key: str, *, attempts: int = 0) -> WaitingEvent:
    return WaitingEvent(
        id=next(_ids),
        event_id=uuid.uuid4(),
        routing_key=routing_key,
        body='{"specversion": "1.0"}',
        attempts=attempts,
        traceparent=None,
        correlation_id=None,
    )


def relay_over(broker: ScriptedBroker) -> OutboxRelay:
    # The engine connects lazily; these tests never reach the database.
    database = Database("postgresql+asyncpg://unused@127.0.0.1:1/unused")
    return OutboxRelay(database, broker, OutboxMessage, exchange="deliveryhub.events")


def test_an_emitted_event_is_a_pending_outbox_row_holding_a_cloud_event() -> None:
    writing: list[bool] = []
    work = UnitOfWork(start_writing=lambda: writing.append(True))
    order_id = uuid.uuid4()

    Outbox(work, OutboxMessage, DELIVERY_SOURCE).emit(
        DeliveryCanceled(order_id=order_id, reason="out of stock", version=2), subject=str(order_id)
    )

    assert work.pending.emitted
    assert writing == [True]  # the database is told to write pending rows from now on
    ((table, (row,)),) = work.pending.take().items()
    assert table is OutboxMessage.__table__
    assert row["routing_key"] == "delivery.canceled"
    assert "published_at" not in row
    envelope = parse_envelope(str(row["body"]).encode())
    assert envelope.id == row["event_id"]
    assert envelope.source == "/delivery"
    assert envelope.subject == str(order_id)
    assert parse_payload(envelope, DeliveryCanceled) == DeliveryCanceled(
        order_id=order_id, reason="out of stock", version=2
    )


async def test_confirmed_rows_are_marked_published_in_order() -> None:
    broker = ScriptedBroker()
    rows = [outbox_row("delivery.appointed"), outbox_row("delivery.finished")]

    round_ = await relay_over(broker).publish(rows)

    assert round_.published == [row.id for row in rows]
    assert round_.refused == []
    assert [message.message_id for _, _, message in broker.confirmed] == [str(row.event_id) for row in rows]
    assert [(exchange, key) for exchange, key, _ in broker.confirmed] == [
        ("deliveryhub.events", "delivery.appointed"),
        ("deliveryhub.events", "delivery.finished"),
    ]


@pytest.mark.parametrize(
    "failure", [Unroutable("no queue is bound"), PublishRejected("nack")], ids=["unroutable", "rejected"]
)
async def test_a_refused_row_waits_longer_each_attempt_and_says_why(failure: BrokerError) -> None:
    broker = ScriptedBroker({"delivery.canceled": failure})
    refused = outbox_row("delivery.canceled", attempts=2)
    fine = outbox_row("delivery.finished")
    before = utcnow()

    round_ = await relay_over(broker).publish([refused, fine])

    assert round_.published == [fine.id]
    [marked] = round_.refused
    assert marked.id == refused.id
    assert marked.attempts == 3
    assert marked.last_error == f"{type(failure).__name__}: {failure}"
    assert marked.next_attempt_at >= before + timedelta(seconds=8)


async def test_a_row_met_by_a_lost_connection_stays_as_it_was() -> None:
    broker = ScriptedBroker({"delivery.canceled": BrokerUnavailable("connection lost")})
    row = outbox_row("delivery.canceled")

    round_ = await relay_over(broker).publish([row])

    assert round_.published == []
    assert round_.refused == []  # nothing is written: the row waits as it was


async def test_nothing_is_published_while_the_broker_is_disconnected() -> None:
    broker = ScriptedBroker(connected=False)
    row = outbox_row("delivery.canceled")

    with pytest.raises(BrokerUnavailable):
        await relay_over(broker).publish([row])

    assert broker.confirmed == []
