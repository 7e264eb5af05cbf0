"""The web console's errors."""

from __future__ import annotations

from deliveryhub_kit.errors import Conflict, InvalidInput, Unauthenticated


class WrongCredentials(Unauthenticated):
    code = "wrong_credentials"


class EmailTaken(Conflict):
    code = "email_taken"


class InvalidRegistration(InvalidInput):
    code = "invalid_registration"
