"""CSRF tokens, signed flash messages and the sign-in rate limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
    """A one-time message shown on the next page, next to what it is about; and, after an action
    on several items, why each refused one was refused, next to it."""

    message: str
    kind: str = "error"
    target: str | None = None
    refusals: dict[str, str] = field(default_factory=dict)


# A browser keeps a cookie of about 4 KB: refusals past this are summed up in the message alone.
MOST_FLASH_BYTES = 3000


class FlashCodec:
    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, "flash")

    def encode(self, flash: Flash) -> str:
        # The same reason is written once, with the ids it refused.
        grouped: dict[str, list[str]] = {}
        for target, reason in flash.refusals.items():
            grouped.setdefault(reason, []).append(target)
        document = {"m": flash.message, "k": flash.kind, "t": flash.target, "r": list(grouped.items())}
        cookie = self._sign(document)
        if len(cookie) > MOST_FLASH_BYTES:
            cookie = self._sign({**document, "r": []})
        return cookie

    def _sign(self, document: dict[str, Any]) -> str:
        raw = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        return self._signer.sign(base64.urlsafe_b64encode(raw.encode()).decode())

    def decode(self, cookie: str | None) -> Flash | None:
        if not cookie:
            return None
        value = self._signer.unsign(cookie)
        if value is None:
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(value.encode()))
            refusals = {
                str(target): str(reason) for reason, targets in raw.get("r", []) for target in targets
            }
            return Flash(message=str(raw["m"]), kind=str(raw["k"]), target=raw["t"], refusals=refusals)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class RateLimiter:
    """At most `limit` events per key in any `window_seconds` (a sliding window, in memory).

    Whatever a caller sends, the table stays small: a key is kept as a 16-byte digest of its text,
    and past `max_keys` keys the one unused longest is forgotten first.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._events: OrderedDict[bytes, deque[float]] = OrderedDict()

    @property
    def limit(self) -> int:
        return self._limit

    def wait(self, key: str) -> float | None:
        """Seconds until `key` may act again, or None if it may now; counts nothing."""
        digest = _digest(key)
        events = self._events.get(digest)
        if events is None:
            return None
        # A key asked about is in use: the last to be forgotten (a refused caller stays refused).
        self._events.move_to_end(digest)
        now = self._clock()
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) < self._limit:
            return None
        return max(events[0] + self._window - now, 0.001)

    def count(self, key: str) -> None:
        """Count one event of `key`."""
        digest = _digest(key)
        events = self._events.get(digest)
        if events is None:
            events = self._events[digest] = deque(maxlen=self._limit)
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(digest)
        events.append(self._clock())

    def attempt(self, key: str) -> float | None:
        """Count an attempt of `key` unless it is over its limit; the seconds to wait if it is."""
        wait = self.wait(key)
        if wait is None:
            self.count(key)
        return wait

    def clear(self, key: str) -> None:
        self._events.pop(_digest(key), None)

    def __len__(self) -> int:
        return len(self._events)


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SignInGuard:
    """Who may try a password now.

    The cheap limit comes first: every attempt from one address counts toward its own limit. Then
    only failures count, per account and address (so that one address guessing at an account does
    not lock its owner out elsewhere; a success there clears it) and per account from anywhere, a
    slower backstop against guessing spread over many addresses.
    """

    def __init__(
        self,
        attempts: int,
        window_seconds: float,
        *,
        account_attempts: int,
        account_window_seconds: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = RateLimiter(attempts * 4, window_seconds, max_keys=max_keys, clock=clock)
        self.account_at_address = RateLimiter(attempts, window_seconds, max_keys=max_keys, clock=clock)
        self.account = RateLimiter(account_attempts, account_window_seconds, max_keys=max_keys, clock=clock)

    def before(self, email: str, address: str) -> float | None:
        """Count an attempt from `address`; the seconds to wait if it may not try now."""
        return (
            self.address.attempt(address)
            or self.account_at_address.wait(f"{email}\x00{address}")
            or self.account.wait(email)
        )

    def failed(self, email: str, address: str) -> None:
        self.account_at_address.count(f"{email}\x00{address}")
        self.account.count(email)

    def succeeded(self, email: str, address: str) -> None:
        self.account_at_address.clear(f"{email}\x00{address}")
