"""The broker declarations of one service, built from the contract's names."""

from __future__ import annotations

from collections.abc import Sequence

from deliveryhub_contracts.topology import Names, QueueSpec
from deliveryhub_kit.broker import ExchangeDeclaration, QueueDeclaration, Topology

QUORUM = {"x-queue-type": "quorum"}
# Dead-lettered by the broker with confirms, so that nothing is lost on the way to the target.
AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}

# The broker's backstop: a message handed out and returned this many times is dead-lettered by the
# broker itself. The consumers settle every message they can read, and return one only when they
# stop or (once) when a database outage lasts, so the limit is reached only by a message that
# takes its consumer down every time it is handed out.
DELIVERY_LIMIT = 50


def consuming_queue(names: Names, spec: QueueSpec) -> QueueDeclaration:
    """A durable quorum queue bound to its keys; whatever the broker itself rejects goes to its DLQ."""
    queue = names.queue(spec)
    return QueueDeclaration(
        name=queue,
        arguments={
            **QUORUM,
            **AT_LEAST_ONCE,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.dead_letter_queue(queue),
        },
        bindings=tuple((names.exchange, key) for key in spec.bindings),
        delivery_limit=DELIVERY_LIMIT,
    )


def dead_letter_queue(queue: str) -> QueueDeclaration:
    """The queue a consumer parks what it cannot apply in; no limit, since looking at a dead letter
    (`deliveryhub dead-letters list`) hands it out and returns it."""
    return QueueDeclaration(name=Names.dead_letter_queue(queue), arguments=QUORUM, delivery_limit=None)


def retry_queues(queue: str, delays_seconds: Sequence[float]) -> tuple[QueueDeclaration, ...]:
    """One delay queue per retry step: a message waits out its TTL there, then the broker
    dead-letters it back to `queue`. Nothing consumes these queues."""
    return tuple(
        QueueDeclaration(
            name=Names.retry_queue(queue, delay),
            arguments={
                **QUORUM,
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
                # Expired messages are moved with confirms, so none is lost on the way back.
                **AT_LEAST_ONCE,
            },
            delivery_limit=DELIVERY_LIMIT,
        )
        for delay in dict.fromkeys(delays_seconds)
    )


def service_topology(
    names: Names, consumes: QueueSpec | None = None, retry_delays: Sequence[float] = ()
) -> Topology:
    """The events exchange, and the service's consuming queue with its dead-letter and delay queues."""
    queues: tuple[QueueDeclaration, ...] = ()
    if consumes is not None:
        queue = consuming_queue(names, consumes)
        queues = (dead_letter_queue(queue.name), *retry_queues(queue.name, retry_delays), queue)
    return Topology(exchanges=(ExchangeDeclaration(names.exchange),), queues=queues)


def legacy_topology(queue_names: tuple[str, ...], retry_delays: Sequence[float] = ()) -> Topology:
    """The teaching design's plain durable queues (declared as it declares them), with their DLQs."""
    queues: list[QueueDeclaration] = []
    for name in queue_names:
        queues.append(dead_letter_queue(name))
        queues.extend(retry_queues(name, retry_delays))
        queues.append(QueueDeclaration(name=name))
    return Topology(queues=tuple(queues))
