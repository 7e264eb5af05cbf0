"""What an operator sees: one trace and one correlation id across HTTP and RabbitMQ, metrics."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.models import Delivery
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.db import Database
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.settings import async_database_url
from tests.support.orders import RunningOrders, order_body

if TYPE_CHECKING:
    from tests.support.broker import Amqp, BrokerNamespace
    from tests.support.databases import Databases
    from tests.support.tokens import Tokens
    from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Spans of this process, kept in memory (the tracer provider is installed once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
async def delivery_app(
    databases: Databases,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    amqp_url: str,
    wait_for: WaitFor,
) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The delivery service beside the orders service, on the same test exchange."""
    url = await databases.create_migrated("delivery")
    settings = DeliverySettings(
        environment="test",
        database_url=url,
        amqp_url=amqp_url,
        broker_prefix=broker_namespace.prefix,
        jwt_public_key=key_pair.public_pem,
        outbox_poll_seconds=0.2,
        database_pool_size=3,
    )
    app = create_delivery_app(settings)
    records = Database(async_database_url(url), pool_size=2, max_overflow=0)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        runtime: ServiceRuntime = app.state.runtime

        async def attached() -> bool:
            await runtime.wait_until_attached()
            return bool(runtime.consumers)

        await wait_for(attached, timeout=15, message="the delivery service to attach")
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://delivery.test")
        )
        yield client, records
    await records.dispose()
    await databases.drop(url)


async def test_one_trace_and_one_correlation_id_follow_an_order_into_the_delivery_service(
    spans: InMemorySpanExporter,
    orders: RunningOrders,
    delivery_app: tuple[httpx.AsyncClient, Database],
    amqp: Amqp,
    tokens: Tokens,
    wait_for: WaitFor,
) -> None:
    _, records = delivery_app
    tap = await amqp.tap("order.created")
    correlation_id = f"checkout-{uuid.uuid4().hex[:12]}"

    response = await orders.client.post(
        "/api/orders",
        json=order_body(),
        headers={**tokens.customer(uuid.uuid4()), "traceparent": TRACEPARENT, "X-Request-ID": correlation_id},
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == correlation_id
    order_id = uuid.UUID(response.json()["id"])

    [message] = await tap.take(1)
    envelope = json.loads(message.body)
    assert envelope["traceparent"].split("-")[1] == TRACE_ID
    assert envelope["correlationid"] == correlation_id
    assert (message.headers or {})["x-request-id"] == correlation_id

    async def delivery_created() -> bool:
        async with records.transaction() as session:
            return (await session.scalar(select(Delivery).where(Delivery.id == order_id))) is not None

    await wait_for(delivery_created, message="the delivery to be created")

    def consumer_span() -> bool:
        return any(
            span.kind is SpanKind.CONSUMER
            and span.context is not None
            and format(span.context.trace_id, "032x") == TRACE_ID
            and span.name.endswith("delivery.order-events process")
            for span in spans.get_finished_spans()
        )

    await wait_for(consumer_span, message="the delivery consumer's span in the request's trace")
    names = {
        span.name for span in spans.get_finished_spans() if format(span.context.trace_id, "032x") == TRACE_ID
    }
    assert "order.created publish" in names
    assert any(name.startswith("POST") for name in names), names


async def test_a_request_makes_one_server_span_while_traces_are_recorded(
    spans: InMemorySpanExporter, orders: RunningOrders, tokens: Tokens
) -> None:
    trace_id = uuid.uuid4().hex
    response = await orders.client.post(
        "/api/orders",
        json=order_body(),
        headers={**tokens.customer(uuid.uuid4()), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 201, response.text

    requests = [
        (span.kind, span.instrumentation_scope.name if span.instrumentation_scope else None)
        for span in spans.get_finished_spans()
        if span.context is not None
        and format(span.context.trace_id, "032x") == trace_id
        and span.name == "POST /api/orders"
    ]
    # The kit's request layer makes it; the framework's own telemetry would make one more, and
    # the kit's would then be an inner span of the same name.
    assert requests == [(SpanKind.SERVER, "opentelemetry.instrumentation.asgi")], requests


async def test_metrics_parse_and_count_the_flow(
    orders: RunningOrders,
    delivery_app: tuple[httpx.AsyncClient, Database],
    tokens: Tokens,
    wait_for: WaitFor,
) -> None:
    delivery, _ = delivery_app

    async def samples(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = (await client.get("/metrics")).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    customer = tokens.customer(uuid.uuid4())
    placed = await orders.client.post("/api/orders", json=order_body(), headers=customer)
    assert placed.status_code == 201

    created = ("deliveryhub_events_consumed_total", (("outcome", "applied"), ("type", "order.created")))
    published = ("deliveryhub_events_published_total", (("type", "order.created"),))

    async def counted() -> bool:
        return (await samples(delivery)).get(created, 0) >= 1 and (await samples(orders.client)).get(
            published, 0
        ) >= 1

    await wait_for(counted, message="the published and consumed counters to count the order")

    orders_samples = await samples(orders.client)
    requests = (
        "deliveryhub_http_requests_total",
        (("method", "POST"), ("route", "/api/orders"), ("status", "201")),
    )
    assert orders_samples[requests] >= 1
    assert (
        "deliveryhub_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/api/orders")),
    ) in (orders_samples)
    assert ("deliveryhub_db_pool_connections_in_use", ()) in orders_samples
    assert ("deliveryhub_outbox_waiting_events", ()) in orders_samples
    assert ("deliveryhub_outbox_oldest_waiting_age_seconds", ()) in orders_samples
    delivery_samples = await samples(delivery)
    assert ("deliveryhub_event_handling_seconds_count", (("type", "order.created"),)) in delivery_samples

    before = delivery_samples[created]
    second = await orders.client.post("/api/orders", json=order_body(), headers=customer)
    assert second.status_code == 201

    async def counted_again() -> bool:
        return (await samples(delivery)).get(created, 0) == before + 1

    await wait_for(counted_again, message="the consumed counter to move by one")
