"""HTTP load on the running services: orders placed, deliveries read, each request timed."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from deliveryhub_cli.bench.options import BenchOptions, Json
from deliveryhub_cli.bench.payloads import order_body
from deliveryhub_cli.bench.timing import CpuClock, Progress, keep_reporting, latency_summary
from deliveryhub_cli.loadgen import Answer, HttpLoad, LoadError


@dataclass
class HttpOutcome:
    """The latencies of the requests that succeeded and a count of the failures by kind."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def summary(self, seconds: float) -> Json:
        return {
            "requests": len(self.latencies) + self.errors,
            "seconds": round(seconds, 2),
            "requests_per_s": round(len(self.latencies) / seconds, 1),
            **latency_summary(self.latencies),
            "errors": self.errors,
            "error_kinds": self.error_kinds,
        }


async def timed(outcome: HttpOutcome, call: Awaitable[Answer], expected: int) -> Answer | None:
    """The answer, its latency recorded, if it has the expected status; otherwise a failure counted."""
    started = time.perf_counter()
    try:
        answer = await call
    except LoadError as error:
        outcome.failed(error.kind)
        return None
    if answer.status != expected:
        outcome.failed(str(answer.status))
        return None
    outcome.latencies.append(time.perf_counter() - started)
    return answer


async def on_every_connection(
    options: BenchOptions,
    worker: Callable[[], Awaitable[None]],
    progress: Progress,
    detail: Callable[[], str],
) -> tuple[float, CpuClock]:
    """One `worker` per connection until all are done, the count on display; the seconds they took
    and the clock of the load generator's own CPU time."""
    cpu = CpuClock()
    started = time.perf_counter()
    reporter = asyncio.create_task(keep_reporting(progress, detail))
    await asyncio.gather(*(worker() for _ in range(options.connections)))
    seconds = time.perf_counter() - started
    reporter.cancel()
    return seconds, cpu


async def http_post_orders(
    options: BenchOptions, customer: str, progress: Progress, *, url: str | None = None, what: str = ""
) -> tuple[Json, list[str]]:
    """Orders placed as fast as the connections allow, for the phase's duration; the ids placed.
    `url` is another server's (the yardstick's), `what` names it."""
    progress.phase(f"HTTP POST /api/orders{what}: {options.connections} connections, {options.duration:g}s")
    outcome = HttpOutcome()
    created: list[str] = []
    deadline = time.perf_counter() + options.duration
    async with HttpLoad(url or options.orders_url, options.connections) as client:
        place = client.prepare(
            "POST", "/api/orders", headers={"Authorization": f"Bearer {customer}"}, json_body=order_body()
        )

        async def worker() -> None:
            while time.perf_counter() < deadline:
                answer = await timed(outcome, client.send(place), 201)
                if answer is not None:
                    created.append(answer.json()["id"])

        seconds, cpu = await on_every_connection(options, worker, progress, lambda: f"{len(created)} created")
    return {**outcome.summary(seconds), "load_generator_cores": cpu.cores(seconds)}, created


async def http_get_deliveries(
    options: BenchOptions, manager: str, delivery_ids: list[str], progress: Progress
) -> Json:
    """Deliveries read at random as a manager, as fast as the connections allow, for the phase's duration."""
    progress.phase(f"HTTP GET /api/delivery/{{id}}: {options.connections} connections, {options.duration:g}s")
    outcome = HttpOutcome()
    headers = {"Authorization": f"Bearer {manager}"}
    deadline = time.perf_counter() + options.duration
    async with HttpLoad(options.delivery_url, options.connections) as client:
        reads = [client.prepare("GET", f"/api/delivery/{id_}", headers=headers) for id_ in delivery_ids]

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await timed(outcome, client.send(random.choice(reads)), 200)

        seconds, cpu = await on_every_connection(
            options, worker, progress, lambda: f"{len(outcome.latencies)} read"
        )
    return {**outcome.summary(seconds), "load_generator_cores": cpu.cores(seconds)}
