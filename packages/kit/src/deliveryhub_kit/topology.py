"""The broker declarations of one service, built from the contract's names."""

from __future__ import annotations

from collections.abc import Sequence

from deliveryhub_contracts.topology import Names, QueueSpec
from deliveryhub_kit.broker import ExchangeDeclaration, QueueDeclaration, Topology

QUORUM = {"x-queue-type": "quorum"}


def consuming_queue(names: Names, spec: QueueSpec) -> QueueDeclaration:
    """A durable quorum queue bound to its keys; whatever the broker itself rejects goes to its DLQ."""
    queue = names.queue(spec)
    return QueueDeclaration(
        name=queue,
        arguments={
            **QUORUM,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.dead_letter_queue(queue),
        },
        bindings=tuple((names.exchange, key) for key in spec.bindings),
    )


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
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
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
        dead_letters = QueueDeclaration(name=names.dead_letter_queue(queue.name), arguments=QUORUM)
        queues = (dead_letters, *retry_queues(queue.name, retry_delays), queue)
    return Topology(exchanges=(ExchangeDeclaration(names.exchange),), queues=queues)


def legacy_topology(queue_names: tuple[str, ...], retry_delays: Sequence[float] = ()) -> Topology:
    """The teaching design's plain durable queues (declared as it declares them), with their DLQs."""
    queues: list[QueueDeclaration] = []
    for name in queue_names:
        queues.append(QueueDeclaration(name=Names.dead_letter_queue(name), arguments=QUORUM))
        queues.extend(retry_queues(name, retry_delays))
        queues.append(QueueDeclaration(name=name))
    return Topology(queues=tuple(queues))
