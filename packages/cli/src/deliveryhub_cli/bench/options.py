"""What a bench run is asked to do, and the services' own concurrency every phase measures at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deliveryhub_kit.settings import ServiceSettings

Json = dict[str, Any]

# The services' own concurrency, from their settings' defaults.
_DEFAULTS = ServiceSettings.model_fields
RELAY_WINDOW: int = _DEFAULTS["outbox_batch_size"].default
CONSUMER_PREFETCH: int = _DEFAULTS["consumer_prefetch"].default
DATABASE_CONNECTIONS: int = (
    _DEFAULTS["database_pool_size"].default + _DEFAULTS["database_max_overflow"].default
)
RETRY_DELAYS: tuple[float, ...] = _DEFAULTS["retry_delays_seconds"].default


@dataclass
class BenchOptions:
    """The target system, the sizes of each phase, and where the run is written."""

    orders_url: str
    delivery_url: str
    postgres: str
    database_prefix: str
    amqp: str
    broker_prefix: str
    data_dir: Path
    results_dir: Path
    connections: int = 64
    duration: float = 10.0
    raw_seconds: float = 3.0
    orders: int = 3000
    paced_rate: float = 250.0
    paced_seconds: float = 10.0
    offered_rate: float = 500.0
    offered_seconds: float = 60.0
    events: int = 5000
    outbox_rows: int = 5000
    timeout: float = 120.0
    start: bool = False
    workers: int = 1
    host: str = "127.0.0.1"
    json_output: bool = False
