"""The same HTTP phases driven by wrk, a standard load generator, when it is installed."""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

from deliveryhub_cli.bench.options import Json

# Two runs of one phase by two load generators agree when their rates are within this share.
AGREEMENT = 0.10

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_path() -> str | None:
    return shutil.which("wrk")


def parse_wrk(output: str) -> Json:
    """Rate, latency percentiles (ms) and failures from wrk's `--latency` report."""
    rate = _RATE.search(output)
    total = _TOTAL.search(output)
    if rate is None or total is None:
        raise ValueError(f"not a wrk report: {output[-500:]!r}")
    percentiles = {
        f"p{p}_ms": round(float(value) * _UNITS[unit], 2) for p, value, unit in _PERCENTILE.findall(output)
    }
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET_ERRORS.search(output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return {
        "requests": int(total.group(1)),
        "requests_per_s": float(rate.group(1)),
        **percentiles,
        "errors": errors,
    }


def lua_script(method: str, headers: dict[str, str], body: bytes | None, paths: list[str] | None) -> str:
    """A wrk script sending one request shape; with `paths`, each request a path at random."""
    lines = [f"wrk.method = {json.dumps(method)}"]
    for name, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body)}")
    if paths:
        lines.append("local paths = {" + ",".join(json.dumps(path) for path in paths) + "}")
        lines.append("request = function() return wrk.format(nil, paths[math.random(#paths)]) end")
    return "\n".join(lines) + "\n"


def _lua_string(data: bytes) -> str:
    # Every byte escaped as \ddd: a Lua string of exactly these bytes, whatever they are.
    return '"' + "".join(f"\\{byte:03d}" for byte in data) + '"'


def run_wrk(
    url: str,
    *,
    method: str,
    headers: dict[str, str],
    body: bytes | None = None,
    paths: list[str] | None = None,
    connections: int,
    seconds: float,
    threads: int = 2,
) -> Json:
    """One wrk run against `url`; its figures and the CPU it took (cores)."""
    wrk = wrk_path()
    if wrk is None:
        raise FileNotFoundError("wrk is not installed")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "phase.lua"
        script.write_text(lua_script(method, headers, body, paths))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()[-300:]}")
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**parse_wrk(result.stdout), "load_generator_cores": round(spent / max(1, round(seconds)), 2)}


def agreement(ours: Json, theirs: Json) -> Json:
    """How the two generators' rates compare: their ratio, and whether it is within 10 %."""
    ratio = theirs["requests_per_s"] / ours["requests_per_s"] if ours["requests_per_s"] else None
    return {
        "wrk_over_bench": round(ratio, 3) if ratio is not None else None,
        "agree": ratio is not None and abs(ratio - 1) <= AGREEMENT,
    }
