"""Accounts of the web console: register, sign in and out, the demo accounts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Callable, Sequence
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
# The longest an e-mail address can be (RFC 5321's path limit, less the angle brackets).
MAX_EMAIL_LENGTH = 254


class Passwords:
    """Hashing and checking passwords off the event loop, a few at a time.

    argon2 spends tens of milliseconds of CPU on purpose: run in the event loop, every sign-in would
    stall every other request of the process. Here it runs in a worker thread; and a use case that
    checks or sets a password takes its `turn()` first, before it reads the account, so a flood of
    sign-ins waits for a turn holding neither a thread nor a database connection.
    """

    def __init__(self, concurrency: int = 2, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._turns = asyncio.Semaphore(concurrency)
        self._absent_user_hash: str | None = None

    def turn(self) -> asyncio.Semaphore:
        """`async with passwords.turn():` around the work of one sign-in or registration."""
        return self._turns

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` is the one hashed; with no hash (no such user) a dummy one is checked,
        so that both answers take as long."""
        if password_hash is None:
            if self._absent_user_hash is None:
                self._absent_user_hash = await self.hash(secrets.token_urlsafe(16))
            password_hash = self._absent_user_hash
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


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
    async def delete_users(self, ids: Sequence[uuid.UUID]) -> int: ...


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
        passwords: Passwords | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._accounts = accounts
        self._session_lifetime = session_lifetime
        self._passwords = passwords or Passwords()
        self._clock = clock

    async def register_customer(self, *, email: str, name: str, password: str) -> User:
        email = normalize_email(email)
        name = name.strip()
        _check_account(email, name, password)
        async with self._passwords.turn():
            user = User(
                id=uuid.uuid4(),
                email=email,
                name=name,
                password_hash=await self._passwords.hash(password),
                role=Role.CUSTOMER,
                created_at=self._clock(),
            )
            if not await self._accounts.add_user(user):
                raise EmailTaken("an account with this e-mail exists already; sign in instead")
        return user

    async def sign_in(self, *, email: str, password: str) -> tuple[User, str]:
        """Check the password; the user and a new session token for the cookie."""
        email = normalize_email(email)
        async with self._passwords.turn():
            user = None if "\x00" in email else await self._accounts.user_by_email(email)
            right = await self._passwords.verify(user.password_hash if user else None, password)
            if user is None or not right:
                raise WrongCredentials("the e-mail or the password is not right")
            if self._passwords.needs_rehash(user.password_hash):
                await self._accounts.set_password_hash(user, await self._passwords.hash(password))
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

    async def create_manager(self, *, email: str, name: str, password: str) -> User:
        """A shop manager's account, as an operator creates the first one of a deployment."""
        email = normalize_email(email)
        _check_account(email, name.strip(), password)
        async with self._passwords.turn():
            user = User(
                id=uuid.uuid4(),
                email=email,
                name=name.strip(),
                password_hash=await self._passwords.hash(password),
                role=Role.MANAGER,
                created_at=self._clock(),
            )
            if not await self._accounts.add_user(user):
                raise EmailTaken(f"an account with the e-mail {email} exists already")
        return user

    async def remove_demo_accounts(self) -> int:
        """Delete the demo accounts (only the ones seeded, by their ids) and their sessions; how many."""
        return await self._accounts.delete_users([_demo_id(account) for account in DEMO_ACCOUNTS])

    async def seed_demo_accounts(self, password: str) -> int:
        """Create the demo accounts that are missing; how many were created."""
        created = 0
        for account in DEMO_ACCOUNTS:
            async with self._passwords.turn():
                password_hash = await self._passwords.hash(password)
            user = User(
                id=_demo_id(account),
                email=account.email,
                name=account.name,
                password_hash=password_hash,
                role=account.role,
                deliveryman_id=account.deliveryman_id,
                created_at=self._clock(),
            )
            created += await self._accounts.add_user(user)
        return created


def _check_account(email: str, name: str, password: str) -> None:
    """Refuse what no account may have, saying what to fix."""
    # PostgreSQL stores no NUL character, so it is refused here like any other mistake.
    if "\x00" in email or "\x00" in name:
        raise InvalidRegistration("remove the NUL character from the e-mail address and the name")
    if "@" not in email or len(email) > MAX_EMAIL_LENGTH or email.startswith("@") or email.endswith("@"):
        raise InvalidRegistration("enter an e-mail address such as name@example.com")
    if not name or len(name) > 200:
        raise InvalidRegistration("enter your name (at most 200 characters)")
    if len(password) < MIN_PASSWORD_LENGTH or len(password) > 1024:
        raise InvalidRegistration(f"choose a password of at least {MIN_PASSWORD_LENGTH} characters")


def _demo_id(account: DemoAccount) -> uuid.UUID:
    """A demo account's id: its courier's id, else one made from its e-mail (no registered account
    has such an id, so removing the demo accounts removes nobody else)."""
    return account.deliveryman_id or uuid.uuid5(uuid.NAMESPACE_URL, account.email)


def account_service(
    session: AsyncSession, *, session_lifetime: timedelta, passwords: Passwords
) -> AccountService:
    accounts = SqlAccountRepository(session)
    return AccountService(accounts, session_lifetime=session_lifetime, passwords=passwords)
