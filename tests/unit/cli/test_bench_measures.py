"""The bench's own instruments: wrk's report read, its script written, CPU read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from deliveryhub_cli.bench.cpu import CpuWatch, cpu_seconds, process_tree
from deliveryhub_cli.bench.wrk import agreement, lua_script, parse_wrk

WRK_REPORT = """Running 10s test @ http://127.0.0.1:9101/api/orders
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   277.70ms  245.25ms   1.95s    85.65%
    Req/Sec   130.89     39.88   300.00     73.23%
  Latency Distribution
     50%  141.85ms
     75%  385.17ms
     90%  619.84ms
     99%    1.14s
  2594 requests in 10.02s, 1.75MB read
  Socket errors: connect 0, read 0, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:    258.82
Transfer/sec:    178.70KB
"""


def test_a_wrk_report_gives_rate_percentiles_in_milliseconds_and_failures() -> None:
    assert parse_wrk(WRK_REPORT) == {
        "requests": 2594,
        "requests_per_s": 258.82,
        "p50_ms": 141.85,
        "p75_ms": 385.17,
        "p90_ms": 619.84,
        "p99_ms": 1140.0,
        "errors": 4,  # three answers that were not 2xx, one timeout
    }


def test_microseconds_are_read_as_such_and_a_report_without_figures_is_refused() -> None:
    fast = WRK_REPORT.replace("141.85ms", "812.00us")
    assert parse_wrk(fast)["p50_ms"] == 0.81
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_the_script_sends_exactly_the_body_bytes_whatever_they_hold() -> None:
    body = '{"address": "ул. Ленина \\"1\\"\\n]]"}'.encode()
    script = lua_script("POST", {"Authorization": "Bearer x"}, body, ["/a", "/b"])
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Authorization"] = "Bearer x"' in script
    escaped = script.split("wrk.body = ", 1)[1].split("\n", 1)[0]
    assert bytes(int(code) for code in escaped.strip('"').split("\\")[1:]) == body
    assert 'local paths = {"/a","/b"}' in script


def test_two_generators_agree_within_ten_percent() -> None:
    assert agreement({"requests_per_s": 100.0}, {"requests_per_s": 109.0}) == {
        "wrk_over_bench": 1.09,
        "agree": True,
    }
    assert agreement({"requests_per_s": 100.0}, {"requests_per_s": 85.0})["agree"] is False
    assert agreement({"requests_per_s": 0.0}, {"requests_per_s": 85.0})["agree"] is False


def test_cpu_is_read_per_process_and_the_busiest_group_named() -> None:
    # The spinner spends 0.3 s of CPU, says so, then waits for its stdin to close.
    spin = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    spin += "print('spun', flush=True)\nsys.stdin.read()\n"
    spinner = subprocess.Popen(
        [sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        watch = CpuWatch({"spinner": process_tree(spinner.pid), "bench": lambda: (os.getpid(),)})
        before, started = watch.reading(), time.perf_counter()
        assert spinner.stdout is not None
        assert spinner.stdout.readline().strip() == "spun"  # the condition: its CPU is spent
        cores = CpuWatch.cores(before, watch.reading(), time.perf_counter() - started)
    finally:
        spinner.kill()
        spinner.communicate(timeout=10)
    assert cores["busiest"] == "spinner"
    assert cores["cores"]["spinner"] > cores["cores"]["bench"]
    # The machine as a whole spent at least what the spinner did; the rest is named as such.
    assert cores["machine_cores"] >= cores["cores"]["spinner"] - 0.05
    assert cores["cores"]["everything else"] >= 0
    assert cpu_seconds(spinner.pid) is None  # gone
