"""One broker contract, run against RabbitMQ and the in-process broker (in memory and on SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest

from deliveryhub_kit.broker import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    ExchangeDeclaration,
    HeaderValue,
    IncomingMessage,
    OutgoingMessage,
    QueueDeclaration,
    Subscription,
    Topology,
    Unroutable,
)
from deliveryhub_kit.memory_broker import MemoryBroker
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.topology import QUORUM, retry_queues
from tests.support.broker import AMQP_URL, Amqp, BrokerNamespace
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

CLASSIC: Mapping[str, HeaderValue] = {}
# How long a test watches to see that something does not happen: well below any TTL here.
GLANCE_SECONDS = 0.2
DELAY_SECONDS = 0.8
# RabbitMQ 4 dead-letters a quorum queue's message after 20 returns unless told there is no limit.
RETURNS_BEYOND_ANY_DEFAULT_LIMIT = 25


@dataclass
class BrokerUnderTest:
    """A connected broker, and the count of messages ready in a queue as its server tells it."""

    broker: Broker
    ready_count: Callable[[str], Awaitable[int]]


@pytest.fixture(params=["rabbitmq", "memory", "memory-sqlite"])
async def connected(
    request: pytest.FixtureRequest, tmp_path: Path, broker_namespace: BrokerNamespace
) -> AsyncIterator[BrokerUnderTest]:
    """A connected broker: RabbitMQ, or the in-process broker in memory or on an SQLite file."""
    if request.param == "rabbitmq":
        rabbit = RabbitBroker(AMQP_URL, publish_timeout_seconds=5.0, name="deliveryhub-contract-tests")
        await rabbit.connect()
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        yield BrokerUnderTest(rabbit, Amqp(connection, broker_namespace).message_count)
        await rabbit.close()
        await connection.close()
        return
    url = "memory://" if request.param == "memory" else f"memory://{tmp_path / 'broker.sqlite3'}"
    memory = MemoryBroker(url)
    await memory.connect()
    hub = memory.hub

    async def ready_count(queue: str) -> int:
        return hub.message_count(queue)

    yield BrokerUnderTest(memory, ready_count)
    await memory.close()


def requeue_counts_toward_the_delivery_limit(broker: Broker) -> bool:
    """Whether a quorum queue counts `requeue()` as a return toward its delivery limit."""
    if isinstance(broker, RabbitBroker):
        # RabbitMQ 3.x and 4.0 to 4.2 count every return; from 4.3 a basic.nack with requeue (what
        # `requeue()` sends) is not counted, so only a lost or rejected delivery is.
        return broker.server_version < (4, 3)
    return True  # the in-process broker counts as RabbitMQ 3.x does


def rejection_carried_into_a_quorum_queue(broker: Broker) -> tuple[bool, int]:
    """How a message rejected in a quorum queue is first handed out from a quorum dead-letter
    queue: (redelivered, delivery_count)."""
    if isinstance(broker, RabbitBroker) and broker.server_version >= (4,):
        # RabbitMQ 4 counts the rejection as a failed delivery, and the count goes with the
        # message: the dead-letter queue hands it out marked redelivered, counted once.
        return True, 1
    # RabbitMQ 3.x (and the in-process broker): a new message in its new queue.
    return False, 0


# How a test settles the n-th message a subscription is handed (counting from 1).
Settle = Callable[[IncomingMessage, int], Awaitable[None]]


@dataclass
class Hands:
    """What a consumer was handed, in order; it settles nothing unless given how."""

    settle: Settle | None = None
    received: list[IncomingMessage] = field(default_factory=list)

    async def __call__(self, message: IncomingMessage) -> None:
        self.received.append(message)
        if self.settle is not None:
            await self.settle(message, len(self.received))

    def ids(self) -> list[str | None]:
        return [message.message_id for message in self.received]


def message(message_id: str, **headers: HeaderValue) -> OutgoingMessage:
    """A message whose body is its id."""
    return OutgoingMessage(body=message_id.encode(), message_id=message_id, headers=headers)


async def declare_queue(
    broker: Broker,
    name: str,
    arguments: Mapping[str, HeaderValue],
    *,
    bindings: tuple[tuple[str, str], ...] = (),
    delivery_limit: int | None = None,
) -> str:
    """Declare one queue and return its name."""
    await broker.declare(
        Topology(queues=(QueueDeclaration(name, arguments, bindings, delivery_limit=delivery_limit),))
    )
    return name


async def consume(
    broker: Broker, queue: str, settle: Settle | None = None, *, prefetch: int = 10
) -> tuple[Hands, Subscription]:
    """Subscribe to `queue`, keeping what it hands out and settling it by `settle`, if given."""
    hands = Hands(settle)
    return hands, await broker.consume(queue, hands, prefetch=prefetch)


async def test_a_confirmed_message_arrives_with_its_bytes_id_headers_and_content_type(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker, exchange = connected.broker, broker_namespace.exchange
    await broker.declare(Topology(exchanges=(ExchangeDeclaration(exchange),)))
    queue = await declare_queue(
        broker, broker_namespace.new_queue_name("work"), QUORUM, bindings=((exchange, "order.*"),)
    )
    headers: dict[str, HeaderValue] = {"x-attempts": 2, "origin": "orders", "ratio": 0.5, "replayed": False}
    body = bytes(range(256))  # every byte value, not only text

    await broker.publish(
        exchange,
        "order.created",
        OutgoingMessage(body, "m-1", content_type="application/octet-stream", headers=headers),
    )
    await broker.publish(exchange, "order.paid", OutgoingMessage(b"{}", "m-2"))
    hands, _ = await consume(broker, queue)

    first, second = await wait_for(lambda: hands.received if len(hands.received) == 2 else None)
    assert first.body == body
    assert first.message_id == "m-1"
    assert first.content_type == "application/octet-stream"
    assert dict(first.headers) == headers
    assert (first.exchange, first.routing_key) == (exchange, "order.created")
    assert (first.redelivered, first.delivery_count) == (False, 0)
    assert (second.body, second.message_id) == (b"{}", "m-2")
    assert second.content_type == "application/json"


async def test_a_mandatory_message_no_queue_is_bound_for_is_unroutable(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace
) -> None:
    broker, exchange = connected.broker, broker_namespace.exchange
    await broker.declare(Topology(exchanges=(ExchangeDeclaration(exchange),)))
    queue = await declare_queue(
        broker, broker_namespace.new_queue_name("orders"), CLASSIC, bindings=((exchange, "order.*"),)
    )

    with pytest.raises(Unroutable):
        await broker.publish(exchange, "delivery.finished", message("m-1"))
    with pytest.raises(Unroutable):
        await broker.publish("", f"{broker_namespace.prefix}no-such-queue", message("m-2"))
    assert await connected.ready_count(queue) == 0


async def test_publishing_to_a_missing_exchange_is_a_broker_error_and_publishing_goes_on(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), CLASSIC)

    with pytest.raises(BrokerError):
        await broker.publish(f"{broker_namespace.prefix}no-such-exchange", "order.created", message("m-1"))

    async def published() -> bool:
        # RabbitMQ closes the publishing channel over the error; the broker opens it again.
        try:
            await broker.publish("", queue, message("m-2"))
        except BrokerUnavailable:
            return False
        return True

    await wait_for(published, timeout=5, message="a publish to succeed again")
    assert await connected.ready_count(queue) == 1


ROUTING_KEYS = (
    "order",
    "order.created",
    "order.created.late",
    "order.paid",
    "order.paid.late",
    "paid",
    "anything.at.all",
)
# A queue's binding keys -> the routing keys a topic exchange sends it: `*` is one word, `#` any.
TOPIC_MATCHES: dict[tuple[str, ...], set[str]] = {
    ("order.*",): {"order.created", "order.paid"},
    ("order.#",): {"order", "order.created", "order.created.late", "order.paid", "order.paid.late"},
    ("#.paid",): {"paid", "order.paid"},
    ("*.paid",): {"order.paid"},
    ("order.created",): {"order.created"},
    # Three bindings that all match "order.created": still one copy of it in this queue.
    ("#", "order.*", "order.created"): set(ROUTING_KEYS),
}


async def test_a_topic_exchange_routes_one_copy_to_each_queue_a_binding_matches(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker, exchange = connected.broker, broker_namespace.exchange
    await broker.declare(Topology(exchanges=(ExchangeDeclaration(exchange),)))
    queues = {
        binding_keys: await declare_queue(
            broker,
            broker_namespace.new_queue_name("topic"),
            CLASSIC,
            bindings=tuple((exchange, key) for key in binding_keys),
        )
        for binding_keys in TOPIC_MATCHES
    }

    for routing_key in ROUTING_KEYS:
        await broker.publish(exchange, routing_key, message(routing_key))

    counts = {binding_keys: await connected.ready_count(queue) for binding_keys, queue in queues.items()}
    assert counts == {binding_keys: len(routed) for binding_keys, routed in TOPIC_MATCHES.items()}
    hands = {binding_keys: (await consume(broker, queue))[0] for binding_keys, queue in queues.items()}

    def received() -> dict[tuple[str, ...], set[str]]:
        return {keys: {m.routing_key for m in held.received} for keys, held in hands.items()}

    await wait_for(lambda: received() == TOPIC_MATCHES, message="every queue's messages")


@pytest.mark.parametrize(
    ("exchange_type", "binding_key", "routed", "unroutable"),
    [
        ("direct", "order.created", "order.created", "order.paid"),
        ("direct", "order.*", "order.*", "order.created"),  # no wildcards in a direct binding
        ("fanout", "ignored", "anything", None),
    ],
)
async def test_direct_and_fanout_exchanges_route_by_their_own_rules(
    connected: BrokerUnderTest,
    broker_namespace: BrokerNamespace,
    exchange_type: str,
    binding_key: str,
    routed: str,
    unroutable: str | None,
) -> None:
    broker, exchange = connected.broker, broker_namespace.exchange
    await broker.declare(Topology(exchanges=(ExchangeDeclaration(exchange, exchange_type),)))
    queue = await declare_queue(
        broker, broker_namespace.new_queue_name("bound"), CLASSIC, bindings=((exchange, binding_key),)
    )

    await broker.publish(exchange, routed, message("m-1"))
    if unroutable is not None:
        with pytest.raises(Unroutable):
            await broker.publish(exchange, unroutable, message("m-2"))

    assert await connected.ready_count(queue) == 1


async def test_an_acked_message_is_never_handed_out_again(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    await broker.publish("", queue, message("m-1"))
    await broker.publish("", queue, message("m-2"))
    hands, subscription = await consume(broker, queue, prefetch=2)
    acked, _ = await wait_for(lambda: hands.received if len(hands.received) == 2 else None)

    await acked.ack()
    await subscription.close()
    again, _ = await consume(broker, queue)

    await wait_for(lambda: again.received)
    await asyncio.sleep(GLANCE_SECONDS)
    assert again.ids() == ["m-2"]


async def test_a_requeued_message_comes_again_redelivered_and_counted(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    await broker.publish("", queue, message("m-1", origin="orders"))

    async def requeue_twice(incoming: IncomingMessage, nth: int) -> None:
        if nth <= 2:
            await incoming.requeue()

    hands, _ = await consume(broker, queue, requeue_twice)

    await wait_for(lambda: len(hands.received) == 3)
    assert hands.ids() == ["m-1"] * 3
    assert [incoming.redelivered for incoming in hands.received] == [False, True, True]
    if requeue_counts_toward_the_delivery_limit(broker):
        assert [incoming.delivery_count for incoming in hands.received] == [0, 1, 2]
    assert all(incoming.headers["origin"] == "orders" for incoming in hands.received)


@pytest.mark.parametrize(
    ("arguments", "order"),
    [
        # A quorum queue puts a message given back by basic.nack behind those waiting (3.10 and 4.0).
        pytest.param(QUORUM, ["m-1", "m-2", "m-1"], id="quorum"),
        pytest.param(CLASSIC, ["m-1", "m-1", "m-2"], id="classic"),
    ],
)
async def test_where_a_requeued_message_goes_depends_on_the_queue_type(
    connected: BrokerUnderTest,
    broker_namespace: BrokerNamespace,
    wait_for: WaitFor,
    arguments: Mapping[str, HeaderValue],
    order: list[str],
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), arguments)
    await broker.publish("", queue, message("m-1"))
    await broker.publish("", queue, message("m-2"))

    async def requeue_the_first(incoming: IncomingMessage, nth: int) -> None:
        await (incoming.requeue() if nth == 1 else incoming.ack())

    hands, _ = await consume(broker, queue, requeue_the_first, prefetch=1)

    await wait_for(lambda: len(hands.received) == 3)
    assert hands.ids() == order


async def test_a_classic_queue_marks_a_return_redelivered_but_does_not_count_returns(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("legacy"), CLASSIC)
    await broker.publish("", queue, message("m-1"))

    async def requeue_twice(incoming: IncomingMessage, nth: int) -> None:
        if nth <= 2:
            await incoming.requeue()

    hands, _ = await consume(broker, queue, requeue_twice)

    await wait_for(lambda: len(hands.received) == 3)
    assert [incoming.redelivered for incoming in hands.received] == [False, True, True]
    assert [incoming.delivery_count for incoming in hands.received] == [0, 1, 1]
    assert all("x-delivery-count" not in incoming.headers for incoming in hands.received)


@pytest.mark.parametrize("target", ["default exchange and key", "events exchange, own key"])
async def test_a_rejected_message_is_dead_lettered_to_its_queues_target(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor, target: str
) -> None:
    broker, exchange = connected.broker, broker_namespace.exchange
    work = broker_namespace.new_queue_name("work")
    parked_queue = broker_namespace.new_queue_name("parked")
    await broker.declare(Topology(exchanges=(ExchangeDeclaration(exchange),)))
    if target == "default exchange and key":
        dead_letter: dict[str, HeaderValue] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": parked_queue,
        }
        await declare_queue(broker, parked_queue, QUORUM)
        expected_exchange, expected_key = "", parked_queue
    else:
        # No routing key of its own: the dead letter keeps the one it was published with.
        dead_letter = {"x-dead-letter-exchange": exchange}
        await declare_queue(broker, parked_queue, QUORUM, bindings=((exchange, work),))
        expected_exchange, expected_key = exchange, work
    await declare_queue(broker, work, {**QUORUM, **dead_letter})
    await broker.publish("", work, message("m-1", **{"x-attempts": 3}))

    async def requeue_then_reject(incoming: IncomingMessage, nth: int) -> None:
        await (incoming.requeue() if nth == 1 else incoming.reject())

    hands, _ = await consume(broker, work, requeue_then_reject)
    dead, _ = await consume(broker, parked_queue)

    (parked,) = await wait_for(lambda: dead.received)
    assert (parked.body, parked.message_id) == (b"m-1", "m-1")
    assert (parked.exchange, parked.routing_key) == (expected_exchange, expected_key)
    assert parked.headers["x-attempts"] == 3
    assert parked.headers["x-first-death-reason"] == "rejected"
    assert parked.headers["x-first-death-queue"] == work
    assert (parked.redelivered, parked.delivery_count) == rejection_carried_into_a_quorum_queue(broker)
    assert len(hands.received) == 2


async def test_a_rejected_message_without_a_dead_letter_target_is_dropped(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    await broker.publish("", queue, message("m-1"))

    async def reject_the_first(incoming: IncomingMessage, nth: int) -> None:
        await (incoming.reject() if nth == 1 else incoming.ack())

    hands, _ = await consume(broker, queue, reject_the_first, prefetch=1)
    await wait_for(lambda: hands.received)
    await broker.publish("", queue, message("m-2"))

    await wait_for(lambda: len(hands.received) == 2)
    await asyncio.sleep(GLANCE_SECONDS)
    assert hands.ids() == ["m-1", "m-2"]


async def test_a_delay_queue_hands_a_message_on_after_its_ttl_and_not_before(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    work = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    broker_namespace.retry_delays.append(DELAY_SECONDS)
    (delay,) = retry_queues(work, (DELAY_SECONDS,))
    await broker.declare(Topology(queues=(delay,)))
    hands, _ = await consume(broker, work)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()

    await broker.publish("", delay.name, message("m-1", **{"x-attempts": 1}))
    await asyncio.sleep(GLANCE_SECONDS)
    assert hands.received == []
    assert await connected.ready_count(delay.name) == 1

    (back,) = await wait_for(lambda: hands.received, timeout=DELAY_SECONDS + 5)
    assert loop.time() - sent_at >= DELAY_SECONDS * 0.95
    assert (back.body, back.message_id) == (b"m-1", "m-1")
    assert (back.exchange, back.routing_key) == ("", work)
    assert back.headers["x-attempts"] == 1
    assert back.headers["x-first-death-reason"] == "expired"
    assert (back.redelivered, back.delivery_count) == (False, 0)
    assert await connected.ready_count(delay.name) == 0


async def test_prefetch_bounds_the_unsettled_messages_in_hand(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    for number in range(5):
        await broker.publish("", queue, message(f"m-{number}"))

    hands, _ = await consume(broker, queue, prefetch=2)
    await wait_for(lambda: len(hands.received) == 2)
    await asyncio.sleep(GLANCE_SECONDS)
    assert hands.ids() == ["m-0", "m-1"]
    assert await connected.ready_count(queue) == 3

    await hands.received[0].ack()
    await wait_for(lambda: len(hands.received) == 3)
    await asyncio.sleep(GLANCE_SECONDS)
    assert hands.ids() == ["m-0", "m-1", "m-2"]


async def test_a_cancelled_subscription_gets_nothing_more_but_settles_what_it_holds_and_resumes(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    hands, subscription = await consume(broker, queue, prefetch=5)
    await broker.publish("", queue, message("m-1"))
    (held,) = await wait_for(lambda: hands.received)

    await subscription.cancel()
    await broker.publish("", queue, message("m-2"))
    await asyncio.sleep(GLANCE_SECONDS)
    assert hands.ids() == ["m-1"]
    assert await connected.ready_count(queue) == 1
    await held.ack()

    await subscription.resume()
    await wait_for(lambda: len(hands.received) == 2)
    assert hands.ids() == ["m-1", "m-2"]
    assert hands.received[1].redelivered is False


async def test_closing_a_subscription_gives_what_it_holds_back_to_the_queue(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    queue = await declare_queue(broker, broker_namespace.new_queue_name("work"), QUORUM)
    for number in range(3):
        await broker.publish("", queue, message(f"m-{number}"))
    leaving, subscription = await consume(broker, queue, prefetch=3)
    acked, *_ = await wait_for(lambda: leaving.received if len(leaving.received) == 3 else None)
    await acked.ack()

    await subscription.close()
    staying, _ = await consume(broker, queue)

    await wait_for(lambda: len(staying.received) == 2)
    assert set(staying.ids()) == {"m-1", "m-2"}
    assert all(incoming.redelivered for incoming in staying.received)
    assert all(incoming.delivery_count >= 1 for incoming in staying.received)


async def test_a_quorum_queue_dead_letters_a_message_returned_more_than_its_delivery_limit(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker, limit = connected.broker, 2
    parked_queue = await declare_queue(broker, broker_namespace.new_queue_name("parked"), QUORUM)
    dead_letter: dict[str, HeaderValue] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": parked_queue,
    }
    work = await declare_queue(
        broker, broker_namespace.new_queue_name("work"), {**QUORUM, **dead_letter}, delivery_limit=limit
    )
    await broker.publish("", work, message("m-1"))

    async def keep_returning(incoming: IncomingMessage, nth: int) -> None:
        if nth <= limit + 2:  # then hold it, where the limit would never be reached
            await incoming.requeue()

    hands, _ = await consume(broker, work, keep_returning)
    dead, _ = await consume(broker, parked_queue)

    if requeue_counts_toward_the_delivery_limit(broker):
        (parked,) = await wait_for(lambda: dead.received)
        assert [incoming.delivery_count for incoming in hands.received] == [0, 1, 2]
        assert parked.message_id == "m-1"
        assert parked.headers["x-first-death-reason"] == "delivery_limit"
        assert parked.headers["x-first-death-queue"] == work
    else:
        await wait_for(lambda: len(hands.received) == limit + 3)
        assert dead.received == []


async def test_a_quorum_queue_without_a_delivery_limit_never_dead_letters_for_returns(
    connected: BrokerUnderTest, broker_namespace: BrokerNamespace, wait_for: WaitFor
) -> None:
    broker = connected.broker
    parked_queue = await declare_queue(broker, broker_namespace.new_queue_name("parked"), QUORUM)
    dead_letter: dict[str, HeaderValue] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": parked_queue,
    }
    work = await declare_queue(
        broker, broker_namespace.new_queue_name("work"), {**QUORUM, **dead_letter}, delivery_limit=None
    )
    await broker.publish("", work, message("m-1"))

    async def return_again(incoming: IncomingMessage, nth: int) -> None:
        await (incoming.requeue() if nth <= RETURNS_BEYOND_ANY_DEFAULT_LIMIT else incoming.ack())

    hands, _ = await consume(broker, work, return_again)

    await wait_for(lambda: len(hands.received) == RETURNS_BEYOND_ANY_DEFAULT_LIMIT + 1)
    assert hands.received[-1].redelivered is True
    if requeue_counts_toward_the_delivery_limit(broker):
        assert hands.received[-1].delivery_count == RETURNS_BEYOND_ANY_DEFAULT_LIMIT
    assert await connected.ready_count(parked_queue) == 0
