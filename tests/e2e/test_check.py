"""After everything else the suite did to the running system, `deliveryhub check` finds the two
services agreeing about every order (conftest.py runs this module's test last on each system)."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import text

from deliveryhub_cli.check import read_only_engine
from deliveryhub_cli.embedded import EmbeddedData
from deliveryhub_cli.services import database_url
from deliveryhub_kit.settings import DEFAULT_POSTGRES
from tests.support.running_system import DELIVERYHUB, System, run_async
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def database_urls(system: System) -> dict[str, str]:
    if system.mode == "embedded":
        data = EmbeddedData(system.data_dir)
        return {service: data.database_url(service) for service in ("orders", "delivery")}
    return {
        service: database_url(DEFAULT_POSTGRES, f"{system.database_prefix}{service}")
        for service in ("orders", "delivery")
    }


def events_waiting(system: System) -> int:
    """Outbox rows of both services not yet published."""

    async def count(url: str) -> int:
        engine = read_only_engine(url, timeout_seconds=5)
        try:
            async with engine.connect() as connection:
                waiting = await connection.scalar(
                    text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                )
        finally:
            await engine.dispose()
        return int(waiting or 0)

    async def both() -> int:
        return sum([await count(url) for url in database_urls(system).values()])

    return run_async(both())


def deliveryhub_check(system: System) -> subprocess.CompletedProcess[str]:
    where = (
        ["--embedded", "--data-dir", str(system.data_dir)]
        if system.mode == "embedded"
        else ["--database-prefix", system.database_prefix]
    )
    return subprocess.run(
        [DELIVERYHUB, "check", *where, "--grace", "0", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def settled(run: subprocess.CompletedProcess[str]) -> bool:
    """Whether the check's answer is final: it failed to read, or nothing is left in flight."""
    if run.returncode == 2:
        return True
    return run.returncode == 0 and json.loads(run.stdout)["in_flight"] == 0


def test_the_services_agree_about_every_order_the_suite_left(system: System) -> None:
    eventually(
        lambda: True if events_waiting(system) == 0 else None, what="both outboxes to be drained", timeout=60
    )

    # Published is not yet applied: an event may still be in a queue, or waiting to be retried.
    def final_answer() -> subprocess.CompletedProcess[str] | None:
        run = deliveryhub_check(system)
        return run if settled(run) else None

    run = eventually(final_answer, what="the check to find nothing in flight", timeout=60)

    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads(run.stdout)
    assert document["agree"] is True
    assert sum(document["counts"].values()) == 0
    assert document["in_flight"] == 0, "an order is still canceling"
    assert document["orders_read"] > 0, "the suite placed no order on this system"
