"""Requests per caller and per address, bounded, in each service process.

A token bucket per key: `rate` requests a second on average, up to `rate × burst_seconds` at once.
The table keeps at most `max_keys` keys (the one unused longest goes first), so no caller can make
it grow. The gateway limits per address too, over every replica; these limits hold on a service's
own port as well, and per token subject, which the gateway cannot see.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from deliveryhub_kit.errors import TooManyRequests
from deliveryhub_kit.http_errors import error_response

# What an orchestrator or a scraper asks for is never limited.
UNLIMITED_PATHS = ("/health/", "/metrics")


class RequestRate:
    """Token buckets by key; a rate of 0 means no limit."""

    def __init__(
        self,
        rate: float,
        *,
        burst_seconds: float = 2.0,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate * burst_seconds)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: (tokens, at)

    @property
    def limited(self) -> bool:
        return self._rate > 0

    def take(self, key: str) -> float | None:
        """Take one request from `key`'s bucket; the seconds until one is free if it is empty."""
        if not self.limited:
            return None
        now = self._clock()
        tokens, at = self._buckets.pop(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = None
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self._rate
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


def too_many_requests(what: str, wait: float) -> TooManyRequests:
    seconds = max(1, int(wait + 0.999))
    return TooManyRequests(f"too many requests from {what}; try again in {seconds} s", seconds)


class AddressRate:
    """Answer 429 to an address over its rate, before the request reaches a route."""

    def __init__(self, app: ASGIApp, rate: RequestRate) -> None:
        self.app = app
        self.rate = rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.rate.limited or scope["path"].startswith(UNLIMITED_PATHS):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.rate.take(client[0] if client else "unknown")
        if wait is None:
            await self.app(scope, receive, send)
            return
        refused = too_many_requests("your address", wait)
        response = error_response(
            429, refused.code, refused.detail, **{"Retry-After": str(refused.retry_after_seconds)}
        )
        await response(scope, receive, send)
