"""What a service's `/metrics` tells of the process itself, beside the service's own figures."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from deliveryhub_kit.metrics import Metrics


def samples() -> dict[str, float]:
    text = Metrics().exposition().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_process_resident_memory_and_cpu_are_exported() -> None:
    exported = samples()

    assert exported["process_resident_memory_bytes"] > 10 * 2**20
    assert exported["process_cpu_seconds_total"] > 0
    assert exported["process_open_fds"] >= 3


def test_the_garbage_collector_counts_are_exported() -> None:
    exported = samples()

    assert {"python_gc_collections_total", "python_gc_objects_collected_total"} <= exported.keys()
