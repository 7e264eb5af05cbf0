"""A TCP proxy between a service and a real server, so that a test can cut the line and mend it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

# Reads the server's bytes of one connection, chunk by chunk; True holds that chunk and the rest.
ReplyWatcher = Callable[[bytes], bool]


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `cut()` drops every connection and refuses new ones.

    With a `reply_watcher` (a factory called for each new connection), the server's bytes of each
    connection are shown to a watcher before they are forwarded; once it answers True, that chunk
    and everything after it are held back from the client, as if the line had frozen at that very
    point, and `held` is set.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = True
        self.reply_watcher: Callable[[], ReplyWatcher] | None = None
        self.held = asyncio.Event()
        self.port = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, scheme_and_credentials: str, path: str = "") -> str:
        return f"{scheme_and_credentials}127.0.0.1:{self.port}{path}"

    async def cut(self) -> None:
        """Close every connection through the proxy and refuse new ones until `mend()`."""
        self._open = False
        for writer in list(self._writers):
            writer.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def mend(self) -> None:
        self._open = True

    async def close(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self._open:
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        watcher = self.reply_watcher() if self.reply_watcher is not None else None
        pipes = (
            asyncio.create_task(self._pipe(client_reader, server_writer)),
            asyncio.create_task(self._pipe(server_reader, client_writer, watcher)),
        )
        self._pipes.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watcher: ReplyWatcher | None = None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if watcher is not None and watcher(data):
                    self.held.set()
                    await asyncio.Event().wait()  # frozen here until the line is cut or closed
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
