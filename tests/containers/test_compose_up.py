"""`docker-compose up` of the real compose.yaml and Dockerfile on a real engine, driven through the
gateway as users and operators would: the story, replicas, a killed replica, restarts of the broker
and the database, a stop and a start. Run by `make test-containers`, in this order."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from deliveryhub_kit.identity import Role
from tests.support.containers import LONG_RUNNING, SERVICES, Project, Timings, auth
from tests.support.waiting import eventually

pytestmark = pytest.mark.containers

LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")


def order_body(number: int) -> dict[str, Any]:
    return {
        "address": f"Москва, Арбат, {number}",
        "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "items": [{"name": "Книга", "quantity": 1, "price": "990.00"}],
    }


def test_every_part_is_healthy_runs_unprivileged_and_only_the_gateway_listens(project: Project) -> None:
    assert project.healthy(*LONG_RUNNING)
    for service in SERVICES:
        assert project.exec(service, "id", "-u").strip() == "10001", service
        # The image's shell has exec'd uvicorn (`python …/uvicorn`): PID 1, which SIGTERM reaches.
        pid_one = project.exec(service, "cat", "/proc/1/cmdline").split("\0")
        assert pid_one[1].endswith("/uvicorn"), f"{service}'s PID 1 is {pid_one}"
        assert f"deliveryhub_{service}.app:create_app" in pid_one, f"{service}'s PID 1 is {pid_one}"
    published: dict[tuple[str, str], set[str]] = {}
    for service in LONG_RUNNING:
        for container in project.containers(service):
            ports = project.inspect(container)["NetworkSettings"]["Ports"] or {}
            for inside, bindings in ports.items():
                for binding in bindings or []:
                    published.setdefault((service, inside), set()).add(binding["HostIp"])
    # The gateway on every address of the host (IPv6 too), the management UI on loopback alone.
    assert set(published) == {("gateway", "8080/tcp"), ("rabbitmq", "15672/tcp")}
    assert published[("gateway", "8080/tcp")] <= {"0.0.0.0", "::"}
    assert published[("rabbitmq", "15672/tcp")] == {"127.0.0.1"}


def test_the_console_and_the_whole_story_through_the_gateway(project: Project) -> None:
    issuer = project.issuer()
    customer = auth(issuer, Role.CUSTOMER)
    manager = auth(issuer, Role.MANAGER)
    courier = auth(issuer, Role.COURIER, deliveryman_id=LAPTEV)
    with project.gateway() as gateway:
        page = gateway.get("/login")
        assert page.status_code == 200
        assert "Sign in" in page.text
        placed = gateway.post("/api/orders", json=order_body(1), headers=customer)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        assert gateway.post(f"/api/orders/{order_id}/pay", headers=customer).status_code == 200

        def delivery_status() -> str | None:
            answer = gateway.get(f"/api/delivery/{order_id}", headers=manager)
            return answer.json()["status"] if answer.status_code == 200 else None

        eventually(lambda: True if delivery_status() == "activated" else None, what="the delivery activated")
        appointed = gateway.post(
            f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager
        )
        assert appointed.status_code == 200, appointed.text
        finished = gateway.post(f"/api/delivery/{order_id}/finish", headers=courier)
        assert finished.status_code == 200, finished.text
        assert finished.json()["status"] == "done"

        def order_status() -> str | None:
            status = gateway.get(f"/api/orders/{order_id}", headers=customer).json()["status"]
            return status if status == "delivered" else None

        eventually(order_status, what="the order delivered")


class OrderStream:
    """Orders placed and paid through the gateway at a steady pace, in a thread of their own."""

    def __init__(self, project: Project, count: int, per_second: float = 10.0) -> None:
        self.project = project
        self.count = count
        self.interval = 1 / per_second
        self.issuer = project.issuer()
        self.customer = auth(self.issuer, Role.CUSTOMER)
        self.placed: list[str] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OrderStream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join(300)

    def wait_for(self, placed: int) -> None:
        eventually(lambda: True if len(self.placed) >= placed else None, what=f"{placed} orders placed")

    def _run(self) -> None:
        with self.project.gateway() as gateway:
            for number in range(self.count):
                begun = time.monotonic()
                key = str(uuid.uuid4())
                # A request cut by a restart is sent again with the same key: placed once either way.
                for _ in range(60):
                    try:
                        answer = gateway.post(
                            "/api/orders",
                            json=order_body(number),
                            headers={**self.customer, "Idempotency-Key": key},
                        )
                        if answer.status_code == 201:
                            order_id = answer.json()["id"]
                            break
                    except httpx.HTTPError as error:  # a passing outage: the next try tells
                        self.failures.append(repr(error))
                    time.sleep(0.5)
                else:
                    self.failures.append(f"order {number} never placed")
                    continue
                for _ in range(60):
                    try:
                        paid = gateway.post(f"/api/orders/{order_id}/pay", headers=self.customer)
                        if paid.status_code in (200, 409):
                            break
                    except httpx.HTTPError as error:
                        self.failures.append(repr(error))
                    time.sleep(0.5)
                self.placed.append(order_id)
                time.sleep(max(0.0, self.interval - (time.monotonic() - begun)))

    def all_activated(self, timeout: float = 180) -> None:
        manager = auth(self.issuer, Role.MANAGER)
        wanted = set(self.placed)

        def activated() -> bool | None:
            with self.project.gateway() as gateway:
                answer = gateway.get(
                    "/api/delivery/", params={"status": "activated", "limit": 1000}, headers=manager
                )
            if answer.status_code != 200:
                return None
            ids = [item["id"] for item in answer.json()]
            assert len(ids) == len(set(ids)), "a delivery listed twice"
            return True if wanted <= set(ids) else None

        eventually(activated, what=f"the {len(wanted)} deliveries activated", timeout=timeout)


def dead_letters(project: Project) -> dict[str, int]:
    queues = project.broker_queues()
    return {name: count for name, count in queues.items() if name.endswith(".dead-letter") and count}


METRICS = (
    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8002/metrics', timeout=5)"
    ".read().decode())"
)


def consumed(project: Project, replica: str) -> float:
    """How many events a delivery replica has applied, from its own /metrics."""
    text = project.engine.docker("exec", replica, "python", "-c", METRICS)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("deliveryhub_events_consumed_total")
    )


def test_three_delivery_replicas_share_the_stream_and_one_killed_mid_way_loses_nothing(
    project: Project, timings: Timings
) -> None:
    project.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "delivery=3", "delivery")
    project.wait_healthy("delivery")
    replicas = project.containers("delivery")
    assert len(replicas) == 3
    before = {replica: consumed(project, replica) for replica in replicas}
    started = time.monotonic()
    with OrderStream(project, 40) as stream:
        stream.wait_for(15)
        # Each replica takes a share of the queue.
        eventually(
            lambda: True if all(consumed(project, r) > before[r] for r in replicas) else None,
            what="every replica to consume a share",
        )
        project.engine.docker("kill", replicas[1])
    stream.all_activated()
    for survivor in (replicas[0], replicas[2]):
        assert consumed(project, survivor) > before[survivor]
    timings.took("40 orders through 3 replicas, one killed", started)
    assert not dead_letters(project)
    project.compose("up", "-d", "--no-build", "--scale", "delivery=1", "delivery")


@pytest.mark.parametrize("part", ["rabbitmq", "postgres"])
def test_a_restart_mid_stream_converges_by_itself_with_no_dead_letter(
    project: Project, timings: Timings, part: str
) -> None:
    started = time.monotonic()
    with OrderStream(project, 30) as stream:
        stream.wait_for(10)
        project.compose("restart", part)
    stream.all_activated(timeout=240)
    timings.took(f"30 orders with {part} restarted", started)
    project.wait_healthy(*LONG_RUNNING)
    assert not dead_letters(project)


def test_a_stop_and_a_start_keep_the_data_and_every_service_stops_cleanly(project: Project) -> None:
    issuer = project.issuer()
    customer = auth(issuer, Role.CUSTOMER)
    with project.gateway() as gateway:
        placed = gateway.post("/api/orders", json=order_body(99), headers=customer)
        assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]

    project.compose("stop", timeout=300)
    for service in LONG_RUNNING:
        for state in project.state(service):
            # Within its grace period, on SIGTERM (SIGINT for PostgreSQL, SIGQUIT for nginx): not killed.
            assert state["ExitCode"] == 0, (service, state)
    project.compose("up", "-d", "--no-build")
    project.wait_healthy(*LONG_RUNNING)

    # The same key after the restart: a token signed before it is still accepted.
    with project.gateway() as gateway:
        kept = gateway.get(f"/api/orders/{order_id}", headers=customer)
    assert kept.status_code == 200, kept.text
    assert kept.json()["id"] == order_id
