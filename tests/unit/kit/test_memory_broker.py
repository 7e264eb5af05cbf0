"""What only the in-process broker has: its settling rules, its file across a restart, its shared hubs.

What it shares with RabbitMQ is checked against both in tests/integration/kit/test_broker_contract.py.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deliveryhub_kit.broker import (
    BrokerError,
    BrokerUnavailable,
    ExchangeDeclaration,
    IncomingMessage,
    OutgoingMessage,
    QueueDeclaration,
    Subscription,
    Topology,
)
from deliveryhub_kit.memory_broker import MemoryBroker, MemoryHub, store_path
from deliveryhub_kit.runtime import open_broker
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.topology import QUORUM
from tests.support.waiting import WaitFor

EXCHANGE = "events"
WORK = "work"
DEAD = "work.dead-letter"
DELAY = "work.retry.200ms"

# A consuming queue with its dead-letter queue, and a delay queue that sends back to it: the shape
# `deliveryhub_kit.topology` declares.
TOPOLOGY = Topology(
    exchanges=(ExchangeDeclaration(EXCHANGE),),
    queues=(
        QueueDeclaration(DEAD),
        QueueDeclaration(
            DELAY,
            arguments={"x-message-ttl": 200, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": WORK},
        ),
        QueueDeclaration(
            WORK,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": DEAD},
            bindings=((EXCHANGE, "order.*"),),
        ),
    ),
)


def message(text: str, **headers: str | int) -> OutgoingMessage:
    return OutgoingMessage(body=text.encode(), message_id=text, headers=headers)


@dataclass
class Inbox:
    """A consumer's hands: what it received, in order; it settles nothing unless told."""

    received: list[IncomingMessage] = field(default_factory=list)

    async def __call__(self, incoming: IncomingMessage) -> None:
        self.received.append(incoming)

    def bodies(self) -> list[str]:
        return [incoming.body.decode() for incoming in self.received]


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    connected = MemoryBroker(hub=MemoryHub())
    await connected.connect()
    await connected.declare(TOPOLOGY)
    yield connected
    await connected.close()


async def consume(broker: MemoryBroker, queue: str, *, prefetch: int = 10) -> tuple[Inbox, Subscription]:
    inbox = Inbox()
    return inbox, await broker.consume(queue, inbox, prefetch=prefetch)


async def test_a_closed_broker_refuses_to_publish() -> None:
    closed = MemoryBroker(hub=MemoryHub())

    assert not closed.connected
    with pytest.raises(BrokerUnavailable):
        await closed.publish(EXCHANGE, "order.created", message("too early"))


async def test_a_message_settles_once_and_not_after_its_subscription_closed(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    inbox, subscription = await consume(broker, WORK)
    await broker.publish(EXCHANGE, "order.created", message("m0"))
    await broker.publish(EXCHANGE, "order.created", message("m1"))
    await wait_for(lambda: len(inbox.received) == 2)

    await inbox.received[0].ack()
    with pytest.raises(BrokerError, match="settled already"):
        await inbox.received[0].ack()
    await subscription.close()
    with pytest.raises(BrokerUnavailable):
        await inbox.received[1].ack()
    assert broker.hub.message_count(WORK) == 1


async def test_consumers_of_one_queue_take_turns(broker: MemoryBroker) -> None:
    first, _ = await consume(broker, WORK)
    second, _ = await consume(broker, WORK)

    for number in range(4):
        await broker.publish(EXCHANGE, "order.created", message(f"m{number}"))
    await asyncio.sleep(0)

    assert first.bodies() == ["m0", "m2"]
    assert second.bodies() == ["m1", "m3"]


async def test_a_handler_runs_in_the_subscribers_context_not_the_publishers(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    who = contextvars.ContextVar("who", default="nobody")
    seen: list[str] = []

    async def handler(incoming: IncomingMessage) -> None:
        seen.append(who.get())
        await incoming.ack()

    async def subscribe() -> None:
        who.set("delivery service")
        await broker.consume(WORK, handler, prefetch=1)

    await asyncio.create_task(subscribe())
    who.set("orders request")
    await broker.publish(EXCHANGE, "order.created", message("m"))
    await wait_for(lambda: seen, timeout=2)

    assert seen == ["delivery service"]


async def test_what_was_not_acked_survives_a_restart(tmp_path: Path, wait_for: WaitFor) -> None:
    url = f"memory://{tmp_path / 'broker.sqlite3'}"
    before = MemoryBroker(url)
    await before.connect()
    await before.declare(TOPOLOGY)
    inbox, _ = await consume(before, WORK)
    for number in range(3):
        await before.publish(EXCHANGE, "order.created", message(f"m{number}"))
    await before.publish("", DELAY, message("waiting"))
    await asyncio.sleep(0)
    await inbox.received[0].ack()  # m0 is done; m1 and m2 are in hand when the process stops
    await before.close()

    after = MemoryBroker(url)
    await after.connect()
    # Nothing is declared again yet: the bindings are kept like a durable queue's.
    await after.publish(EXCHANGE, "order.created", message("m3"))
    again, _ = await consume(after, WORK)

    await wait_for(lambda: len(again.received) == 4, timeout=2)
    assert again.bodies() == ["m1", "m2", "m3", "waiting"]
    assert [incoming.redelivered for incoming in again.received] == [True, True, False, False]
    for incoming in again.received:
        await incoming.ack()
    await after.close()

    last = MemoryBroker(url)
    await last.connect()
    assert last.hub.message_count(WORK) == 0
    await last.close()


async def test_a_quorum_queues_count_of_returns_survives_a_restart(tmp_path: Path, wait_for: WaitFor) -> None:
    url = f"memory://{tmp_path / 'broker.sqlite3'}"
    counted = Topology(queues=(QueueDeclaration("counted", arguments=QUORUM, delivery_limit=2),))
    before = MemoryBroker(url)
    await before.connect()
    await before.declare(counted)
    inbox, _ = await consume(before, "counted")
    await before.publish("", "counted", message("m"))
    await wait_for(lambda: inbox.received)
    await inbox.received[0].requeue()
    await wait_for(lambda: len(inbox.received) == 2)
    await before.close()  # a second return, as the process stops holding it

    after = MemoryBroker(url)
    await after.connect()
    again, _ = await consume(after, "counted")
    await wait_for(lambda: again.received, timeout=2)
    assert again.received[0].delivery_count == 2
    await again.received[0].requeue()  # the third return is past the limit of 2

    assert after.hub.unsettled_count("counted") == 0
    await after.close()


async def test_brokers_on_one_url_share_one_hub_and_settings_pick_it(tmp_path: Path) -> None:
    url = f"memory://{tmp_path / 'shared.sqlite3'}"
    settings = ServiceSettings(amqp_url=url)
    orders, delivery = open_broker(settings), open_broker(settings)
    assert isinstance(orders, MemoryBroker)
    assert isinstance(delivery, MemoryBroker)
    await orders.connect()
    await delivery.connect()
    await delivery.declare(TOPOLOGY)
    inbox, _ = await consume(delivery, WORK)

    await orders.publish(EXCHANGE, "order.created", message("across"))
    await asyncio.sleep(0)

    assert inbox.bodies() == ["across"]
    assert store_path(url) == tmp_path / "shared.sqlite3"
    await inbox.received[0].ack()
    await orders.close()
    await delivery.close()
