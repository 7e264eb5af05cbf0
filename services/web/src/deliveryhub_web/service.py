"""Accounts of the web console: register, sign in and out, the demo accounts."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_kit.db import utcnow
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_web.errors import EmailTaken, InvalidRegistration, WrongCredentials
from deliveryhub_web.models import User, WebSession
from deliveryhub_web.repository import SqlAccountRepository

MIN_PASSWORD_LENGTH = 8

# A hash to verify against when the e-mail is unknown, so that both answers take as long.
_hasher = PasswordHasher()
_ABSENT_USER_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class DemoAccount:
    email: str
    name: str
    role: Role
    deliveryman_id: uuid.UUID | None = None


DEMO_ACCOUNTS = (
    DemoAccount("customer@deliveryhub.example", "Анна Покупателева", Role.CUSTOMER),
    DemoAccount("manager@deliveryhub.example", "Мария Управляева", Role.MANAGER),
    DemoAccount(
        "laptev@deliveryhub.example",
        "Лаптев Иван Алексаендрович",
        Role.COURIER,
        uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"),
    ),
    DemoAccount(
        "zuev@deliveryhub.example",
        "Зуев Андрей Сергеевич",
        Role.COURIER,
        uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"),
    ),
    DemoAccount(
        "kudzh@deliveryhub.example",
        "Кудж Станислав Алексеевич",
        Role.COURIER,
        uuid.UUID("45309954-8e3c-4635-8066-b342f634252c"),
    ),
)


@dataclass(frozen=True)
class SignedInUser:
    """The user behind a browser session."""

    id: uuid.UUID
    email: str
    name: str
    role: Role
    deliveryman_id: uuid.UUID | None

    @property
    def principal(self) -> Principal:
        return Principal(subject=self.id, role=self.role, deliveryman_id=self.deliveryman_id)


class AccountRepository(Protocol):
    async def user_by_email(self, email: str) -> User | None: ...
    async def add_user(self, user: User) -> bool: ...
    async def set_password_hash(self, user: User, password_hash: str) -> None: ...
    def add_session(self, web_session: WebSession) -> None: ...
    async def session_by_token_hash(self, token_hash: str, now: datetime) -> WebSession | None: ...
    async def delete_session(self, token_hash: str) -> None: ...
    async def delete_expired_sessions(self, now: datetime) -> None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


class AccountService:
    def __init__(
        self,
        accounts: AccountRepository,
        *,
        session_lifetime: timedelta = timedelta(hours=12),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._accounts = accounts
        self._session_lifetime = session_lifetime
        self._clock = clock

    async def register_customer(self, *, email: str, name: str, password: str) -> User:
        email = normalize_email(email)
        name = name.strip()
        # PostgreSQL stores no NUL character, so it is refused here like any other mistake.
        if "\x00" in email or "\x00" in name:
            raise InvalidRegistration("remove the NUL character from the e-mail address and the name")
        if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
            raise InvalidRegistration("enter an e-mail address such as name@example.com")
        if not name or len(name) > 200:
            raise InvalidRegistration("enter your name (at most 200 characters)")
        if len(password) < MIN_PASSWORD_LENGTH or len(password) > 1024:
            raise InvalidRegistration(f"choose a password of at least {MIN_PASSWORD_LENGTH} characters")
        user = User(
            id=uuid.uuid4(),
            email=email,
            name=name,
            password_hash=_hasher.hash(password),
            role=Role.CUSTOMER,
            created_at=self._clock(),
        )
        if not await self._accounts.add_user(user):
            raise EmailTaken("an account with this e-mail exists already; sign in instead")
        return user

    async def sign_in(self, *, email: str, password: str) -> tuple[User, str]:
        """Check the password; the user and a new session token for the cookie."""
        email = normalize_email(email)
        user = None if "\x00" in email else await self._accounts.user_by_email(email)
        try:
            _hasher.verify(user.password_hash if user else _ABSENT_USER_HASH, password)
        except (VerificationError, InvalidHashError) as error:
            raise WrongCredentials("the e-mail or the password is not right") from error
        if user is None:
            raise WrongCredentials("the e-mail or the password is not right")
        if _hasher.check_needs_rehash(user.password_hash):
            await self._accounts.set_password_hash(user, _hasher.hash(password))
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._accounts.add_session(
            WebSession(
                token_hash=token_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=now + self._session_lifetime,
            )
        )
        await self._accounts.delete_expired_sessions(now)
        return user, token

    async def signed_in_user(self, session_token: str) -> SignedInUser | None:
        web_session = await self._accounts.session_by_token_hash(token_hash(session_token), self._clock())
        if web_session is None:
            return None
        user = web_session.user
        return SignedInUser(
            id=user.id,
            email=user.email,
            name=user.name,
            role=Role(user.role),
            deliveryman_id=user.deliveryman_id,
        )

    async def sign_out(self, session_token: str) -> None:
        await self._accounts.delete_session(token_hash(session_token))

    async def seed_demo_accounts(self, password: str) -> int:
        """Create the demo accounts that are missing; how many were created."""
        created = 0
        for account in DEMO_ACCOUNTS:
            user = User(
                id=account.deliveryman_id or uuid.uuid5(uuid.NAMESPACE_URL, account.email),
                email=account.email,
                name=account.name,
                password_hash=_hasher.hash(password),
                role=account.role,
                deliveryman_id=account.deliveryman_id,
                created_at=self._clock(),
            )
            created += await self._accounts.add_user(user)
        return created


def account_service(session: AsyncSession, *, session_lifetime: timedelta) -> AccountService:
    return AccountService(SqlAccountRepository(session), session_lifetime=session_lifetime)
