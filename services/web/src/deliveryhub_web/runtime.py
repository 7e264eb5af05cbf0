"""The moving parts of the web console's process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_kit.broker import Broker
from deliveryhub_kit.consumer import InboxConsumer
from deliveryhub_kit.db import Database
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.migrations import head_revision
from deliveryhub_kit.tokens import TokenIssuer
from deliveryhub_web.__main__ import MIGRATIONS
from deliveryhub_web.clients import Backends
from deliveryhub_web.live import ChangeFeed, close_on_signals
from deliveryhub_web.security import Csrf, FlashCodec, RateLimiter, SignInGuard
from deliveryhub_web.service import AccountService, Passwords, account_service
from deliveryhub_web.settings import WebSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feeds:
    """The latest changes of each API, for the live pages."""

    orders: ChangeFeed
    delivery: ChangeFeed


class WebRuntime:
    """Database, API clients and the security helpers of one console process."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.database = Database(
            settings.async_database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            timeout_seconds=settings.database_timeout_seconds,
        )
        self.stopping = False
        self.metrics = Metrics()
        self.metrics.watch_pool(self.database.engine)
        self.expected_revision: str | None = head_revision(MIGRATIONS)
        self.session_lifetime = timedelta(hours=settings.session_hours)
        self.passwords = Passwords(settings.password_hash_concurrency)
        self._backends: Backends | None = None
        self._feeds: Feeds | None = None
        # Set when the process is told to stop: the live streams end, so that shutdown need not wait.
        self.closing = asyncio.Event()
        self.csrf: Csrf | None = None
        self.flash: FlashCodec | None = None
        self.sign_in_guard = SignInGuard(
            settings.sign_in_attempts,
            settings.sign_in_window_seconds,
            account_attempts=settings.sign_in_account_attempts,
            account_window_seconds=settings.sign_in_account_window_seconds,
        )
        # Each registration costs a password hash: a burst from one address is cut off like sign-ins.
        self.registration_limiter = RateLimiter(
            settings.sign_in_attempts * 4, settings.sign_in_window_seconds
        )

    @property
    def broker(self) -> Broker | None:
        return None

    def accounts(self, session: AsyncSession) -> AccountService:
        """The account use cases over one transaction."""
        return account_service(session, session_lifetime=self.session_lifetime, passwords=self.passwords)

    @property
    def consumers(self) -> Sequence[InboxConsumer]:
        return ()

    @property
    def attached(self) -> bool:
        return False  # the console has no broker

    @property
    def backends(self) -> Backends:
        assert self._backends is not None, "the console has not started"
        return self._backends

    @property
    def feeds(self) -> Feeds:
        assert self._feeds is not None, "the console has not started"
        return self._feeds

    async def start(self) -> None:
        secret = self.settings.session_secret_value()
        self.csrf = Csrf(secret)
        self.flash = FlashCodec(secret)
        issuer = TokenIssuer(
            self.settings.private_key_pem(),
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
        )
        self._backends = Backends(
            orders_url=self.settings.orders_url,
            delivery_url=self.settings.delivery_url,
            timeout_seconds=self.settings.api_timeout_seconds,
            issuer=issuer,
        )
        interval = self.settings.live_interval_seconds
        self._feeds = Feeds(
            orders=ChangeFeed(self._backends.orders, interval=interval),
            delivery=ChangeFeed(self._backends.delivery, interval=interval),
        )
        close_on_signals(self.closing)
        # Seeded in development; gone (with their sessions) once they are turned off.
        seeding = self.settings.seeds_demo_accounts
        try:
            async with self.database.transaction() as session:
                accounts = self.accounts(session)
                if seeding:
                    changed = await accounts.seed_demo_accounts(self.settings.demo_password)
                else:
                    changed = await accounts.remove_demo_accounts()
            if changed:
                logger.info("%s %d demo accounts", "created" if seeding else "removed", changed)
        except Exception as error:  # the console still serves; readiness reports the database
            logger.warning("could not %s the demo accounts now: %s", "create" if seeding else "remove", error)

    async def stop(self) -> None:
        self.stopping = True
        self.closing.set()
        if self._feeds is not None:
            await self._feeds.orders.close()
            await self._feeds.delivery.close()
        if self._backends is not None:
            await self._backends.close()
        await self.database.dispose()
