"""compose.yaml on a real Docker engine: the engine, the images, the project and what a test asks of
them (for `make test-containers`)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from deliveryhub_cli.tokens import AUDIENCE, ISSUER
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.tokens import TokenIssuer
from tests.support.artifacts import image_builds
from tests.support.waiting import eventually

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
STAND_INS = ROOT / "deploy" / "testing" / "stand-ins.sh"
SERVICES = ("orders", "delivery", "web")
# The long-running parts of compose.yaml (the rest are one-shot jobs).
LONG_RUNNING = ("postgres", "rabbitmq", *SERVICES, "gateway")
JOBS = ("keys", "orders-migrate", "delivery-migrate", "web-migrate", "broker-access")
# The third-party images compose.yaml and the Dockerfile name (stand-ins here, built from Debian).
STAND_IN_IMAGES = (
    "python:3.11-slim-bookworm",
    "postgres:16-alpine",
    "rabbitmq:4-management-alpine",
    "nginxinc/nginx-unprivileged:1.27-alpine",
)


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True) -> str:
    """A command's output; its output and error in the failure when it fails."""
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Timings:
    """What the run measured, printed at the end and kept for docs/containers.md."""

    figures: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, float] = field(default_factory=dict)

    def took(self, name: str, started: float) -> None:
        self.figures[name] = time.monotonic() - started


@dataclass
class Engine:
    """The Docker engine the run uses (one that answered, or one it started)."""

    host: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *arguments: str, timeout: float = 600, check: bool = True) -> str:
        return run("docker", *arguments, env=self.env, timeout=timeout, check=check)

    def image_size(self, name: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", name).strip())


def start_engine() -> Engine:
    return Engine(run("bash", str(STAND_INS), "engine", timeout=120).strip())


def stop_engine() -> None:
    run("bash", str(STAND_INS), "stop-engine", timeout=120)


def build_images(engine: Engine, timings: Timings) -> None:
    """The stand-ins of the third-party images, then each service's image from the real Dockerfile as
    compose.yaml builds it, on the host's network (the build installs from the package index)."""
    started = time.monotonic()
    run("bash", str(STAND_INS), "images", env=engine.env, timeout=1800)
    timings.took("stand-in images", started)
    builds = image_builds()
    for service in SERVICES:
        build = builds[service]
        arguments = [f"--build-arg={name}={value}" for name, value in build.arguments.items()]
        started = time.monotonic()
        engine.docker(
            "build", "--network", "host", "--quiet", "-f", str(build.dockerfile), *arguments,
            "-t", build.image, str(build.context), timeout=1800,
        )  # fmt: skip
        timings.took(f"build {service}", started)


@dataclass
class Project:
    """The compose project under test, with its published ports."""

    engine: Engine
    name: str
    gateway_port: int
    management_port: int

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.engine.env,
            "COMPOSE_PROJECT_NAME": self.name,
            "GATEWAY_PORT": str(self.gateway_port),
            "RABBITMQ_MANAGEMENT_PORT": str(self.management_port),
        }

    def compose(self, *arguments: str, timeout: float = 600, check: bool = True) -> str:
        return run("docker-compose", *arguments, env=self.env, timeout=timeout, check=check)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-a", "-q", service).split()

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", container))
        return found[0]

    def state(self, service: str) -> list[dict[str, Any]]:
        return [self.inspect(container)["State"] for container in self.containers(service)]

    def healthy(self, *services: str) -> bool:
        for service in services:
            states = self.state(service)
            if not states or any(state.get("Health", {}).get("Status") != "healthy" for state in states):
                return False
        return True

    def wait_healthy(self, *services: str, timeout: float = 240) -> None:
        eventually(
            lambda: True if self.healthy(*services) else None,
            what=f"{', '.join(services)} to be healthy:\n{self.compose('ps', check=False)}",
            timeout=timeout,
        )

    def exec(self, service: str, *command: str, index: int = 1) -> str:
        return self.compose("exec", "-T", "--index", str(index), service, *command)

    def gateway(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.gateway_port}", timeout=10)

    def issuer(self) -> TokenIssuer:
        """Tokens signed by the key the keys job made (read from the console's container)."""
        private_pem = self.exec("web", "cat", "/var/lib/deliveryhub/keys/jwt-private.pem")
        return TokenIssuer(private_pem, issuer=ISSUER, audience=AUDIENCE)

    def broker_queues(self) -> dict[str, int]:
        """Each queue of the broker and the messages in it."""
        listed = self.exec(
            "rabbitmq", "rabbitmqctl", "-q", "list_queues", "--formatter", "json", "name", "messages"
        )
        return {queue["name"]: int(queue["messages"]) for queue in json.loads(listed)}


def auth(issuer: TokenIssuer, role: Role, *, deliveryman_id: uuid.UUID | None = None) -> dict[str, str]:
    principal = Principal(subject=deliveryman_id or uuid.uuid4(), role=role, deliveryman_id=deliveryman_id)
    return {"Authorization": f"Bearer {issuer.issue(principal, lifetime=timedelta(hours=1))}"}
