"""The `deliveryhub` command as a user runs it."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.ports import free_port
from tests.support.running_system import DELIVERYHUB, System

pytestmark = pytest.mark.e2e


def test_demo_runs_the_whole_story_against_the_running_system(system: System) -> None:
    result = subprocess.run(
        [
            DELIVERYHUB,
            "demo",
            "--orders-url",
            system.orders_url,
            "--delivery-url",
            system.delivery_url,
            "--data-dir",
            str(system.data_dir),
            "--legacy-queue-prefix",
            system.legacy_prefix,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivered, delivery done" in result.stdout
    # A paid order's cancel is a request; the one made after the handover is refused either way.
    assert "order: canceling (cancel requested)" in result.stdout
    assert "cancel refused" in result.stdout
    assert "The demo completed." in result.stdout


@pytest.mark.parametrize(
    ("option", "url", "server"),
    [
        ("--postgres", "postgresql://postgres@127.0.0.1:{port}", "PostgreSQL"),
        ("--amqp", "amqp://guest:guest@127.0.0.1:{port}/", "RabbitMQ"),
    ],
)
def test_up_says_which_server_is_missing_and_stops(
    option: str, url: str, server: str, tmp_path: object
) -> None:
    closed = free_port()
    result = subprocess.run(
        [DELIVERYHUB, "up", option, url.format(port=closed), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert server in lines[0]
    assert f":{closed}" in lines[0]


def test_token_refuses_a_courier_without_a_deliveryman(tmp_path: object) -> None:
    result = subprocess.run(
        [DELIVERYHUB, "token", "--role", "courier", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "deliveryman-id" in result.stderr


@pytest.mark.parametrize("hours", ["0", "-1", "169", "1e9", "nan", "inf", "twelve"])
def test_token_refuses_a_lifetime_outside_a_week(tmp_path: object, hours: str) -> None:
    result = subprocess.run(
        [DELIVERYHUB, "token", "--role", "manager", "--hours", hours, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2
    assert "--hours" in result.stderr
    assert result.stdout == ""
