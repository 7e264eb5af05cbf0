"""The delivery as the API shows it, and the appoint request it accepts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from deliveryhub_delivery import domain
from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_delivery.models import Deliveryman
from deliveryhub_delivery.schemas import AppointRequest, DeliveryOut

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DELIVERY_DATE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
KUDZH = Deliveryman(id=uuid.UUID("45309954-8e3c-4635-8066-b342f634252c"), name="Кудж Станислав Алексеевич")


def test_a_delivery_renders_in_the_teaching_designs_shape() -> None:
    delivery = domain.new_delivery(uuid.uuid4(), NOW)
    delivery.address = "Москва, ул. Ленина, д. 1"
    delivery.date = DELIVERY_DATE
    delivery.status = DeliveryStatus.ACTIVATED
    delivery.deliveryman = KUDZH
    delivery.deliveryman_id = KUDZH.id

    rendered = DeliveryOut.of(delivery).model_dump(mode="json")

    assert rendered == {
        "id": str(delivery.id),
        "address": "Москва, ул. Ленина, д. 1",
        "date": "2025-03-03T15:00:00Z",
        "status": "activated",
        "deliveryman": {"id": "45309954-8e3c-4635-8066-b342f634252c", "name": "Кудж Станислав Алексеевич"},
        "created_at": "2025-03-01T12:00:00Z",
        "updated_at": "2025-03-01T12:00:00Z",
    }


def test_a_delivery_without_a_courier_renders_null() -> None:
    delivery = domain.new_delivery(uuid.uuid4(), NOW)
    delivery.address = "Москва, ул. Ленина, д. 1"
    delivery.date = DELIVERY_DATE

    rendered = DeliveryOut.of(delivery).model_dump(mode="json")

    assert rendered["deliveryman"] is None
    assert rendered["status"] == "created"


def test_an_appoint_request_names_a_courier() -> None:
    request = AppointRequest.model_validate({"deliveryman_id": str(KUDZH.id)})

    assert request.deliveryman_id == KUDZH.id


@pytest.mark.parametrize(
    "body",
    [{}, {"deliveryman_id": "Кудж"}, {"deliveryman_id": str(KUDZH.id), "status": "done"}],
    ids=["missing", "not a uuid", "unknown field"],
)
def test_an_invalid_appoint_request_is_refused(body: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        AppointRequest.model_validate(body)
