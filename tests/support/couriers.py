"""The couriers the delivery service's migrations seed, as the events name them."""

from __future__ import annotations

import uuid

from deliveryhub_contracts.events import Deliveryman

LAPTEV = Deliveryman(id=uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), name="Лаптев Иван Алексаендрович")
ZUEV = Deliveryman(id=uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"), name="Зуев Андрей Сергеевич")
KUDZH = Deliveryman(id=uuid.UUID("45309954-8e3c-4635-8066-b342f634252c"), name="Кудж Станислав Алексеевич")
