"""Prometheus metrics of one service process, on a registry of its own."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The figures an operator watches; the relay, the consumers and the HTTP layer update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # The process itself (resident memory, CPU, open files) and its garbage collector, read when
        # scraped; in the embedded system each service reports the one process they share.
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        self.http_requests = Counter(
            "deliveryhub_http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "deliveryhub_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.events_published = Counter(
            "deliveryhub_events_published_total",
            "Events the outbox relay published and the broker confirmed, by type",
            ["type"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "deliveryhub_outbox_publish_failures_total",
            "Outbox publishes that the broker did not confirm, by reason",
            ["reason"],
            registry=registry,
        )
        self.outbox_waiting = Gauge(
            "deliveryhub_outbox_waiting_events",
            "Outbox rows not yet published",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "deliveryhub_outbox_oldest_waiting_age_seconds",
            "Age of the oldest outbox row not yet published (0 when none waits)",
            registry=registry,
        )
        self.events_consumed = Counter(
            "deliveryhub_events_consumed_total",
            "Events a consumer settled, by type and outcome (applied, duplicate)",
            ["type", "outcome"],
            registry=registry,
        )
        self.events_retried = Counter(
            "deliveryhub_events_retried_total",
            "Events returned for another try after a passing failure, by type",
            ["type"],
            registry=registry,
        )
        self.events_dead_lettered = Counter(
            "deliveryhub_events_dead_lettered_total",
            "Messages parked in a dead-letter queue, by type and error class",
            ["type", "reason"],
            registry=registry,
        )
        self.consumer_paused = Gauge(
            "deliveryhub_consumer_paused",
            "1 while a consumer takes no messages because its database is away, by queue",
            ["queue"],
            registry=registry,
        )
        self.delivery_counts = Histogram(
            "deliveryhub_consumer_message_returns",
            "How often a message had been handed out and returned before it was settled, by queue",
            ["queue"],
            buckets=(0, 1, 2, 3, 5, 10, 20, 50),
            registry=registry,
        )
        self.messages_returned = Counter(
            "deliveryhub_messages_returned_total",
            "Messages a consumer gave back to their queue unsettled, by queue and why",
            ["queue", "reason"],
            registry=registry,
        )
        self.event_handling = Histogram(
            "deliveryhub_event_handling_seconds",
            "Time from taking a message to settling it, by type",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        self.consumer_batch_size = Histogram(
            "deliveryhub_consumer_batch_messages",
            "Messages a consumer applied in one transaction, by queue",
            ["queue"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Report the database pool's connections at each scrape."""
        self.registry.register(_PoolCollector(engine))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self._engine.sync_engine.pool
        checked_out = getattr(pool, "checkedout", None)
        size = getattr(pool, "size", None)
        if callable(checked_out):
            yield GaugeMetricFamily(
                "deliveryhub_db_pool_connections_in_use",
                "Database connections checked out of the pool",
                value=checked_out(),
            )
        if callable(size):
            yield GaugeMetricFamily(
                "deliveryhub_db_pool_size", "Connections the pool keeps open", value=size()
            )
