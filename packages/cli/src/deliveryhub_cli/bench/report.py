"""The run's record: its figures beside their raw limits and targets, the table, the JSON file,
and two runs compared."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from deliveryhub_cli.bench.options import BenchOptions, Json
from deliveryhub_cli.bench.wrk import agreement as wrk_agreement

# The targets of a 2-core machine with everything on it (README, Performance).
TARGETS = {
    "http_post_orders_rps": 1000.0,
    "http_post_orders_p99_ms": 100.0,
    "http_post_orders_of_yardstick": 0.7,
    "http_get_delivery_rps": 2000.0,
    "e2e_orders_per_s": 500.0,
    "paced_lag_p99_ms": 200.0,
    "consumer_drain_of_raw": 0.5,
    "outbox_drain_of_raw": 0.9,
    "rss_mb": 150.0,
}


def git_revision() -> str:
    """The checkout's short revision, marked `-dirty` with uncommitted changes."""
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
        return revision + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(options: BenchOptions, results: Json, started: float) -> Json:
    """The run as it is written: when, at which revision, on what machine and with which options,
    its results, and its figures; `started` is the monotonic time it began."""
    run: Json = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "options": {
            "connections": options.connections,
            "duration_s": options.duration,
            "raw_seconds": options.raw_seconds,
            "orders": options.orders,
            "paced_rate": options.paced_rate,
            "paced_seconds": options.paced_seconds,
            "offered_rate": options.offered_rate,
            "offered_seconds": options.offered_seconds,
            "events": options.events,
            "outbox_rows": options.outbox_rows,
            "started_its_own_system": options.start,
            "workers_started": options.workers if options.start else None,
        },
        "results": results,
        "run_seconds": round(time.monotonic() - started, 1),
    }
    run["figures"] = figures(run)
    return run


def write_and_print(run: Json, options: BenchOptions) -> None:
    """Write the run to the results folder; print it as JSON, or as the table and where it went."""
    options.results_dir.mkdir(parents=True, exist_ok=True)
    path = options.results_dir / f"{run['at'].replace(':', '')[:17]}-{run['revision']}.json"
    path.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
    if options.json_output:
        print(json.dumps(run, indent=2, ensure_ascii=False))
    else:
        print(render_table(run))
        print(f"\nwritten to {path}")


def figures(run: Json) -> list[Json]:
    """Each headline figure beside the limit it is bounded by, the ratio and its target."""
    r = run["results"]
    raw = r["raw"]
    pg, publish, consume = raw["transactions_per_s"], raw["publish_per_s"], raw["consume_per_s"]
    post, get, lean = r["http_post_orders"], r["http_get_delivery"], r.get("yardstick")
    e2e, paced, offered = r["e2e"], r["e2e_paced"], r.get("e2e_offered")
    # One order placed and paid costs four transactions in orders and delivery, two of each message.
    e2e_limit = min(pg / 4, publish / 2, consume / 2)
    rows: list[Json] = [
        _figure("raw PostgreSQL order tx/s", pg, None, None),
        _figure("raw RabbitMQ publish+confirm/s", publish, None, None),
        _figure("raw RabbitMQ consume+ack/s", consume, None, None),
    ]
    if lean:
        rows.append(_figure("yardstick POST /api/orders req/s", lean["requests_per_s"], pg, None))
        rows.append(_figure("yardstick POST /api/orders p99 ms", lean["p99_ms"], None, None))
        # A ceiling that failed requests is no ceiling: the ratio against it means nothing then.
        rows.append(_figure("yardstick POST /api/orders errors", lean["errors"], None, 0, "<="))
    rows += [
        _figure(
            "POST /api/orders req/s",
            post["requests_per_s"],
            lean["requests_per_s"] if lean else None,
            TARGETS["http_post_orders_rps"],
            ">=",
            ratio_target=TARGETS["http_post_orders_of_yardstick"] if lean else None,
        ),
        _figure("POST /api/orders p50 ms", post["p50_ms"], None, None),
        _figure("POST /api/orders p99 ms", post["p99_ms"], None, TARGETS["http_post_orders_p99_ms"], "<="),
        _figure("POST /api/orders errors", post["errors"], None, 0, "<="),
        _figure(
            "GET /api/delivery/{id} req/s", get["requests_per_s"], pg, TARGETS["http_get_delivery_rps"], ">="
        ),
        _figure("GET /api/delivery/{id} p50 ms", get["p50_ms"], None, None),
        _figure("GET /api/delivery/{id} p99 ms", get["p99_ms"], None, None),
        _figure("GET /api/delivery/{id} errors", get["errors"], None, 0, "<="),
    ]
    rows += _wrk_rows(r)
    rows += [
        _figure("end to end orders/s (unpaced)", e2e["orders_per_s"], e2e_limit, None),
        _figure("end to end errors", e2e["http_errors"], None, 0, "<="),
        _figure("end to end activation lag p99 ms", e2e["activation_lag_p99_ms"], None, None),
    ]
    if offered:
        what = f"offered {offered['offered_per_s']:g}/s for {run['options'].get('offered_seconds', 0):g}s"
        rows.append(
            _figure(
                f"{what}: orders/s", offered["orders_per_s"], e2e_limit, TARGETS["e2e_orders_per_s"], ">="
            )
        )
        rows.append(_figure(f"{what}: errors", offered["http_errors"], None, 0, "<="))
        rows.append(_figure(f"{what}: not sent in time", offered.get("not_sent", 0), None, 0, "<="))
    rate = f"paced {paced['offered_per_s']:g}/s"
    rows += [
        _figure(f"{rate}: paid→activated p99 ms", paced["activation_lag_p99_ms"], None, None),
        _figure(
            f"{rate}: placed+paid p99 ms from intended",
            paced.get("placed_and_paid_from_intended_p99_ms", 0),
            None,
            None,
        ),
        _figure(
            f"{rate}: due→activated p99 ms",
            paced.get("activated_from_intended_p99_ms", paced["activation_lag_p99_ms"]),
            None,
            TARGETS["paced_lag_p99_ms"],
            "<=",
        ),
        _figure(f"{rate}: errors", paced["http_errors"], None, 0, "<="),
        _figure(f"{rate}: not sent in time", paced.get("not_sent", 0), None, 0, "<="),
    ]
    if sustained := r.get("e2e_sustained"):
        rows.append(_figure("paced at 70 %: orders/s offered", sustained["offered_per_s"], None, None))
        rows.append(
            _figure("paced at 70 %: paid→activated p99 ms", sustained["activation_lag_p99_ms"], None, None)
        )
        rows.append(_figure("paced at 70 %: errors", sustained["http_errors"], None, 0, "<="))
    rows += [
        _figure(
            "consumer drain events/s",
            r["consumer_drain"]["events_per_s"],
            consume,
            None,
            ratio_target=TARGETS["consumer_drain_of_raw"],
        ),
        _figure(
            "outbox drain events/s",
            r["outbox_drain"]["events_per_s"],
            publish,
            None,
            ratio_target=TARGETS["outbox_drain_of_raw"],
        ),
    ]
    for name, megabytes in r["memory_mb"].items():
        if megabytes is not None:
            rows.append(_figure(f"RSS {name} MB", megabytes, None, TARGETS["rss_mb"], "<="))
    return rows


def _wrk_rows(r: Json) -> list[Json]:
    """wrk's figures of the same phases, and whether the two generators agree (within 10 %)."""
    rows: list[Json] = []
    for section, label in (
        ("http_post_orders", "POST /api/orders"),
        ("http_get_delivery", "GET /api/delivery/{id}"),
        ("yardstick", "yardstick POST /api/orders"),
    ):
        theirs, ours = r.get("wrk", {}).get(section), r.get(section)
        if not theirs or not ours:
            continue
        rows.append(_figure(f"wrk: {label} req/s", theirs["requests_per_s"], None, None))
        rows.append(_figure(f"wrk: {label} p99 ms", theirs.get("p99_ms", 0), None, None))
        agreement = wrk_agreement(ours, theirs)
        rows.append(
            {
                "name": f"wrk ÷ bench: {label} req/s",
                "value": agreement["wrk_over_bench"],
                "limit": None,
                "ratio": None,
                "target": "±10 %",
                "met": agreement["agree"],
            }
        )
    return rows


def _figure(
    name: str,
    value: float,
    limit: float | None,
    target: float | None,
    sense: str = "",
    *,
    ratio_target: float | None = None,
) -> Json:
    """One row: the value against its target, and its ratio to its limit against the ratio's."""
    met = None
    if target is not None:
        met = value >= target if sense == ">=" else value <= target
    ratio = round(value / limit, 3) if limit else None
    targets = [f"{sense} {target:g}"] if target is not None else []
    if ratio_target is not None:
        targets.append(f"ratio >= {ratio_target:g}")
        met = (met is not False) and ratio is not None and ratio >= ratio_target
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "ratio": ratio,
        "target": ", ".join(targets) or None,
        "met": met,
    }


def render_table(run: Json) -> str:
    """The run's header and its figures as a table."""
    machine = run["machine"]
    lines = [
        f"Delivery Hub bench, {run['at']}, revision {run['revision']}, {machine['cores']} cores, "
        f"{run['run_seconds']}s",
        "processes per service: "
        + ", ".join(f"{name} {count}" for name, count in run["results"].get("processes", {}).items()),
        "each timed phase began with no event left from the ones before, on vacuumed databases",
        "",
        f"{'measure':42} {'value':>10} {'raw limit':>10} {'ratio':>7}  {'target':>24}  met",
        "-" * 103,
    ]
    for row in run["figures"]:
        lines.append(
            f"{row['name']:42} {_number(row['value']):>10} {_number(row['limit']):>10} "
            f"{_number(row['ratio']):>7}  {row['target'] or '':>24}  "
            f"{'' if row['met'] is None else ('yes' if row['met'] else 'NO')}"
        )
    lines += ["", "CPU during each phase, in cores (the busiest first):"]
    for phase, cpu in cpu_by_phase(run["results"]):
        busiest = sorted(cpu["cores"].items(), key=lambda item: -item[1])
        lines.append(f"  {phase:28} " + ", ".join(f"{name} {cores:.2f}" for name, cores in busiest))
    return "\n".join(lines)


def cpu_by_phase(results: Json) -> list[tuple[str, Json]]:
    """Each phase that was watched, with its CPU per process group."""
    found = [
        (name, section["cpu"])
        for name, section in results.items()
        if isinstance(section, dict) and "cpu" in section
    ]
    found += [
        (f"wrk {name}", section["cpu"])
        for name, section in results.get("wrk", {}).items()
        if isinstance(section, dict) and "cpu" in section
    ]
    return found


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value < 10:
        return f"{value:.3g}" if value < 1 else f"{value:.2f}"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def compare(first: Path, second: Path) -> int:
    """Two runs' figures side by side."""
    runs = [json.loads(path.read_text()) for path in (first, second)]
    left = {row["name"]: row for row in runs[0]["figures"]}
    right = {row["name"]: row for row in runs[1]["figures"]}
    print(f"{'measure':42} {first.name[:24]:>24} {second.name[:24]:>24} {'B/A':>7}")
    for run in runs:
        print(f"  {run['at']} {run['revision']} {run['machine']['cores']} cores")
    print("-" * 100)
    for name in [*left, *(name for name in right if name not in left)]:
        a = left.get(name, {}).get("value")
        b = right.get(name, {}).get("value")
        change = f"{b / a:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and a else ""
        print(f"{name:42} {_number(a):>24} {_number(b):>24} {change:>7}")
    return 0
