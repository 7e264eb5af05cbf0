"""Names of the broker topology; a prefix lets several systems share one broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from deliveryhub_contracts.legacy import ORDER_CREATED_QUEUE, ORDER_PAID_QUEUE

EXCHANGE: Final = "deliveryhub.events"


@dataclass(frozen=True)
class QueueSpec:
    """A consuming service's queue and the routing keys bound to it."""

    name: str
    bindings: tuple[str, ...]


DELIVERY_ORDER_EVENTS: Final = QueueSpec("delivery.order-events", ("order.*",))
ORDERS_DELIVERY_EVENTS: Final = QueueSpec("orders.delivery-events", ("delivery.*",))


@dataclass(frozen=True)
class Names:
    """Every broker name of one system, with its prefix applied."""

    prefix: str = ""

    @property
    def exchange(self) -> str:
        return self.prefix + EXCHANGE

    def queue(self, spec: QueueSpec) -> str:
        return self.prefix + spec.name

    @staticmethod
    def dead_letter_queue(queue: str) -> str:
        return f"{queue}.dead-letter"

    @staticmethod
    def retry_queue(queue: str, delay_seconds: float) -> str:
        """Where a message waits `delay_seconds` before it goes back to `queue`."""
        return f"{queue}.retry.{round(delay_seconds * 1000)}ms"


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """Whether a topic exchange routes `routing_key` by `binding_key`: `*` is one word, `#` zero or more."""
    return _words_match(tuple(binding_key.split(".")), tuple(routing_key.split(".")))


def _words_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])


def legacy_queues(legacy_prefix: str) -> tuple[str, str]:
    """The teaching design's `order_created` and `order_paid` queue names."""
    return legacy_prefix + ORDER_CREATED_QUEUE, legacy_prefix + ORDER_PAID_QUEUE
