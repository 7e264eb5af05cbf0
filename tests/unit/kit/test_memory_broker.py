"""The in-process broker keeps RabbitMQ's meaning: routing, acks, dead letters, redelivery, delays."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deliveryhub_kit.broker import (
    BrokerUnavailable,
    ExchangeDeclaration,
    IncomingMessage,
    OutgoingMessage,
    QueueDeclaration,
    Subscription,
    Topology,
    Unroutable,
)
from deliveryhub_kit.memory_broker import MemoryBroker, MemoryHub, store_path, topic_matches
from deliveryhub_kit.runtime import open_broker
from deliveryhub_kit.settings import ServiceSettings
from tests.conftest import WaitFor

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


@pytest.mark.parametrize(
    ("binding_key", "routing_key", "matches"),
    [
        ("order.*", "order.created", True),
        ("order.*", "order.created.late", False),
        ("order.*", "order", False),
        ("order.#", "order", True),
        ("order.#", "order.created.late", True),
        ("#", "anything.at.all", True),
        ("#.paid", "order.paid", True),
        ("#.paid", "order.paid.late", False),
        ("*.paid", "paid", False),
        ("order.created", "order.created", True),
        ("order.created", "order.paid", False),
    ],
)
def test_topic_binding_keys_match_as_rabbitmq_matches_them(
    binding_key: str, routing_key: str, matches: bool
) -> None:
    assert topic_matches(binding_key, routing_key) is matches


async def test_a_message_reaches_every_queue_bound_for_its_key_once(broker: MemoryBroker) -> None:
    await broker.declare(
        Topology(
            queues=(
                QueueDeclaration("all", bindings=((EXCHANGE, "#"), (EXCHANGE, "order.created"))),
                QueueDeclaration("paid", bindings=((EXCHANGE, "*.paid"),)),
            )
        )
    )
    work, _ = await consume(broker, WORK)
    everything, _ = await consume(broker, "all")
    paid, _ = await consume(broker, "paid")

    await broker.publish(EXCHANGE, "order.created", message("created"))
    await broker.publish(EXCHANGE, "order.paid", message("paid"))
    await broker.publish(EXCHANGE, "delivery.finished", message("finished"))
    await asyncio.sleep(0)

    assert work.bodies() == ["created", "paid"]
    assert everything.bodies() == ["created", "paid", "finished"]
    assert paid.bodies() == ["paid"]
    assert work.received[0].routing_key == "order.created"


async def test_the_default_exchange_routes_to_the_queue_of_that_name(broker: MemoryBroker) -> None:
    dead, _ = await consume(broker, DEAD)

    await broker.publish("", DEAD, message("parked", reason="why"))
    await asyncio.sleep(0)

    assert dead.bodies() == ["parked"]
    assert dead.received[0].headers["reason"] == "why"
    assert dead.received[0].message_id == "parked"


async def test_a_message_no_queue_is_bound_for_is_unroutable_not_dropped(broker: MemoryBroker) -> None:
    with pytest.raises(Unroutable):
        await broker.publish(EXCHANGE, "delivery.finished", message("nobody listens"))
    with pytest.raises(Unroutable):
        await broker.publish("", "no-such-queue", message("nowhere"))
    with pytest.raises(BrokerUnavailable, match="no exchange"):
        await broker.publish("undeclared", "order.created", message("no exchange"))


async def test_a_closed_broker_refuses_to_publish() -> None:
    closed = MemoryBroker(hub=MemoryHub())

    assert not closed.connected
    with pytest.raises(BrokerUnavailable):
        await closed.publish(EXCHANGE, "order.created", message("too early"))


async def test_an_acked_message_is_gone_and_prefetch_bounds_what_a_consumer_holds(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    for number in range(5):
        await broker.publish(EXCHANGE, "order.created", message(f"m{number}"))
    inbox, _ = await consume(broker, WORK, prefetch=2)
    await asyncio.sleep(0)
    assert inbox.bodies() == ["m0", "m1"]

    await inbox.received[0].ack()
    await wait_for(lambda: len(inbox.received) == 3)
    assert inbox.bodies() == ["m0", "m1", "m2"]
    for incoming in inbox.received[1:]:
        await incoming.ack()
    await wait_for(lambda: len(inbox.received) == 5)
    for incoming in inbox.received[3:]:
        await incoming.ack()

    hub = broker.hub
    assert hub.message_count(WORK) == 0
    with pytest.raises(Exception, match="settled already"):
        await inbox.received[0].ack()


async def test_consumers_of_one_queue_take_turns(broker: MemoryBroker) -> None:
    first, _ = await consume(broker, WORK)
    second, _ = await consume(broker, WORK)

    for number in range(4):
        await broker.publish(EXCHANGE, "order.created", message(f"m{number}"))
    await asyncio.sleep(0)

    assert first.bodies() == ["m0", "m2"]
    assert second.bodies() == ["m1", "m3"]


async def test_a_requeued_message_comes_again_marked_redelivered(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    inbox, _ = await consume(broker, WORK)
    await broker.publish(EXCHANGE, "order.created", message("again"))
    await asyncio.sleep(0)
    assert inbox.received[0].redelivered is False

    await inbox.received[0].requeue()

    await wait_for(lambda: len(inbox.received) == 2)
    assert inbox.bodies() == ["again", "again"]
    assert inbox.received[1].redelivered is True


async def test_a_rejected_message_goes_to_the_queues_dead_letter_queue(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    inbox, _ = await consume(broker, WORK)
    dead, _ = await consume(broker, DEAD)
    await broker.publish(EXCHANGE, "order.created", message("poison", **{"x-attempts": 1}))
    await asyncio.sleep(0)

    await inbox.received[0].reject()

    await wait_for(lambda: dead.received)
    parked = dead.received[0]
    assert parked.body == b"poison"
    assert parked.routing_key == DEAD
    assert parked.headers["x-attempts"] == 1
    assert parked.headers["x-first-death-reason"] == "rejected"
    assert parked.headers["x-first-death-queue"] == WORK
    assert len(inbox.received) == 1


async def test_what_a_closed_subscription_held_goes_to_another_consumer_redelivered(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    leaving, subscription = await consume(broker, WORK, prefetch=2)
    for number in range(3):
        await broker.publish(EXCHANGE, "order.created", message(f"m{number}"))
    await asyncio.sleep(0)
    await leaving.received[0].ack()
    await asyncio.sleep(0)
    assert leaving.bodies() == ["m0", "m1", "m2"]

    await subscription.cancel()
    await subscription.close()
    staying, _ = await consume(broker, WORK)

    await wait_for(lambda: len(staying.received) == 2)
    assert staying.bodies() == ["m1", "m2"]
    assert all(incoming.redelivered for incoming in staying.received)
    with pytest.raises(BrokerUnavailable):
        await leaving.received[1].ack()


async def test_a_delay_queue_holds_a_message_for_its_ttl_then_returns_it(
    broker: MemoryBroker, wait_for: WaitFor
) -> None:
    inbox, _ = await consume(broker, WORK)
    sent_at = time.monotonic()

    await broker.publish("", DELAY, message("later", **{"x-attempts": 2}))

    await wait_for(lambda: inbox.received, timeout=2)
    waited = time.monotonic() - sent_at
    assert 0.18 <= waited < 1.0
    back = inbox.received[0]
    assert back.body == b"later"
    assert back.routing_key == WORK
    assert back.headers["x-attempts"] == 2
    assert back.headers["x-first-death-reason"] == "expired"
    assert back.redelivered is False


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
