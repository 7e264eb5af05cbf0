"""The console's accounts over an in-memory repository: registering, signing in and out, demo accounts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_web.errors import EmailTaken, InvalidRegistration, WrongCredentials
from deliveryhub_web.models import User, WebSession
from deliveryhub_web.service import DEMO_ACCOUNTS, AccountService, Passwords, SignedInUser

# Made-up passwords of test accounts.
PASSWORD = "correct horse battery"  # noqa: S105
OTHER_PASSWORD = "another password"  # noqa: S105
WRONG_PASSWORD = "not the password"  # noqa: S105
DEMO_PASSWORD = "demo-password"  # noqa: S105
LIFETIME = timedelta(hours=12)
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
KUDZH = uuid.UUID("45309954-8e3c-4635-8066-b342f634252c")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 5, 17, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def refuse_what_postgresql_cannot_store(*texts: str) -> None:
    if any("\x00" in text for text in texts):
        raise ValueError("invalid byte sequence for encoding UTF8: 0x00")


class FakeAccountRepository:
    """Users and sessions in dictionaries, with the SQL repository's visible behaviour."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.sessions: dict[str, WebSession] = {}

    async def user_by_email(self, email: str) -> User | None:
        refuse_what_postgresql_cannot_store(email)
        return self.users.get(email)

    async def add_user(self, user: User) -> bool:
        refuse_what_postgresql_cannot_store(user.email, user.name)
        if user.email in self.users:
            return False
        self.users[user.email] = user
        return True

    async def set_password_hash(self, user: User, password_hash: str) -> None:
        user.password_hash = password_hash

    def add_session(self, web_session: WebSession) -> None:
        web_session.user = next(user for user in self.users.values() if user.id == web_session.user_id)
        self.sessions[web_session.token_hash] = web_session

    async def session_by_token_hash(self, token_hash: str, now: datetime) -> WebSession | None:
        web_session = self.sessions.get(token_hash)
        return web_session if web_session is not None and web_session.expires_at > now else None

    async def delete_session(self, token_hash: str) -> None:
        self.sessions.pop(token_hash, None)

    async def delete_expired_sessions(self, now: datetime) -> None:
        for token_hash, web_session in list(self.sessions.items()):
            if web_session.expires_at <= now:
                del self.sessions[token_hash]

    async def delete_users(self, ids: Sequence[uuid.UUID]) -> int:
        gone = [email for email, user in self.users.items() if user.id in ids]
        for email in gone:
            del self.users[email]
        for token_hash, web_session in list(self.sessions.items()):
            if web_session.user_id in ids:
                del self.sessions[token_hash]
        return len(gone)


@pytest.fixture
def quick_password_hashing() -> PasswordHasher:
    """Argon2 with its cheapest parameters: its default cost is deliberate, and these tests are many."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts() -> FakeAccountRepository:
    return FakeAccountRepository()


@pytest.fixture
def service(
    accounts: FakeAccountRepository, clock: Clock, quick_password_hashing: PasswordHasher
) -> AccountService:
    passwords = Passwords(hasher=quick_password_hashing)
    return AccountService(accounts, session_lifetime=LIFETIME, passwords=passwords, clock=clock)


async def signed_in(service: AccountService, email: str, password: str = PASSWORD) -> SignedInUser:
    _, token = await service.sign_in(email=email, password=password)
    user = await service.signed_in_user(token)
    assert user is not None
    return user


async def test_a_registered_customer_can_sign_in_with_the_e_mail_in_any_case(
    service: AccountService, accounts: FakeAccountRepository
) -> None:
    user = await service.register_customer(
        email="  Anna.Pokupateleva@Example.COM ", name=" Анна ", password=PASSWORD
    )

    assert user.email == "anna.pokupateleva@example.com"
    assert user.name == "Анна"
    assert user.role == Role.CUSTOMER
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert list(accounts.users) == ["anna.pokupateleva@example.com"]
    signed_in_user = await signed_in(service, "ANNA.pokupateleva@example.com")
    assert signed_in_user.id == user.id
    assert signed_in_user.role is Role.CUSTOMER


@pytest.mark.parametrize("password", ["", "short", "7-chars"])
async def test_a_short_password_is_refused(
    password: str, service: AccountService, accounts: FakeAccountRepository
) -> None:
    with pytest.raises(InvalidRegistration, match="at least 8 characters"):
        await service.register_customer(email="anna@example.com", name="Анна", password=password)

    assert accounts.users == {}


async def test_a_password_of_eight_characters_is_enough(service: AccountService) -> None:
    eight = "8-chars!"

    await service.register_customer(email="anna@example.com", name="Анна", password=eight)

    assert (await signed_in(service, "anna@example.com", eight)).email == "anna@example.com"


@pytest.mark.parametrize("email", ["", "   ", "anna", "@example.com", "anna@", "a" * 250 + "@example.com"])
async def test_an_address_that_is_no_e_mail_is_refused(
    email: str, service: AccountService, accounts: FakeAccountRepository
) -> None:
    with pytest.raises(InvalidRegistration, match="e-mail address"):
        await service.register_customer(email=email, name="Анна", password=PASSWORD)

    assert accounts.users == {}


@pytest.mark.parametrize("name", ["", "   ", "я" * 201])
async def test_a_missing_or_overlong_name_is_refused(name: str, service: AccountService) -> None:
    with pytest.raises(InvalidRegistration, match="your name"):
        await service.register_customer(email="anna@example.com", name=name, password=PASSWORD)


@pytest.mark.parametrize(
    ("email", "name"), [("anna\x00@example.com", "Анна"), ("anna@example.com", "Ан\x00на")]
)
async def test_a_nul_character_which_the_database_cannot_store_is_refused(
    email: str, name: str, service: AccountService, accounts: FakeAccountRepository
) -> None:
    with pytest.raises(InvalidRegistration, match="NUL character"):
        await service.register_customer(email=email, name=name, password=PASSWORD)

    assert accounts.users == {}


async def test_an_e_mail_with_a_nul_character_signs_nobody_in(service: AccountService) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)

    with pytest.raises(WrongCredentials):
        await service.sign_in(email="anna@example.com\x00", password=PASSWORD)


async def test_a_taken_e_mail_is_refused_and_the_first_account_keeps_its_password(
    service: AccountService, accounts: FakeAccountRepository
) -> None:
    first = await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)

    with pytest.raises(EmailTaken, match="exists already"):
        await service.register_customer(email=" ANNA@example.com", name="Другая", password=OTHER_PASSWORD)

    assert list(accounts.users.values()) == [first]
    assert (await signed_in(service, "anna@example.com")).name == "Анна"


async def test_a_wrong_password_and_an_unknown_e_mail_are_told_apart_by_nothing(
    service: AccountService,
) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)

    with pytest.raises(WrongCredentials) as wrong_password:
        await service.sign_in(email="anna@example.com", password=WRONG_PASSWORD)
    with pytest.raises(WrongCredentials) as unknown_email:
        await service.sign_in(email="nobody@example.com", password=PASSWORD)

    assert (
        wrong_password.value.detail == unknown_email.value.detail == "the e-mail or the password is not right"
    )
    assert wrong_password.value.code == unknown_email.value.code


async def test_a_failed_sign_in_opens_no_session(
    service: AccountService, accounts: FakeAccountRepository
) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)

    with pytest.raises(WrongCredentials):
        await service.sign_in(email="anna@example.com", password=WRONG_PASSWORD)

    assert accounts.sessions == {}


async def test_the_session_token_resolves_to_the_user_and_is_not_kept_in_clear(
    service: AccountService, accounts: FakeAccountRepository
) -> None:
    registered = await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)

    user, token = await service.sign_in(email="anna@example.com", password=PASSWORD)

    assert user.id == registered.id
    assert len(token) >= 32
    assert token not in accounts.sessions
    assert await service.signed_in_user(token) == SignedInUser(
        id=registered.id, email="anna@example.com", name="Анна", role=Role.CUSTOMER, deliveryman_id=None
    )


async def test_each_sign_in_gets_its_own_token(service: AccountService) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)

    _, first = await service.sign_in(email="anna@example.com", password=PASSWORD)
    _, second = await service.sign_in(email="anna@example.com", password=PASSWORD)

    assert first != second


async def test_an_unknown_token_resolves_to_nobody(service: AccountService) -> None:
    assert await service.signed_in_user("a-token-the-console-never-gave") is None


async def test_signing_out_ends_that_session_only(service: AccountService) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)
    _, laptop = await service.sign_in(email="anna@example.com", password=PASSWORD)
    _, phone = await service.sign_in(email="anna@example.com", password=PASSWORD)

    await service.sign_out(laptop)

    assert await service.signed_in_user(laptop) is None
    assert await service.signed_in_user(phone) is not None


async def test_signing_out_twice_is_harmless(service: AccountService) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)
    _, token = await service.sign_in(email="anna@example.com", password=PASSWORD)

    await service.sign_out(token)
    await service.sign_out(token)

    assert await service.signed_in_user(token) is None


async def test_a_session_resolves_until_its_lifetime_ends(service: AccountService, clock: Clock) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)
    _, token = await service.sign_in(email="anna@example.com", password=PASSWORD)

    clock.advance(LIFETIME - timedelta(seconds=1))
    assert await service.signed_in_user(token) is not None
    clock.advance(timedelta(seconds=1))
    assert await service.signed_in_user(token) is None


async def test_a_sign_in_clears_the_expired_sessions_away(
    service: AccountService, accounts: FakeAccountRepository, clock: Clock
) -> None:
    await service.register_customer(email="anna@example.com", name="Анна", password=PASSWORD)
    await service.sign_in(email="anna@example.com", password=PASSWORD)
    clock.advance(LIFETIME + timedelta(minutes=1))

    _, fresh = await service.sign_in(email="anna@example.com", password=PASSWORD)

    assert len(accounts.sessions) == 1
    assert await service.signed_in_user(fresh) is not None


async def test_a_password_hashed_with_other_parameters_is_rehashed_at_sign_in(
    service: AccountService, accounts: FakeAccountRepository, quick_password_hashing: PasswordHasher
) -> None:
    old_hash = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    accounts.users["anna@example.com"] = User(
        id=uuid.uuid4(), email="anna@example.com", name="Анна", password_hash=old_hash, role=Role.CUSTOMER
    )

    await service.sign_in(email="anna@example.com", password=PASSWORD)

    new_hash = accounts.users["anna@example.com"].password_hash
    assert new_hash != old_hash
    assert not quick_password_hashing.check_needs_rehash(new_hash)
    assert (await signed_in(service, "anna@example.com")).email == "anna@example.com"


async def test_the_demo_accounts_are_created_once(
    service: AccountService, accounts: FakeAccountRepository
) -> None:
    assert await service.seed_demo_accounts(DEMO_PASSWORD) == len(DEMO_ACCOUNTS)
    first_users = dict(accounts.users)

    assert await service.seed_demo_accounts(DEMO_PASSWORD) == 0
    assert accounts.users == first_users


async def test_seeding_keeps_an_account_that_exists_already(
    service: AccountService, accounts: FakeAccountRepository
) -> None:
    await service.seed_demo_accounts(DEMO_PASSWORD)
    manager = accounts.users["manager@deliveryhub.example"]

    await service.seed_demo_accounts(OTHER_PASSWORD)

    assert accounts.users["manager@deliveryhub.example"] is manager
    assert (await signed_in(service, "manager@deliveryhub.example", DEMO_PASSWORD)).role is Role.MANAGER


async def test_the_demo_couriers_are_the_three_deliverymen(service: AccountService) -> None:
    await service.seed_demo_accounts(DEMO_PASSWORD)

    couriers = {
        account.email: await signed_in(service, account.email, DEMO_PASSWORD)
        for account in DEMO_ACCOUNTS
        if account.role is Role.COURIER
    }

    assert {email: user.deliveryman_id for email, user in couriers.items()} == {
        "laptev@deliveryhub.example": LAPTEV,
        "zuev@deliveryhub.example": ZUEV,
        "kudzh@deliveryhub.example": KUDZH,
    }
    laptev = couriers["laptev@deliveryhub.example"]
    assert laptev.name == "Лаптев Иван Алексаендрович"
    assert laptev.principal == Principal(subject=laptev.id, role=Role.COURIER, deliveryman_id=LAPTEV)


async def test_each_demo_role_can_sign_in_with_the_demo_password(service: AccountService) -> None:
    await service.seed_demo_accounts(DEMO_PASSWORD)

    roles = {(await signed_in(service, account.email, DEMO_PASSWORD)).role for account in DEMO_ACCOUNTS}

    assert roles == {Role.CUSTOMER, Role.MANAGER, Role.COURIER}
    with pytest.raises(WrongCredentials):
        await service.sign_in(email="manager@deliveryhub.example", password=WRONG_PASSWORD)
