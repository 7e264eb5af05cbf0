"""Just enough of AMQP 0-9-1 framing to see the broker's publisher confirms go by on a proxied line."""

from __future__ import annotations

from tests.support.proxy import ReplyWatcher

METHOD_FRAME = 1
# class 60 (basic), method 80 (ack): from the broker to a publisher, that is a publisher confirm.
BASIC_ACK = (60).to_bytes(2, "big") + (80).to_bytes(2, "big")
FRAME_HEADER_BYTES = 7  # type (1), channel (2), payload size (4); a frame-end octet follows the payload


class ConfirmTripwire:
    """Trips on the first publisher confirm the broker sends after `arm()`, once."""

    def __init__(self) -> None:
        self.armed = False
        self.tripped = False

    def arm(self) -> None:
        self.armed = True

    def watcher(self) -> ReplyWatcher:
        """A watcher for one connection, reading its frames from the first byte the broker sends."""
        pending = bytearray()

        def watch(chunk: bytes) -> bool:
            pending.extend(chunk)
            confirmed = False
            while len(pending) >= FRAME_HEADER_BYTES:
                size = int.from_bytes(pending[3:7], "big")
                end = FRAME_HEADER_BYTES + size + 1
                if len(pending) < end:
                    break
                kind, payload = pending[0], bytes(pending[FRAME_HEADER_BYTES : end - 1])
                del pending[:end]
                confirmed = confirmed or (kind == METHOD_FRAME and payload[:4] == BASIC_ACK)
            if confirmed and self.armed:
                self.armed = False
                self.tripped = True
                return True
            return False

        return watch
