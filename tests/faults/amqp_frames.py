"""Just enough of AMQP 0-9-1 framing to see a given method of the broker's go by on a proxied line."""

from __future__ import annotations

from tests.support.proxy import ReplyWatcher

METHOD_FRAME = 1
FRAME_HEADER_BYTES = 7  # type (1), channel (2), payload size (4); a frame-end octet follows the payload


def method(class_id: int, method_id: int) -> bytes:
    """The first four octets of a method frame's payload: its class and method ids."""
    return class_id.to_bytes(2, "big") + method_id.to_bytes(2, "big")


# From the broker to a publisher, basic.ack (60, 80) is a publisher confirm.
BASIC_ACK = method(60, 80)
# The broker's answers to the steps of a client attaching: a channel opened, a queue declared,
# a consumer started.
CHANNEL_OPEN_OK = method(20, 11)
QUEUE_DECLARE_OK = method(50, 11)
BASIC_CONSUME_OK = method(60, 21)


class FrameTripwire:
    """Trips on the first frame of one method the broker sends after `arm()`, once."""

    def __init__(self, wanted: bytes, *, armed: bool = False) -> None:
        self.wanted = wanted
        self.armed = armed
        self.tripped = False

    def arm(self) -> None:
        self.armed = True

    def watcher(self) -> ReplyWatcher:
        """A watcher for one connection, reading its frames from the first byte the broker sends."""
        pending = bytearray()

        def watch(chunk: bytes) -> bool:
            pending.extend(chunk)
            seen = False
            while len(pending) >= FRAME_HEADER_BYTES:
                size = int.from_bytes(pending[3:7], "big")
                end = FRAME_HEADER_BYTES + size + 1
                if len(pending) < end:
                    break
                kind, payload = pending[0], bytes(pending[FRAME_HEADER_BYTES : end - 1])
                del pending[:end]
                seen = seen or (kind == METHOD_FRAME and payload[:4] == self.wanted)
            if seen and self.armed:
                self.armed = False
                self.tripped = True
                return True
            return False

        return watch


class ConfirmTripwire(FrameTripwire):
    """Trips on the first publisher confirm the broker sends after `arm()`, once."""

    def __init__(self) -> None:
        super().__init__(BASIC_ACK)
