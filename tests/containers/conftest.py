"""The container test's fixtures: one engine, the images, one compose project for the session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.containers import (
    JOBS,
    LONG_RUNNING,
    SERVICES,
    STAND_IN_IMAGES,
    Engine,
    Project,
    Timings,
    build_images,
    start_engine,
    stop_engine,
)
from tests.support.ports import free_port


@pytest.fixture(scope="session")
def timings() -> Iterator[Timings]:
    measured = Timings()
    yield measured
    print("\ncontainer test figures:")
    for name, seconds in measured.figures.items():
        print(f"  {name}: {seconds:.1f} s")
    for name, megabytes in measured.sizes.items():
        print(f"  image {name}: {megabytes:.0f} MB")


@pytest.fixture(scope="session")
def engine(timings: Timings) -> Iterator[Engine]:
    """The engine with every image built; stopped at the end only if this run started it."""
    started = time.monotonic()
    found = start_engine()
    try:
        build_images(found, timings)
        timings.took("engine and images", started)
        for name in (*(f"deliveryhub/{service}:local" for service in SERVICES), *STAND_IN_IMAGES):
            timings.sizes[name] = found.image_size(name) / 1e6
        yield found
    finally:
        stop_engine()


PROJECT_PREFIX = "deliveryhub-test-"


def remove_left_over_projects(engine: Engine) -> None:
    """A run cut short leaves its project behind, holding compose.yaml's fixed subnet: gone first."""
    listed = engine.docker("network", "ls", "--format", "{{.Name}}")
    for network in listed.split():
        if network.startswith(PROJECT_PREFIX) and network.endswith("_default"):
            left = Project(engine, network.removesuffix("_default"), free_port(), free_port())
            left.compose("down", "-v", "--remove-orphans", timeout=300, check=False)


@pytest.fixture(scope="session")
def project(engine: Engine, timings: Timings) -> Iterator[Project]:
    remove_left_over_projects(engine)
    started = Project(engine, f"{PROJECT_PREFIX}{uuid.uuid4().hex[:6]}", free_port(), free_port())
    try:
        begun = time.monotonic()
        started.compose("up", "-d", "--no-build", timeout=600)
        started.wait_healthy(*LONG_RUNNING)
        timings.took("up to all healthy", begun)
        for job in JOBS:
            assert [state["ExitCode"] for state in started.state(job)] == [0], job
        yield started
    finally:
        print(started.compose("logs", "--no-color", "--tail", "30", check=False)[-20000:])
        started.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
