"""Reading and writing users and sessions with SQLAlchemy."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_kit.db import dialect_insert
from deliveryhub_web.models import User, WebSession


class SqlAccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def user_by_email(self, email: str) -> User | None:
        return (await self._session.scalars(select(User).where(User.email == email))).one_or_none()

    async def add_user(self, user: User) -> bool:
        """Insert the user; False if the e-mail is taken."""
        inserted = await self._session.execute(
            dialect_insert(self._session, User)
            .values(
                id=user.id,
                email=user.email,
                name=user.name,
                password_hash=user.password_hash,
                role=user.role,
                deliveryman_id=user.deliveryman_id,
                created_at=user.created_at,
            )
            .on_conflict_do_nothing(index_elements=[User.email])
            .returning(User.id)
        )
        return inserted.first() is not None

    async def set_password_hash(self, user: User, password_hash: str) -> None:
        user.password_hash = password_hash

    def add_session(self, web_session: WebSession) -> None:
        self._session.add(web_session)

    async def session_by_token_hash(self, token_hash: str, now: datetime) -> WebSession | None:
        query = select(WebSession).where(WebSession.token_hash == token_hash, WebSession.expires_at > now)
        return (await self._session.scalars(query)).one_or_none()

    async def delete_session(self, token_hash: str) -> None:
        await self._session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))

    async def delete_expired_sessions(self, now: datetime) -> None:
        await self._session.execute(delete(WebSession).where(WebSession.expires_at <= now))

    async def delete_users(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete these users and their sessions; how many users there were."""
        await self._session.execute(delete(WebSession).where(WebSession.user_id.in_(ids)))
        result = await self._session.execute(delete(User).where(User.id.in_(ids)))
        return int(getattr(result, "rowcount", 0) or 0)
