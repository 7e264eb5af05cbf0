"""The figures of each fault scenario, kept in `test-results/reliability.json` for the report."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-results" / "reliability.json"

Figure = int | float | str | bool


@dataclass
class ScenarioRecord:
    """What one scenario broke, for how long, on how many orders, what it checked and what it saw."""

    scenario: str
    test: str
    # The broker it ran on, e.g. "RabbitMQ 4.0.5": the scenarios run on each supported series.
    broker: str = ""
    title: str = ""
    fault: str = ""
    fault_seconds: float | None = None
    orders: int = 0
    # What this scenario checks beyond the invariant every scenario ends with.
    checked: list[str] = field(default_factory=list)
    invariant: list[str] = field(default_factory=list)
    converge_seconds: float | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    result: str = "not finished"
    failure: str | None = None
    duration_seconds: float | None = None
    finished_at: str = ""

    def figure(self, name: str, value: Figure) -> None:
        self.figures[name] = round(value, 3) if isinstance(value, float) else value


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        if found.returncode == 0:
            return found.stdout.strip()
    return "unknown"


def save(record: ScenarioRecord, run_id: str, run_started_at: datetime) -> None:
    """Put the scenario's record into the results file, replacing the one of an earlier run on the
    same broker. A run on another broker (same run id) adds to the file."""
    record.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # Parallel workers may write at once: the read-modify-write holds a lock on the file.
    with RESULTS.open("a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        text = file.read()
        document: dict[str, Any] = json.loads(text) if text.strip() else {}
        runs: dict[str, Any] = document.setdefault("runs", {})
        if runs.get(record.broker, {}).get("run_id") != run_id:
            runs[record.broker] = {
                "run_id": run_id,
                "run_started_at": run_started_at.isoformat(timespec="seconds"),
                "commit": _commit(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            }
        document.setdefault("scenarios", {})
        key = f"{record.scenario} on {record.broker}" if record.broker else record.scenario
        document["scenarios"][key] = {**asdict(record), "run_id": run_id}
        file.seek(0)
        file.truncate()
        json.dump(document, file, ensure_ascii=False, indent=2)
        file.write("\n")
