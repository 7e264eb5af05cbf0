"""Who was busy during a phase: CPU seconds of each process group, read from /proc."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path

from deliveryhub_cli.bench.options import Json
from deliveryhub_cli.bench.processes import children

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

# A group's processes, asked again at each reading (a database's backends come and go).
Members = Callable[[], Iterable[int]]


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds a process has spent (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: the fields follow its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def process_tree(pid: int) -> Members:
    """A process and its workers."""
    return lambda: (pid, *children(pid))


def named(command: str) -> Members:
    """Every process of one command name (`postgres`, `beam.smp`)."""

    def members() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError):
                    if (entry / "comm").read_text().strip() == command:
                        found.append(int(entry.name))
        return found

    return members


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy, all cores together (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND


# The readings' key for the machine as a whole.
MACHINE = "(machine)"


class CpuWatch:
    """CPU per group over a phase, in cores (CPU seconds per second of the phase), and what the
    rest of the machine spent: anything else running beside the bench shows there."""

    def __init__(self, groups: dict[str, Members]) -> None:
        self._groups = groups

    def reading(self) -> dict[str, dict[int, float]]:
        readings: dict[str, dict[int, float]] = {}
        for name, members in self._groups.items():
            readings[name] = {pid: spent for pid in members() if (spent := cpu_seconds(pid)) is not None}
        readings[MACHINE] = {0: machine_busy_seconds()}
        return readings

    @staticmethod
    def cores(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
    ) -> Json:
        """Each group's cores between two readings, and the busiest group: the phase's bottleneck.

        A process that began in between counts from zero; one that ended in between is missed."""
        cores = {
            name: round(
                sum(spent - before.get(name, {}).get(pid, 0.0) for pid, spent in pids.items()) / seconds, 2
            )
            for name, pids in after.items()
        }
        machine = cores.pop(MACHINE, None)
        busiest = max(cores, key=lambda name: cores[name]) if cores else None
        if machine is not None:
            cores["everything else"] = round(max(0.0, machine - sum(cores.values())), 2)
        return {"cores": cores, "busiest": busiest, "machine_cores": machine}
