"""RabbitMQ as the project configures it (deploy/rabbitmq/rabbitmq.conf) refuses oversized messages.

Only a broker started with that file can show it: the RabbitMQ 4 run starts one
(`scripts/rabbitmq4.sh`), and `make test` runs these tests there, not on the machine's own server.
"""

from __future__ import annotations

import re
from pathlib import Path

import aio_pika
import aiormq
import pytest

from tests.support.broker import AMQP_URL, BrokerNamespace

pytestmark = [pytest.mark.integration, pytest.mark.configured_broker]

CONFIGURATION = Path(__file__).resolve().parents[3] / "deploy" / "rabbitmq" / "rabbitmq.conf"


def max_message_size() -> int:
    found = re.search(r"^max_message_size\s*=\s*(\d+)\s*$", CONFIGURATION.read_text(), re.MULTILINE)
    assert found, f"{CONFIGURATION} sets no max_message_size"
    return int(found.group(1))


async def test_a_message_over_the_configured_size_is_refused_and_one_at_it_is_taken(
    broker_namespace: BrokerNamespace,
) -> None:
    limit = max_message_size()
    queue = broker_namespace.new_queue_name("sizes")
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x" * limit), queue)

        with pytest.raises(
            aiormq.exceptions.ChannelPreconditionFailed, match="larger than configured max size"
        ):
            await channel.default_exchange.publish(aio_pika.Message(b"x" * (limit + 1)), queue)

        checked = await (await connection.channel()).declare_queue(queue, passive=True)
        assert checked.declaration_result.message_count == 1
    finally:
        await connection.close()
