"""Plain-JSON messages of the teaching design's order service, consumed for compatibility."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict

from deliveryhub_contracts.values import Address, storable_moment

ORDER_CREATED_QUEUE: Final = "order_created_queue"
ORDER_PAID_QUEUE: Final = "order_paid_queue"


class LegacyOrderCreated(BaseModel):
    """`{"order_id", "date", "address"}` on `{prefix}order_created_queue`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: uuid.UUID
    # The teaching design sends dates without a zone: they are UTC.
    date: Annotated[datetime, AfterValidator(storable_moment)]
    address: Address


class LegacyOrderPaid(BaseModel):
    """`{"id"}` on `{prefix}order_paid_queue`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: uuid.UUID
