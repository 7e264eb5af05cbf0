"""Loopback ports nothing listens on: for a server or a service a test starts, or one that is down."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def unused_url(scheme: str) -> str:
    """A URL on a local port where nothing listens: a server that is down."""
    return f"{scheme}://guest:guest@127.0.0.1:{free_port()}/unreachable"
