"""The gateway: nginx accepts its configuration, and it routes every public path to the right service."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from .artifacts import (
    DESIGN_PATHS,
    GATEWAY_CONFIG,
    SAMPLE_ID,
    SERVICES,
    Json,
    gateway_locations,
    parse_dockerfile,
    route,
)


def nginx() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    assert found, "nginx is not installed (Debian's package `nginx`; .ci/run installs it)"
    return found


def upstream_of(path: str) -> str | None:
    return route(gateway_locations(), path.replace("{id}", SAMPLE_ID)).upstream


def address_of(service: str) -> str:
    return f"{service}:{parse_dockerfile(SERVICES[service].dockerfile).port}"


def test_nginx_accepts_the_gateway_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [nginx(), "-t", "-q", "-e", "stderr", "-p", f"{tmp_path}/", "-c", str(GATEWAY_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(DESIGN_PATHS))
def test_every_public_path_of_the_design_reaches_its_service(path: str) -> None:
    assert upstream_of(path) == address_of(DESIGN_PATHS[path])


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_route_of_each_service_reaches_it_through_the_gateway(service: str) -> None:
    """The routes each service's `api.py` serves: the APIs' under /api, the console's pages and forms."""
    router = importlib.import_module(f"{SERVICES[service].package}.api").router
    public = {r.path for r in router.routes if isinstance(r, APIRoute)}
    assert public, f"{service} has no public routes"
    for path in public:
        assert upstream_of(re.sub(r"\{\w+\}", SAMPLE_ID, path)) == address_of(service), path


def test_metrics_stay_inside_and_the_gateway_answers_its_own_health() -> None:
    assert upstream_of("/metrics") is None
    assert upstream_of("/gateway/health") is None


def test_compose_mounts_the_configuration_and_publishes_the_port_it_listens_on(
    compose_services: dict[str, Json],
) -> None:
    gateway = compose_services["gateway"]
    assert f"{GATEWAY_CONFIG}:/etc/nginx/nginx.conf:ro" in gateway["volumes"]
    listens = re.findall(r"listen\s+(\d+)\s*;", GATEWAY_CONFIG.read_text())
    assert [str(port["target"]) for port in gateway["ports"]] == listens
    assert {str(port["published"]) for port in gateway["ports"]} == {"8000"}, "the console is on :8000"
    upstream_services = {
        location.upstream.split(":")[0] for location in gateway_locations() if location.upstream
    }
    waits_for = gateway["depends_on"]
    for service in upstream_services:
        assert waits_for[service]["condition"] == "service_healthy", (
            f"the gateway does not wait for {service}"
        )
