"""Settings of the orders service."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from deliveryhub_kit.settings import DEFAULT_POSTGRES, ServiceSettings


class OrdersSettings(ServiceSettings):
    service_name: str = "orders"
    port: int = 8001
    database_url: str = Field(
        default=f"{DEFAULT_POSTGRES}/orders",
        validation_alias=AliasChoices("DATABASE_URL", "POSTGRES_URL"),
    )
