"""The gateway: nginx accepts its configuration, routes every public path to the right service, keeps
the operators' paths inside, names the visitor itself and bounds each visitor's rate."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.support.artifacts import (
    DESIGN_PATHS,
    GATEWAY_CONFIG,
    SAMPLE_ID,
    SERVICES,
    Json,
    gateway_locations,
    image_of,
    local_gateway_config,
    operator_paths,
    route,
)
from tests.support.waiting import eventually

from ..support.ports import free_port


def nginx() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    assert found, "nginx is not installed (Debian's package `nginx`; .ci/run installs it)"
    return found


def upstream_of(path: str) -> str | None:
    return route(gateway_locations(), path.replace("{id}", SAMPLE_ID)).upstream


def address_of(service: str) -> str:
    return f"{service}:{image_of(SERVICES[service]).port}"


@dataclass(frozen=True)
class RequestLimit:
    """One `limit_req` of the gateway: its zone's rate and the burst allowed on top."""

    zone: str
    per_second: float
    burst: int


def request_limits(path: str) -> list[RequestLimit]:
    """The limits nginx applies to a path: its location's own `limit_req`, else the server's."""
    config = re.sub(r"#[^\n]*", "", GATEWAY_CONFIG.read_text())
    rates = {
        zone: float(count) / (60 if unit == "m" else 1)
        for zone, count, unit in re.findall(
            r"limit_req_zone\s+\S+\s+zone=(\w+):\w+\s+rate=(\d+)r/([sm])", config
        )
    }
    outside_locations = re.sub(r"location\s+[^{]*\{[^}]*\}", "", config)
    own = re.findall(r"limit_req\s+zone=(\w+)\s+burst=(\d+)", route(gateway_locations(), path).body)
    found = own or re.findall(r"limit_req\s+zone=(\w+)\s+burst=(\d+)", outside_locations)
    return [RequestLimit(zone, rates[zone], int(burst)) for zone, burst in found]


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


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_operators_paths_stay_inside_and_the_gateway_answers_its_own_health(service: str) -> None:
    """Health, metrics and the OpenAPI pages are for the orchestrator, the scraper and developers."""
    paths = operator_paths(SERVICES[service])
    assert {"/metrics", "/health/ready", "/docs", "/openapi.json"} <= paths
    for path in paths:
        assert upstream_of(path) is None, f"the gateway passes {service}'s {path} to the world"
    assert upstream_of("/gateway/health") is None


def test_every_visitor_is_held_to_a_rate_on_the_api_and_on_sign_in() -> None:
    for path in ("/api/orders", "/api/delivery/", "/api/deliverymen", "/login"):
        assert request_limits(path), f"{path} has no limit_req"
    # Sign-ins cost a password hash each: a slower rate than the rest.
    assert min(limit.per_second for limit in request_limits("/login")) < min(
        limit.per_second for limit in request_limits("/api/orders")
    )


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


@dataclass
class StandIn:
    """A server in a service's place: answers every request with what reached it."""

    name: str
    seen: list[Json] = field(default_factory=list)
    server: ThreadingHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                request = {
                    "service": stand_in.name,
                    "path": self.path,
                    "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                    "x_real_ip": self.headers.get("X-Real-IP"),
                }
                stand_in.seen.append(request)
                body = json.dumps(request).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads what the stand-in saw, not its log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@dataclass
class Gateway:
    url: str
    stand_ins: dict[str, StandIn]

    def client(self, address: str) -> httpx.Client:
        """A visitor connecting from its own loopback address (each has its own limits)."""
        return httpx.Client(
            base_url=self.url, transport=httpx.HTTPTransport(local_address=address), timeout=10
        )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """compose's nginx configuration run by nginx, with a stand-in for each service."""
    stand_ins = {name: StandIn(name) for name in SERVICES}

    def upstream(url: str) -> str:
        host = urlsplit(url).hostname
        assert host in stand_ins, f"the gateway names {url}, no service of this repository"
        return stand_ins[host].url

    folder = tmp_path_factory.mktemp("gateway")
    port = free_port()
    config = local_gateway_config(folder, port, upstream)
    with (folder / "nginx.log").open("wb") as log:
        process = subprocess.Popen(
            [nginx(), "-e", "stderr", "-p", f"{folder}/", "-c", str(config), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool | None:
        assert process.poll() is None, (folder / "nginx.log").read_text()
        try:
            return httpx.get(f"{url}/gateway/health", timeout=2).status_code == 200 or None
        except httpx.TransportError:
            return None

    try:
        eventually(answers, what="nginx to answer", timeout=10)
        yield Gateway(url, stand_ins)
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(timeout=10)
        for stand_in in stand_ins.values():
            stand_in.server.shutdown()


def test_nginx_routes_to_each_service_and_answers_the_operators_paths_itself(gateway: Gateway) -> None:
    with gateway.client("127.0.0.10") as visitor:
        for path, service in DESIGN_PATHS.items():
            answer = visitor.get(path.replace("{id}", SAMPLE_ID))
            assert answer.status_code == 200, path
            assert answer.json()["service"] == service, path
        before = sum(len(stand_in.seen) for stand_in in gateway.stand_ins.values())
        for path in sorted(set.union(*(operator_paths(code) for code in SERVICES.values()))):
            assert visitor.get(path).status_code == 404, path
        assert sum(len(stand_in.seen) for stand_in in gateway.stand_ins.values()) == before


def test_the_services_hear_the_visitors_address_whatever_the_visitor_claims(gateway: Gateway) -> None:
    forged = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Real-IP": "203.0.113.7"}
    with gateway.client("127.0.0.11") as visitor:
        for path in ("/api/orders", "/login"):
            seen = visitor.get(path, headers=forged).json()
            assert (seen["x_forwarded_for"], seen["x_real_ip"]) == ("127.0.0.11", "127.0.0.11"), path


def burst_until_refused(visitor: httpx.Client, method: str, path: str, limit: RequestLimit) -> httpx.Response:
    """Requests as fast as they go until one is refused; it must come only after the burst passed."""
    for sent in range(1, 4 * (limit.burst + 1) + 1):
        answer = visitor.request(method, path)
        if answer.status_code == 429:
            assert sent > limit.burst + 1, f"refused after {sent - 1}, within the burst of {limit.burst}"
            return answer
        assert answer.status_code == 200, answer.text
    raise AssertionError(f"{4 * (limit.burst + 1)} requests to {path} at once were all let through")


def test_a_burst_over_the_api_limit_is_refused_with_the_error_body_and_retry_after(gateway: Gateway) -> None:
    (limit,) = request_limits("/api/orders")
    with gateway.client("127.0.0.12") as visitor:
        refused = burst_until_refused(visitor, "GET", "/api/orders", limit)
    assert refused.headers["Content-Type"].startswith("application/json")
    body = refused.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "too_many_requests"
    assert body["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    with gateway.client("127.0.0.13") as another:
        assert another.get("/api/orders").status_code == 200, "one visitor's burst held another back"


def test_a_paced_stream_over_the_burst_is_let_through(gateway: Gateway) -> None:
    (limit,) = request_limits("/api/delivery/")
    # More than any burst may bring, at four fifths of the rate.
    count = limit.burst + 1 + int(limit.per_second)
    interval = 1 / (limit.per_second * 0.8)
    started = time.monotonic()
    with gateway.client("127.0.0.14") as visitor:
        for sent in range(count):
            # The stream's own pace, not a wait for anything: each request leaves at its time.
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))
            answer = visitor.get("/api/delivery/")
            assert answer.status_code == 200, f"request {sent + 1} of a paced stream: {answer.text}"


def test_a_burst_of_sign_ins_is_refused_with_a_page_and_retry_after(gateway: Gateway) -> None:
    limit = min(request_limits("/login"), key=lambda limit: limit.burst)
    with gateway.client("127.0.0.15") as visitor:
        refused = burst_until_refused(visitor, "POST", "/login", limit)
        assert refused.headers["Content-Type"].startswith("text/html")
        assert "Too many" in refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        # Only the attempts count: the form still opens.
        assert visitor.get("/login").status_code == 200
