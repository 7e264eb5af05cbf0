"""Plain-JSON messages of the teaching design's order service, consumed for compatibility."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

ORDER_CREATED_QUEUE: Final = "order_created_queue"
ORDER_PAID_QUEUE: Final = "order_paid_queue"


class LegacyOrderCreated(BaseModel):
    """`{"order_id", "date", "address"}` on `{prefix}order_created_queue`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: uuid.UUID
    date: datetime
    address: str = Field(min_length=1)


class LegacyOrderPaid(BaseModel):
    """`{"id"}` on `{prefix}order_paid_queue`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: uuid.UUID
