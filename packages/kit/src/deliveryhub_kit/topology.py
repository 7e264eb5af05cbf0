"""The broker declarations of one service, built from the contract's names."""

from __future__ import annotations

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


def service_topology(names: Names, consumes: QueueSpec | None = None) -> Topology:
    """The events exchange, and the service's consuming queue with its dead-letter queue."""
    queues: tuple[QueueDeclaration, ...] = ()
    if consumes is not None:
        queue = consuming_queue(names, consumes)
        dead_letters = QueueDeclaration(name=names.dead_letter_queue(queue.name), arguments=QUORUM)
        queues = (dead_letters, queue)
    return Topology(exchanges=(ExchangeDeclaration(names.exchange),), queues=queues)


def legacy_topology(queue_names: tuple[str, ...]) -> Topology:
    """The teaching design's plain durable queues (declared as it declares them), with their DLQs."""
    queues: list[QueueDeclaration] = []
    for name in queue_names:
        queues.append(QueueDeclaration(name=Names.dead_letter_queue(name), arguments=QUORUM))
        queues.append(QueueDeclaration(name=name))
    return Topology(queues=tuple(queues))
