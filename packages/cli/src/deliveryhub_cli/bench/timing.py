"""How the bench shows its phases and sums up what it timed."""

from __future__ import annotations

import asyncio
import math
import resource
import sys
import time
from collections.abc import Callable

from deliveryhub_cli.bench.options import Json


class Progress:
    """One line per phase on stderr, redrawn in place on a terminal."""

    def __init__(self, phases: int) -> None:
        self._phases = phases
        self._phase = 0
        self._name = ""
        self._started = time.monotonic()
        self._tty = sys.stderr.isatty()

    def phase(self, name: str) -> None:
        if self._tty and self._name:
            print(file=sys.stderr)
        self._phase += 1
        self._name = name
        self._started = time.monotonic()
        self.update("")

    def update(self, detail: str) -> None:
        line = f"[{self._phase}/{self._phases}] {self._name} {detail}".rstrip()
        if self._tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif not detail:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._tty:
            print(file=sys.stderr)


async def keep_reporting(progress: Progress, detail: Callable[[], str]) -> None:
    """Show a phase's running count twice a second, until cancelled."""
    while True:
        await asyncio.sleep(0.5)
        progress.update(detail())


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(latencies: list[float]) -> Json:
    """The median, 95th and 99th percentile of `latencies`, in milliseconds."""
    return {
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


class CpuClock:
    """CPU seconds this process (the load generator) spent, to show what the load itself cost."""

    def __init__(self) -> None:
        self._started = self._now()

    @staticmethod
    def _now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def cores(self, seconds: float) -> float:
        return round((self._now() - self._started) / seconds, 2)
