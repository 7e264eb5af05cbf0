"""`deliveryhub bench` at tiny sizes: it runs end to end and records its run (no timing judged)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.running_system import DELIVERYHUB, SHARED_SERVER_POOL

pytestmark = pytest.mark.e2e

SECTIONS = (
    "raw",
    "http_post_orders",
    "http_get_delivery",
    "e2e",
    "e2e_paced",
    "e2e_sustained",
    "e2e_offered",
    "yardstick",
    "wrk",
    "outbox_drain",
    "consumer_drain",
    "memory_mb",
    "processes",
)


def test_bench_measures_every_phase_on_a_system_of_its_own_and_records_the_run(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    tiny = ["--duration", "1", "--raw-seconds", "0.5", "--orders", "10", "--paced-rate", "10"]
    tiny += ["--paced-seconds", "1", "--events", "30", "--outbox", "30", "--connections", "8"]
    tiny += ["--offered-rate", "10", "--offered-seconds", "1", "--workers", "2"]
    places = ["--data-dir", str(tmp_path / "data"), "--results-dir", str(results_dir)]
    result = subprocess.run(
        [DELIVERYHUB, "bench", "--start", *tiny, "--timeout", "60", *places, "--json"],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, **SHARED_SERVER_POOL},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    (written,) = results_dir.glob("*.json")
    run = json.loads(written.read_text())
    assert run == json.loads(result.stdout)
    assert run["machine"]["cores"] >= 1
    assert run["revision"]
    assert set(SECTIONS) <= set(run["results"])
    assert run["results"]["e2e"]["http_errors"] == 0
    assert run["results"]["consumer_drain"]["applied_exactly_once"] is True
    assert run["results"]["outbox_drain"]["events"] == 30
    assert run["results"]["processes"] == {"orders": 2, "delivery": 2}
    assert all(row["ratio"] is None or row["ratio"] > 0 for row in run["figures"])
    results = run["results"]
    assert results["yardstick"]["errors"] == 0
    # The yardstick's errors are a row of the table: a ceiling that failed requests is none.
    (lean_errors,) = (row for row in run["figures"] if row["name"] == "yardstick POST /api/orders errors")
    assert lean_errors["met"] is True
    assert results["yardstick"]["requests_per_s"] > 0
    # Paced, an order's lag counts from when it was due, so it is never shorter than from its payment.
    paced = results["e2e_paced"]
    assert paced["activated_from_intended_p99_ms"] >= paced["activation_lag_p99_ms"]
    # Each timed phase began once the ones before had left no event behind.
    for section in ("e2e", "http_post_orders", "http_get_delivery", "yardstick", "e2e_paced", "e2e_offered"):
        assert results[section]["settle"]["settled"] is True
        assert results[section]["settle"]["vacuum_seconds"] >= 0  # and began on vacuumed tables
    # Each timed phase says which process was busiest.
    for section in ("http_post_orders", "http_get_delivery", "yardstick", "e2e", "e2e_paced", "e2e_offered"):
        cpu = results[section]["cpu"]
        assert cpu["busiest"] in cpu["cores"]
    assert results["yardstick"]["cpu"]["busiest"] in ("yardstick", "postgres", "bench")
    if results["wrk"]["installed"]:
        for section in ("http_post_orders", "http_get_delivery", "yardstick"):
            assert results["wrk"][section]["requests"] > 0
            assert results["wrk"][section]["errors"] == 0

    compared = subprocess.run(
        [DELIVERYHUB, "bench", "--compare", str(written), str(written)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert compared.returncode == 0, compared.stderr
    assert "outbox drain events/s" in compared.stdout
