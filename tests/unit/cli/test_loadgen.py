"""The bench's HTTP load against a real uvicorn server: a keep-alive connection the server has
closed, or may be closing, is not used for the next request (else that request counts as an
error of the system measured)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn

from deliveryhub_cli.loadgen import IDLE_SECONDS, HttpLoad
from tests.support.ports import free_port
from tests.support.waiting import wait_for


async def _hello(scope: dict[str, object], receive: object, send: object) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    port = free_port()
    # No log_config and no log_level: uvicorn leaves the process's logging as it found it.
    config = uvicorn.Config(
        _hello,
        host="127.0.0.1",
        port=port,
        timeout_keep_alive=1,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, message="the server to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


async def test_a_connection_the_server_closed_is_not_used_again(server_url: str) -> None:
    async with HttpLoad(server_url, connections=4) as load:
        request = load.prepare("GET", "/")
        assert (await load.send(request)).status == 200
        [idle] = load._idle
        # The server closes it after its keep-alive timeout; the client sees the end of the stream.
        await wait_for(idle.reader.at_eof, message="the server to close the idle connection")

        answer = await load.send(request)

        assert answer.status == 200
        assert idle.writer.is_closing()


async def test_a_connection_idle_nearly_as_long_as_the_server_keeps_it_is_not_used_again(
    server_url: str,
) -> None:
    async with HttpLoad(server_url, connections=4) as load:
        request = load.prepare("GET", "/")
        await load.send(request)
        [idle] = load._idle

        assert not idle.stale(idle.idle_since + IDLE_SECONDS - 0.5)
        assert idle.stale(idle.idle_since + IDLE_SECONDS + 0.01)
