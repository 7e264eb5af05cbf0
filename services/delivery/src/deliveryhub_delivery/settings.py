"""Settings of the delivery service."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from deliveryhub_kit.settings import DEFAULT_POSTGRES, ServiceSettings


class DeliverySettings(ServiceSettings):
    service_name: str = "delivery"
    port: int = 8002
    database_url: str = Field(
        default=f"{DEFAULT_POSTGRES}/delivery",
        validation_alias=AliasChoices("DATABASE_URL", "POSTGRES_URL"),
    )
    # Set (e.g. `laptev_`) to also consume the teaching design's plain JSON order queues.
    legacy_queue_prefix: str | None = None
