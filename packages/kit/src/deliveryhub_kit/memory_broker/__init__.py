"""The broker interface in process: RabbitMQ's routing, acks and dead-lettering within one process.

`deliveryhub up --embedded` runs the services in one process on this broker, named by the URL
`memory://FILE` in `AMQP_URL`. Brokers opened on the same URL in one process share one
`MemoryHub`, which stands in for the RabbitMQ server: the same exchanges, queues and messages.

What it keeps of RabbitMQ's meaning: topic, direct and fanout exchanges with their bindings (in a
topic key `*` is one word and `#` any number of words; one copy per queue however many of its
bindings match); the default exchange `""`, which routes to the queue named by the routing key; a
mandatory publish that no queue is bound for raises `Unroutable`; consumers with a prefetch limit,
served in turn; ack, requeue (delivered again with `redelivered` set: a quorum queue puts it
behind the messages waiting, a classic queue back at the head) and reject, which dead-letters the
message to the queue's `x-dead-letter-exchange` / `x-dead-letter-routing-key` (or drops it) as a
new message there, with the `x-first-death-*` headers; a queue's `x-message-ttl`, after which a
waiting message is dead-lettered the same way (the delay queues of the consumers' retries); a
subscription that closes gives the messages in its hands back to the head of the queue; and, as a
quorum queue of RabbitMQ 3.x and 4.0 to 4.2 does, every return to a quorum queue (a requeue, a
closed subscription) counts in the message's `x-delivery-count` header, and past the queue's
`x-delivery-limit` the message is dead-lettered instead; a classic queue counts nothing, so its
`delivery_count` only says whether the message was handed out before. Where RabbitMQ versions
differ it does as 3.x does: a dead letter carries no count from the queue it left (RabbitMQ 4
carries a rejection's count into a quorum target), and it gets no `x-last-death-*` headers. Not
kept: the `x-death` header. Other queue arguments (overflow, dead-letter strategy) are accepted
and ignored.

Durability: with a FILE, the exchanges, queues, bindings and messages live in that SQLite file,
written before each call returns. A publish is confirmed once its copies are stored, an ack
deletes the message, and a process that starts again on the same file finds every message that
was not acked due again (marked redelivered if it had been handed out), every binding in place
before any service declares it again, and each delay queue's countdown where it stood. With
`memory://` alone, nothing outlives the last broker that closes.
"""

from deliveryhub_kit.memory_broker.adapter import MemoryBroker
from deliveryhub_kit.memory_broker.hub import MemoryHub, is_memory_url, store_path

__all__ = ["MemoryBroker", "MemoryHub", "is_memory_url", "store_path"]
