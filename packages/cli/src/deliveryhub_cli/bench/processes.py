"""What the service processes hold: resident memory and worker count of a process tree, and
which process listens on a port, all read from /proc."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

import httpx

from deliveryhub_cli.bench.options import Json


def rss_mb(pid: int) -> float:
    """Resident memory of the largest process of a service: the service process, or with several
    workers the largest of them (their supervisor holds little)."""
    largest_kb = 0
    for each in (pid, *children(pid)):
        with suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest_kb = max(largest_kb, int(line.split()[1]))
    return round(largest_kb / 1024, 1)


def service_processes(pid: int) -> int:
    """How many processes of a service answer requests: its workers, or the process itself."""
    workers = [child for child in children(pid) if "spawn_main" in _command_line(child)]
    return len(workers) or 1


def _command_line(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def children(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    for child in list(found):
        found.extend(children(child))
    return found


def listening_pid(port: int) -> int | None:
    """The process that listens on a local TCP port, found through /proc (no extra tools)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        with suppress(OSError):
            for descriptor in (process / "fd").iterdir():
                target = os.readlink(descriptor)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pid = int(process.name)
                    # uvicorn workers share the socket: report their parent, whose tree is counted.
                    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    return parent if _listens(parent, inodes) else pid
    return None


def _listens(pid: int, inodes: set[str]) -> bool:
    with suppress(OSError):
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(descriptor)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


def service_pids(urls: dict[str, str], known: dict[str, int]) -> dict[str, int | None]:
    """Each service's process: the one the bench started, or the one listening on its URL's port."""
    return {name: known.get(name) or listening_pid(httpx.URL(url).port or 80) for name, url in urls.items()}


def service_memory(pids: dict[str, int | None]) -> Json:
    """Each service's resident memory in MB (None where its process is unknown)."""
    return {name: rss_mb(pid) if pid else None for name, pid in pids.items()}
