"""Readiness says when the broker or the database is out of reach, and recovers with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import pytest

from tests.support.delivery import StartDelivery
from tests.support.proxy import TcpProxy

if TYPE_CHECKING:
    from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker_line() -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def database_line() -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", 5432).start()
    yield proxy
    await proxy.close()


async def _readiness_turns(running: Any, wait_for: WaitFor, *, status: int, check: str) -> dict[str, Any]:
    async def answers() -> dict[str, Any] | None:
        response = await running.client.get("/health/ready")
        body: dict[str, Any] = response.json()
        return body if response.status_code == status and body["checks"][check]["status"] else None

    return cast(dict[str, Any], await wait_for(answers, timeout=30, message=f"readiness to answer {status}"))


async def test_readiness_fails_while_the_broker_is_cut_and_recovers(
    start_delivery: StartDelivery, broker_line: TcpProxy, wait_for: WaitFor
) -> None:
    running = await start_delivery(amqp_url=broker_line.url("amqp://guest:guest@", "/"))
    ready = await _readiness_turns(running, wait_for, status=200, check="broker")
    assert set(ready["checks"]) >= {"database", "migrations", "broker", "shutdown"}
    assert all("status" in check for check in ready["checks"].values())
    assert "latency_ms" in ready["checks"]["database"]

    await broker_line.cut()
    failing = await _readiness_turns(running, wait_for, status=503, check="broker")
    assert failing["checks"]["broker"]["status"] == "failing"
    assert failing["checks"]["database"]["status"] == "ok"

    broker_line.mend()
    await _readiness_turns(running, wait_for, status=200, check="broker")


async def test_readiness_fails_while_the_database_is_cut_and_recovers(
    start_delivery: StartDelivery, delivery_database_url: str, database_line: TcpProxy, wait_for: WaitFor
) -> None:
    through_proxy = delivery_database_url.replace("127.0.0.1:5432", f"127.0.0.1:{database_line.port}")
    assert through_proxy != delivery_database_url
    running = await start_delivery(database_url=through_proxy)
    await _readiness_turns(running, wait_for, status=200, check="database")

    await database_line.cut()
    failing = await _readiness_turns(running, wait_for, status=503, check="database")
    assert failing["checks"]["database"]["status"] == "failing"
    assert failing["checks"]["broker"]["status"] == "ok"

    database_line.mend()
    ready = await _readiness_turns(running, wait_for, status=200, check="database")
    assert ready["checks"]["migrations"]["status"] == "ok"
