"""Who is calling: a subject, a role and, for a courier, the deliveryman they are."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from deliveryhub_kit.errors import PermissionDenied


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    MANAGER = "manager"
    COURIER = "courier"


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    subject: uuid.UUID
    role: Role
    deliveryman_id: uuid.UUID | None = None


def require_role(principal: Principal, *roles: Role) -> None:
    """Raise `PermissionDenied` unless the principal has one of `roles`."""
    if principal.role not in roles:
        allowed = ", ".join(role.value for role in roles)
        raise PermissionDenied(f"this action is for: {allowed}; you are {principal.role.value}")
