"""The provisioned Grafana dashboard and Prometheus configuration speak of metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from deliveryhub_kit.metrics import Metrics

OBSERVABILITY = Path(__file__).resolve().parents[3] / "deploy" / "observability"


def exported_sample_names() -> set[str]:
    metrics = Metrics()
    names = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    names |= {family.name for family in metrics.registry.collect()}
    # Labelled metrics have no samples until used; their names and suffixes are still theirs.
    for family in metrics.registry.collect():
        names |= {f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum")}
    return names | {"deliveryhub_db_pool_connections_in_use", "deliveryhub_db_pool_size"}


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "deliveryhub.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expression in expressions for name in re.findall(r"deliveryhub_[a-z_]+", expression)}
    assert used, "the dashboard queries nothing"
    assert used <= exported_sample_names(), used - exported_sample_names()
    assert {"deliveryhub_outbox_waiting_events", "deliveryhub_events_dead_lettered_total"} <= used


def test_prometheus_scrapes_each_service_on_its_port() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: (job["dns_sd_configs"][0]["names"][0], job["dns_sd_configs"][0]["port"])
        for job in config["scrape_configs"]
    }
    assert targets == {"orders": ("orders", 8001), "delivery": ("delivery", 8002), "web": ("web", 8000)}


def test_the_compose_observability_profile_mounts_these_files_and_checks_health() -> None:
    root = OBSERVABILITY.parents[1]
    services = yaml.safe_load((root / "compose.yaml").read_text())["services"]
    profile = {
        name: service for name, service in services.items() if "observability" in service.get("profiles", [])
    }
    assert set(profile) == {"prometheus", "grafana", "jaeger"}
    for name, service in profile.items():
        assert "healthcheck" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (root / source).exists(), f"{name} mounts {source}, which is not there"
    for name in ("orders", "delivery", "web"):
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in services[name]["environment"], name
