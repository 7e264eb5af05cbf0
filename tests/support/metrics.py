"""Reading a service's own metrics in a test."""

from __future__ import annotations

from prometheus_client import Counter

from deliveryhub_kit.metrics import Metrics


def settled_after_returns(metrics: Metrics, queue: str | None = None) -> dict[int, int]:
    """How many messages the consumers settled after how many returns to their queue (all queues,
    or one), from the histogram they keep; more returns than its last bucket count as 10**6."""
    cumulative: dict[float, float] = {}
    for family in metrics.delivery_counts.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket") and queue in (None, sample.labels["queue"]):
                bound = float(sample.labels["le"])
                cumulative[bound] = cumulative.get(bound, 0.0) + sample.value
    counts: dict[int, int] = {}
    below = 0.0
    for bound in sorted(cumulative):
        if cumulative[bound] > below:
            counts[int(bound) if bound != float("inf") else 10**6] = int(cumulative[bound] - below)
        below = cumulative[bound]
    return counts


def counter_total(counter: Counter) -> float:
    """The sum of a counter's samples, whatever their labels."""
    return float(
        sum(
            sample.value
            for family in counter.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )
