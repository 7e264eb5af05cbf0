"""Bearer tokens of the tests' own, for callers of each role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.tokens import TokenIssuer


@dataclass(frozen=True)
class Tokens:
    """Authorization headers for callers of each role, signed by the test's key pair."""

    issuer: TokenIssuer

    @classmethod
    def signed_by(cls, key_pair: KeyPair) -> Tokens:
        """Tokens the services accept when started with `key_pair`'s public key and default settings."""
        defaults = ServiceSettings.model_fields
        return cls(
            TokenIssuer(
                key_pair.private_pem,
                issuer=str(defaults["jwt_issuer"].default),
                audience=str(defaults["jwt_audience"].default),
            )
        )

    def headers(self, principal: Principal) -> dict[str, str]:
        """The header that says the caller is `principal`."""
        return {"Authorization": f"Bearer {self.issuer.issue(principal)}"}

    def manager(self) -> dict[str, str]:
        return self.headers(Principal(subject=uuid.uuid4(), role=Role.MANAGER))

    def customer(self, customer_id: uuid.UUID | None = None) -> dict[str, str]:
        return self.headers(Principal(subject=customer_id or uuid.uuid4(), role=Role.CUSTOMER))

    def courier(self, deliveryman_id: uuid.UUID) -> dict[str, str]:
        principal = Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=deliveryman_id)
        return self.headers(principal)
