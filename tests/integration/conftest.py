"""Fixtures of the integration tests beyond the root's: the delivery service, which the console's tests
start too, for the pages that show what the real API answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import pytest

from deliveryhub_delivery.app import create_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.keys import KeyPair
from tests.support.delivery import RunningDelivery, StartDelivery
from tests.support.services import start_in_process

if TYPE_CHECKING:
    from tests.support.broker import BrokerNamespace


@pytest.fixture
async def start_delivery(
    delivery_database_url: str,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    amqp_url: str,
) -> AsyncIterator[StartDelivery]:
    """Start the delivery service on the test's database and broker names; stopped at the end."""
    default_amqp_url = amqp_url
    stacks: list[AsyncExitStack] = []

    async def start(
        *, legacy: bool = False, database_url: str | None = None, amqp_url: str | None = None
    ) -> RunningDelivery:
        settings = DeliverySettings(
            environment="test",
            database_url=database_url or delivery_database_url,
            amqp_url=amqp_url or default_amqp_url,
            broker_prefix=broker_namespace.prefix,
            legacy_queue_prefix=broker_namespace.legacy_prefix if legacy else None,
            jwt_public_key=key_pair.public_pem,
            # One message at a time: a later message's effect proves the earlier ones were settled.
            consumer_prefetch=1,
            outbox_poll_seconds=0.2,
            publish_timeout_seconds=5.0,
            database_pool_size=5,
        )
        app = create_app(settings)
        stack = AsyncExitStack()
        stacks.append(stack)
        # Another broker URL is one that is down: nothing to wait for.
        client = await start_in_process(stack, app, "delivery", attached=amqp_url is None)
        return RunningDelivery(app=app, settings=settings, client=client, stack=stack)

    yield start
    for stack in reversed(stacks):
        await stack.aclose()
