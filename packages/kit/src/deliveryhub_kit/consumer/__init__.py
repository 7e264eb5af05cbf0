"""The inbox consumer in three parts: `decoding` (bytes to events, the routes), `policy` (what
becomes of a message that fails: the table) and `runner` (lanes, batches, outages)."""

from deliveryhub_kit.consumer.decoding import (
    DecodedMessage,
    Decoder,
    MessageTooLarge,
    Route,
    Routes,
    cloud_event_decoder,
    event_routes,
    plain_json_decoder,
)
from deliveryhub_kit.consumer.policy import Decision, FailurePolicy, Outcome
from deliveryhub_kit.consumer.runner import BatchPreparer, ConsumerOptions, ConsumerState, InboxConsumer

__all__ = [
    "BatchPreparer",
    "ConsumerOptions",
    "ConsumerState",
    "Decision",
    "DecodedMessage",
    "Decoder",
    "FailurePolicy",
    "InboxConsumer",
    "MessageTooLarge",
    "Outcome",
    "Route",
    "Routes",
    "cloud_event_decoder",
    "event_routes",
    "plain_json_decoder",
]
