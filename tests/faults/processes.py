"""A service run as `deliveryhub up` runs it: uvicorn in a process of its own, killable and restartable."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from deliveryhub_cli.services import SERVICES, ServiceSpec
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def service_spec(name: str) -> ServiceSpec:
    return next(spec for spec in SERVICES if spec.name == name)


class ServiceProcess:
    """One replica of a service as a real process; each start is a new lifetime with its own log."""

    def __init__(self, label: str, service: str, env: Mapping[str, str], workdir: Path) -> None:
        self.label = label
        self.spec = service_spec(service)
        self.env = dict(env)
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=10)
        self.logs: list[Path] = []
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, *, timeout: float = 40.0) -> None:  # noqa: ASYNC109
        """Start a new lifetime and return once the service answers ready (database and broker)."""
        assert not self.running, f"{self.label} is already running"
        log = self.workdir / f"{self.label}-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as output:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                self.spec.app_factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--timeout-graceful-shutdown",
                "10",
                env=self.env,
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self._process

        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"{self.label} exited while starting")
            try:
                return (await self.client.get("/health/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await wait_for(ready, timeout=timeout, message=f"{self.label} to be ready")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from None

    async def kill(self) -> None:
        """SIGKILL: the process dies at once, whatever it holds."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        await self._process.wait()

    async def terminate(self, *, timeout: float = 30.0) -> tuple[float, int]:  # noqa: ASYNC109
        """SIGTERM; the seconds until the process exited, and its exit code."""
        assert self._process is not None
        started = time.monotonic()
        self._process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.label} did not exit within {timeout:g}s of SIGTERM") from None
        return time.monotonic() - started, code

    async def close(self) -> None:
        if self.running:
            await self.kill()
        await self.client.aclose()

    def log_records(self, lifetime: int) -> list[dict[str, Any]]:
        """The JSON log lines of one lifetime (1 for the first start)."""
        records: list[dict[str, Any]] = []
        for line in self.logs[lifetime - 1].read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def settled_events(self, lifetime: int) -> Counter[tuple[str, str]]:
        """How often the consumer settled each (event id, outcome) in one lifetime, from its log."""
        settled: Counter[tuple[str, str]] = Counter()
        for record in self.log_records(lifetime):
            event, event_id = str(record.get("event", "")), record.get("event_id")
            for outcome in ("applied", "duplicate"):
                if event_id and event.endswith(f" {outcome}") and ": event " in event:
                    settled[(str(event_id), outcome)] += 1
        return settled

    def log_tail(self, lines: int = 40, *, lifetime: int | None = None) -> str:
        """The last lines of a lifetime's log (the latest by default)."""
        log = self.logs[(lifetime or len(self.logs)) - 1] if self.logs else None
        if log is None or not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def metric_total(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The sum of a counter's samples (with the given labels) on a service's `/metrics`."""
    response = await client.get("/metrics")
    response.raise_for_status()
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
