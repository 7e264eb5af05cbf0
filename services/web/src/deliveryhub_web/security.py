"""CSRF tokens, signed flash messages and the sign-in rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class Signer:
    """HMAC-SHA256 with the console's secret, one purpose per signer."""

    def __init__(self, secret: str, purpose: str) -> None:
        self._key = hashlib.sha256(f"{purpose}\x00{secret}".encode()).digest()

    def digest(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def sign(self, value: str) -> str:
        return f"{value}.{self.digest(value)}"

    def unsign(self, signed: str) -> str | None:
        value, _, digest = signed.rpartition(".")
        # Bytes: compare_digest raises on a str with non-ASCII characters, which a forger may send.
        if value and hmac.compare_digest(digest.encode(), self.digest(value).encode()):
            return value
        return None


class Csrf:
    """A form token bound to the browser (its session, or before sign-in its visitor cookie)."""

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, "csrf")

    def token_for(self, binding: str) -> str:
        return self._signer.digest(binding)

    def is_valid(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(token.encode(), self.token_for(binding).encode())


@dataclass(frozen=True)
class Flash:
    """A one-time message shown on the next page, next to what it is about."""

    message: str
    kind: str = "error"
    target: str | None = None


class FlashCodec:
    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, "flash")

    def encode(self, flash: Flash) -> str:
        raw = json.dumps({"m": flash.message, "k": flash.kind, "t": flash.target}, ensure_ascii=False)
        return self._signer.sign(base64.urlsafe_b64encode(raw.encode()).decode())

    def decode(self, cookie: str | None) -> Flash | None:
        if not cookie:
            return None
        value = self._signer.unsign(cookie)
        if value is None:
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(value.encode()))
            return Flash(message=str(raw["m"]), kind=str(raw["k"]), target=raw["t"])
        except (ValueError, KeyError, TypeError):
            return None


class RateLimiter:
    """At most `limit` attempts per key in any `window` seconds (a sliding window, in memory)."""

    def __init__(
        self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}

    def attempt(self, *keys: str) -> float | None:
        """Count an attempt under each key; seconds to wait if one is over its limit, else None."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            attempts = self._attempts.setdefault(key, deque())
            while attempts and attempts[0] <= now - self._window:
                attempts.popleft()
            if len(attempts) >= self._limit:
                wait = max(wait, attempts[0] + self._window - now)
        if wait > 0:
            return wait
        for key in keys:
            self._attempts[key].append(now)
        self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        if len(self._attempts) > 10_000:
            idle = [
                key for key, times in self._attempts.items() if not times or times[-1] <= now - self._window
            ]
            for key in idle:
                del self._attempts[key]
