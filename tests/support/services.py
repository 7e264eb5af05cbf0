"""A service app started in the test's event loop by its own lifespan, with an HTTP client in front of it."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
from fastapi import FastAPI

from deliveryhub_kit.runtime import ServiceRuntime
from tests.support.waiting import wait_for


def runtime_of(app: FastAPI) -> ServiceRuntime:
    """The runtime a started service's lifespan put on its app."""
    runtime: ServiceRuntime = app.state.runtime
    return runtime


async def start_in_process(
    stack: AsyncExitStack,
    app: FastAPI,
    name: str,
    *,
    attached: bool = True,
    attach_timeout: float = 15.0,
) -> httpx.AsyncClient:
    """Run `app`'s lifespan on `stack` and return a client of it at `http://<name>.test`.

    Unless told otherwise, it returns once the service's consumers are on the broker, so that an
    event published next is one it receives. Closing `stack` runs the shutdown half of the lifespan.
    """
    await stack.enter_async_context(app.router.lifespan_context(app))
    runtime = runtime_of(app)

    async def on_the_broker() -> bool:
        await runtime.wait_until_attached()
        return bool(runtime.consumers) and runtime.broker.connected

    if attached:
        await wait_for(
            on_the_broker, timeout=attach_timeout, message=f"the {name} service to attach to the broker"
        )
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.test")
    )
