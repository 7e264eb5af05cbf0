"""The delivery database answers "not now" while orders stream in: nothing parked, nothing lost.

Unlike a cut line, here PostgreSQL itself answers: it is not accepting connections (55000), the
service's role has reached its connection limit (53300), it has become read-only as a standby is
after a failover (25006), or it restarts (57P01 to the sessions it ends, 57P03 while it starts,
refused connections between). Each outage lasts longer than a consumer holds messages, so the
consumers also give what they hold back once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractConnection

from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.migrations import upgrade
from tests.faults.invariants import SystemView, converge
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, InProcessService, Lines, Shop, fault_system, mixed_stories
from tests.support.broker import Amqp, BrokerNamespace
from tests.support.databases import POSTGRES_SERVER_URL, Databases, migrations_of
from tests.support.metrics import counter_total, settled_after_returns
from tests.support.postgres import PrivateServer
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 20
OUTAGE_SECONDS = 3.0
# Each message is handed out once, and back at most once per outage: "a handful" is two.
MOST_RETURNS = 2

Fault = Callable[[], Awaitable[None]]


async def _execute(url: str, statement: str, *arguments: object) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(statement, *arguments)
    finally:
        await connection.close()


async def _admin(statement: str) -> None:
    await _execute(f"{POSTGRES_SERVER_URL}/postgres", statement)


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def _end_sessions(server: str, database: str, role: str | None = None) -> None:
    """End the sessions open on `database` (of one role), as a failover or a restart would."""
    query = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()"
    )
    if role is None:
        await _execute(f"{server}/postgres", query, database)
    else:
        await _execute(f"{server}/postgres", query + " AND usename = $2", database, role)


@dataclass(frozen=True)
class Seen:
    cut_at: float
    mended_at: float
    api_status: int
    api_answered_in: float
    readiness: dict[str, object]
    parked_during: int


async def _during_the_outage(
    system: FaultSystem,
    view: SystemView,
    delivery: InProcessService,
    tokens: Tokens,
    start: Fault,
    mend: Fault,
) -> Seen:
    async def consuming() -> bool:
        return len(await view.deliveries()) >= ORDERS // 5

    await wait_for(consuming, timeout=30, message="the consumer to be under way")
    cut_at = time.monotonic()
    await start()

    async def refused() -> httpx.Response | None:
        # A write: a read-only database still answers reads.
        asked = await delivery.client.post(f"/api/delivery/{uuid.uuid4()}/cancel", headers=tokens.manager())
        return asked if asked.status_code == 503 else None

    asked_at = time.monotonic()
    answer = await wait_for(refused, timeout=10, message="the delivery API to answer 503")
    answered_in = time.monotonic() - asked_at
    assert set(answer.json()) == {"error", "detail"}, answer.text

    async def not_ready() -> dict[str, object] | None:
        response = await delivery.client.get("/health/ready")
        body: dict[str, object] = response.json()
        return body if response.status_code == 503 else None

    readiness = await wait_for(not_ready, timeout=10, message="readiness to say why it is not ready")
    await asyncio.sleep(max(0.0, cut_at + OUTAGE_SECONDS - time.monotonic()))  # the outage's length
    parked = await view.amqp.message_count(system.dead_letter_queue("delivery"))
    await mend()
    return Seen(cut_at, time.monotonic(), answer.status_code, answered_in, readiness, parked)


async def _scenario(
    system: FaultSystem,
    view: SystemView,
    tokens: Tokens,
    scenario: ScenarioRecord,
    *,
    title: str,
    fault: str,
    start: Fault,
    mend: Fault,
) -> None:
    orders = await system.start_in_process("orders")
    delivery = await system.start_in_process("delivery")
    shop = Shop(tokens, [orders.client])
    watching = asyncio.create_task(_during_the_outage(system, view, delivery, tokens, start, mend))
    await shop.stream(mixed_stories(ORDERS), every=0.15)
    seen = await watching
    converge_seconds = await converge(view, shop.stories, timeout=60)

    assert not shop.failures(), shop.failures()
    assert seen.parked_during == 0
    returns = settled_after_returns(delivery.runtime.metrics)
    assert returns, "no message was settled"
    assert max(returns) <= MOST_RETURNS, f"a message was returned more than {MOST_RETURNS} times: {returns}"
    given_back = int(counter_total(delivery.runtime.metrics.messages_returned))

    scenario.title = title
    scenario.fault = fault
    scenario.fault_seconds = round(seen.mended_at - seen.cut_at, 1)
    scenario.orders = ORDERS
    scenario.checked = [
        "the delivery API answered a write with 503 and the error body",
        "readiness answered 503 and said why",
        "no message dead-lettered, none acked without its effect",
        f"no message handed out more than {MOST_RETURNS + 1} times",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("API answer during the outage (s)", seen.api_answered_in)
    scenario.figure("readiness said", _readiness_reason(seen.readiness))
    scenario.figure("messages given back once the hold ran out", given_back)
    scenario.figure(f"messages settled after 0 / 1 / {MOST_RETURNS} returns", _spread(returns))
    scenario.figure("writes answered 2xx (orders)", len(shop.answers))


def _spread(returns: dict[int, int]) -> str:
    return " / ".join(str(returns.get(count, 0)) for count in range(MOST_RETURNS + 1))


def _readiness_reason(readiness: dict[str, object]) -> str:
    checks = readiness.get("checks")
    assert isinstance(checks, dict)
    said = [
        f"{name}: {check.get('cause') or check.get('paused') or check.get('error')}"
        for name, check in checks.items()
        if isinstance(check, dict) and check.get("status") != "ok"
    ]
    assert said, readiness
    return "; ".join(said)[:300]


async def test_database_not_accepting_connections(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord
) -> None:
    url = system.database_urls["delivery"]
    database = _name(url)

    async def refuse() -> None:
        await _execute(
            f"{POSTGRES_SERVER_URL}/postgres", f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'
        )
        await _end_sessions(POSTGRES_SERVER_URL, database)

    async def accept() -> None:
        await _execute(
            f"{POSTGRES_SERVER_URL}/postgres", f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'
        )

    await _scenario(
        system,
        view,
        tokens,
        scenario,
        title="Database not accepting connections",
        fault="ALTER DATABASE … ALLOW_CONNECTIONS false on the delivery database, its sessions ended",
        start=refuse,
        mend=accept,
    )


@pytest.fixture
async def limited_role(system: FaultSystem) -> AsyncIterator[str]:
    """A login role of the delivery service's own with every right on its tables."""
    role = f"dh_test_{uuid.uuid4().hex[:10]}"
    url = system.database_urls["delivery"]
    await _admin(f'CREATE ROLE "{role}" LOGIN')
    for statement in (
        f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    ):
        await _execute(url, statement)
    system.database_urls["delivery"] = url.replace("postgres@", f"{role}@", 1)
    yield role
    system.database_urls["delivery"] = url
    await _execute(url, f'DROP OWNED BY "{role}"')
    await _admin(f'DROP ROLE "{role}"')


async def test_database_connection_limit_reached(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord, limited_role: str
) -> None:
    database = _name(system.database_urls["delivery"])

    async def at_the_limit() -> None:
        await _admin(f'ALTER ROLE "{limited_role}" CONNECTION LIMIT 0')
        await _end_sessions(POSTGRES_SERVER_URL, database, limited_role)

    async def below_it() -> None:
        await _admin(f'ALTER ROLE "{limited_role}" CONNECTION LIMIT -1')

    await _scenario(
        system,
        view,
        tokens,
        scenario,
        title="Database connection limit reached",
        fault="the delivery service's role at its connection limit (ALTER ROLE … CONNECTION LIMIT 0), "
        "its sessions ended",
        start=at_the_limit,
        mend=below_it,
    )


async def test_database_becomes_read_only(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord
) -> None:
    database = _name(system.database_urls["delivery"])

    async def read_only() -> None:
        await _admin(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        await _end_sessions(POSTGRES_SERVER_URL, database)  # as a failover ends them

    async def writable() -> None:
        # The sessions opened meanwhile are left alone: the service must notice by itself.
        await _execute(
            f"{POSTGRES_SERVER_URL}/postgres",
            f'ALTER DATABASE "{database}" RESET default_transaction_read_only',
        )

    await _scenario(
        system,
        view,
        tokens,
        scenario,
        title="Database read-only, as a standby after a failover",
        fault="default_transaction_read_only on for the delivery database, its sessions ended; "
        "then off again, with the sessions opened meanwhile left open",
        start=read_only,
        mend=writable,
    )


@pytest.fixture
async def private_server() -> AsyncIterator[PrivateServer]:
    server = await PrivateServer().start()
    yield server
    await server.close()


@pytest.fixture
async def restartable_system(
    databases: Databases,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    tmp_path: Path,
    private_server: PrivateServer,
) -> AsyncIterator[FaultSystem]:
    """The fault system with the delivery database on a server of the test's own."""
    delivery_url = f"{private_server.url}/delivery"
    await _execute(f"{private_server.url}/postgres", "CREATE DATABASE delivery")
    await asyncio.to_thread(upgrade, migrations_of("delivery"), delivery_url)
    lines = await Lines.open(delivery_database=("127.0.0.1", private_server.port))
    async with fault_system(
        databases, broker_namespace, lines, key_pair.public_pem, tmp_path, delivery_database_url=delivery_url
    ) as started:
        yield started


async def test_database_server_restarts(
    restartable_system: FaultSystem,
    tokens: Tokens,
    scenario: ScenarioRecord,
    private_server: PrivateServer,
    amqp_connection: AbstractConnection,
) -> None:
    amqp = Amqp(amqp_connection, restartable_system.namespace)
    view = SystemView.of(restartable_system, amqp, amqp_connection)
    try:
        await _scenario(
            restartable_system,
            view,
            tokens,
            scenario,
            title="Database server restarts",
            fault="the delivery database's server shut down fast (its sessions end with 57P01), "
            "started again after the outage (57P03 while it starts)",
            start=private_server.down,
            mend=private_server.up,
        )
    finally:
        await view.close()
