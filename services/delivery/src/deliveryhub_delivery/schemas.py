"""The delivery service's HTTP shapes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from deliveryhub_delivery.domain import DeliveryStatus, DeliveryView
from deliveryhub_delivery.models import Delivery


class DeliverymanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str


class CourierOut(DeliverymanOut):
    """A courier as the couriers' list shows one: with the deliveries in their hands."""

    open_deliveries: int = Field(description="Deliveries appointed to them and not yet done or canceled")


class DeliveryOut(BaseModel):
    id: uuid.UUID
    address: str
    date: datetime
    status: DeliveryStatus
    deliveryman: DeliverymanOut | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, delivery: Delivery | DeliveryView) -> DeliveryOut:
        assert delivery.address is not None
        assert delivery.date is not None
        man = delivery.deliveryman
        return cls(
            id=delivery.id,
            address=delivery.address,
            date=delivery.date,
            status=DeliveryStatus(delivery.status),
            deliveryman=DeliverymanOut(id=man.id, name=man.name) if man else None,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
        )


class AppointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deliveryman_id: uuid.UUID
