"""The benchmark's HTTP load: keep-alive HTTP/1.1 connections that cost the load generator little.

A general client spends milliseconds of CPU per request, on the same cores as the system it
measures; this one writes prepared bytes and reads a `Content-Length` answer, nothing more.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# A connection idle this long is not used again: uvicorn closes one idle for 5 s, and a request
# written as it does so gets no answer (the race every keep-alive client pool steps around).
IDLE_SECONDS = 4.0


class LoadError(Exception):
    """A request that got no HTTP answer; `kind` names what happened, for the error counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True
        self.idle_since = 0.0

    def stale(self, now: float) -> bool:
        """Closed by the server, or idle long enough that it may be as the next request goes."""
        return self.reader.at_eof() or now - self.idle_since > IDLE_SECONDS

    async def exchange(self, request: bytes) -> Answer:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        for line in header_lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
            elif name == b"transfer-encoding":
                raise LoadError("TransferEncodingUnsupported")
        body = await self.reader.readexactly(length) if length else b""
        return Answer(status, body)

    def close(self) -> None:
        self.writer.close()


class HttpLoad:
    """Up to `connections` keep-alive connections to one server, each used by one request at a time."""

    def __init__(self, base_url: str, connections: int, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the load generator speaks plain http only, not {base_url}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._authority = parts.netloc.encode()
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    async def __aenter__(self) -> HttpLoad:
        return self

    async def __aexit__(self, *_: object) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def prepare(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, json_body: Any = None
    ) -> bytes:
        """The bytes of one request, to be sent any number of times."""
        body = b"" if json_body is None else json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._authority]
        lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        if json_body is not None:
            lines.append(b"Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}".encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def send(self, request: bytes) -> Answer:
        async with self._slots:
            connection = await self._checkout()
            try:
                async with asyncio.timeout(self._timeout):
                    answer = await connection.exchange(request)
            except TimeoutError:
                connection.close()
                raise LoadError("Timeout") from None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
                connection.close()
                raise LoadError(type(error).__name__) from None
            except LoadError:
                connection.close()
                raise
            if connection.reusable:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.append(connection)
            else:
                connection.close()
            return answer

    async def _checkout(self) -> _Connection:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if not connection.stale(now):
                return connection
            connection.close()
        return await self._connect()

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as error:
            raise LoadError(f"Connect{type(error).__name__}") from None
        return _Connection(reader, writer)
