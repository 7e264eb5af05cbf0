"""Fixtures of the fault scenarios: a system on proxied lines, the invariant's view, the figures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aio_pika.abc import AbstractConnection

from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.rabbitmq import RabbitBroker
from tests.faults.invariants import CHECKED, SystemView
from tests.faults.report import ScenarioRecord, save
from tests.faults.system import FaultSystem, Lines, fault_system
from tests.support.broker import Amqp, BrokerNamespace
from tests.support.databases import Databases

PHASES = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(PHASES, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def run_started_at() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="session")
async def broker_version(amqp_url: str) -> str:
    """The RabbitMQ the run talks to, as the report names it."""
    broker = RabbitBroker(amqp_url, name="deliveryhub-tests")
    await broker.connect()
    try:
        return "RabbitMQ " + ".".join(str(part) for part in broker.server_version)
    finally:
        await broker.close()


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, run_id: str, run_started_at: datetime, broker_version: str
) -> Iterator[ScenarioRecord]:
    """The scenario's figures; saved to the results file with its outcome when the test ends."""
    record = ScenarioRecord(
        scenario=request.node.name.removeprefix("test_"),
        test=request.node.nodeid,
        broker=broker_version,
        invariant=list(CHECKED),
    )
    yield record
    phases = request.node.stash.get(PHASES, {})
    call = phases.get("call")
    if call is None or call.skipped:
        return
    record.duration_seconds = round(phases["setup"].duration + call.duration, 1)
    record.result = "held" if call.passed else "failed"
    if call.failed:
        said = [line[2:].strip() for line in call.longreprtext.splitlines() if line.startswith("E ")]
        record.failure = " ".join(said)[:600] or call.longreprtext[-600:]
    save(record, run_id, run_started_at)


@pytest.fixture
async def lines() -> AsyncIterator[Lines]:
    opened = await Lines.open()
    yield opened
    await opened.close()


@pytest.fixture
async def system(
    databases: Databases,
    broker_namespace: BrokerNamespace,
    lines: Lines,
    key_pair: KeyPair,
    tmp_path: Path,
) -> AsyncIterator[FaultSystem]:
    """Fresh orders and delivery databases and broker names; services start on the proxied lines."""
    async with fault_system(databases, broker_namespace, lines, key_pair.public_pem, tmp_path) as started:
        yield started


@pytest.fixture
async def view(
    system: FaultSystem, amqp: Amqp, amqp_connection: AbstractConnection
) -> AsyncIterator[SystemView]:
    """What the invariant reads: both databases and the broker, not through the proxies."""
    opened = SystemView.of(system, amqp, amqp_connection)
    yield opened
    await opened.close()
