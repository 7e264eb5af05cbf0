"""A PostgreSQL server of the test's own, made with the machine's binaries, that a test may restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port


def _binaries() -> Path:
    """The directory of initdb and pg_ctl: the newest PostgreSQL installed the Debian way, or PATH."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))
    if installed:
        return installed[-1]
    found = shutil.which("pg_ctl")
    assert found is not None, "no PostgreSQL binaries (initdb, pg_ctl) on this machine"
    return Path(found).parent


class PrivateServer:
    """A throwaway cluster on a loopback port; `restart` shuts it down fast and starts it again."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="deliveryhub-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self._bin = _binaries()
        # PostgreSQL refuses to run as root: as root, the server runs as the postgres account.
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout}\n{done.stderr}"

    async def start(self) -> PrivateServer:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        if not self.data.exists():
            await asyncio.to_thread(
                self._run, str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"
            )
        await self.up()
        return self

    async def up(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        # A log file of its own: the server must not hold the pipes pg_ctl's output is read from.
        log = str(self.directory / "server.log")
        await self._pg_ctl("-o", options, "-l", log, "-w", "-t", "30", "start")

    async def down(self) -> None:
        """Shut down at once: the sessions are told the administrator ended them (57P01)."""
        await self._pg_ctl("-m", "fast", "-w", "stop")

    async def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            await self._pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _pg_ctl(self, *arguments: str) -> None:
        await asyncio.to_thread(self._run, str(self._bin / "pg_ctl"), "-D", str(self.data), *arguments)
