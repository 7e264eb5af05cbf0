"""Waiting on a condition with a deadline, never a fixed sleep: from a synchronous test or an async one."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, overload

import pytest

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], *, what: str, timeout: float = 20.0) -> T:
    """Poll `probe` until it returns a value; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class WaitFor(Protocol):
    @overload
    async def __call__(
        self,
        condition: Callable[[], Awaitable[T | None]],
        *,
        timeout: float = ...,  # noqa: ASYNC109
        message: str | None = ...,
    ) -> T: ...

    @overload
    async def __call__(
        self,
        condition: Callable[[], T | None],
        *,
        timeout: float = ...,  # noqa: ASYNC109
        message: str | None = ...,
    ) -> T: ...


@overload
async def wait_for(
    condition: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    message: str | None = ...,
) -> T: ...


@overload
async def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    message: str | None = ...,
) -> T: ...


async def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (the deadline is the point of this helper)
    message: str | None = None,
) -> object:
    """Poll `condition` (sync or async) until it returns something truthy, and return that.

    A condition may also raise AssertionError to say what it saw; at the deadline the test fails
    with `message` and the last thing the condition returned or said.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    interval = 0.01
    while True:
        last: object
        try:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = result
        except AssertionError as error:
            last = error
        if loop.time() >= deadline:
            what = message or getattr(condition, "__qualname__", repr(condition))
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last saw: {last!r}")
        await asyncio.sleep(interval)
        interval = min(interval * 2, 0.1)
