"""Staff sessions, kept on the server.

Signing in makes a session: a 256-bit random token that the signed session cookie carries,
and a row (``staff_sessions``) holding only its SHA-256, who it belongs to, when it ends,
and the address and browser it was opened from. A request's cookie is only as good as its
row: signing out deletes it (a copy of the cookie is then worth nothing), "sign out
everywhere" deletes all of the user's, and so do a password change and a deactivation.
The rows' keys (``session_key``) are forgotten in every process's principal cache when they
go (realtime.invalidation), and open websockets of the session are closed
(realtime.access).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from queue_server.db.tables import StaffSessionRow, UserRow

from .accounts import Principal, hash_password, principal_for_user, token_digest, verify_password
from .errors import Forbidden, Invalid, NotFound
from .unit_of_work import UnitOfWork

SESSION_HOURS = 12
"""A session ends this long after sign-in (the cookie's lifetime too)."""


def _wall_now() -> datetime:
    """A session's lifetime is real time, like its cookie's in the browser: the app's clock
    may be a simulated or fixed one (tests, replays), which must not end sessions."""
    return datetime.now(UTC)


def session_key(digest: str) -> str:
    """The principal cache's key of a session: its token's SHA-256, never the token."""
    return f"session:{digest}"


@dataclass(frozen=True)
class SessionOut:
    id: int
    created_at: datetime
    expires_at: datetime
    address: str | None
    user_agent: str | None
    current: bool
    """The session this request came with."""


async def open_session(
    uow: UnitOfWork, user_id: int, address: str | None, user_agent: str | None
) -> str:
    """A new session for ``user_id``; its token (for the cookie only). The user's expired
    sessions are cleared on the way."""
    now = _wall_now()
    expired = await uow.session.scalars(
        select(StaffSessionRow).where(
            StaffSessionRow.user_id == user_id, StaffSessionRow.expires_at <= now
        )
    )
    for row in expired:
        await uow.session.delete(row)
    token = secrets.token_urlsafe(32)
    uow.session.add(
        StaffSessionRow(
            user_id=user_id,
            token_hash=token_digest(token),
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
            address=(address or None) and address[:64],
            user_agent=(user_agent or None) and user_agent[:300],
        )
    )
    await uow.commit()
    return token


async def session_owner(uow: UnitOfWork, digest: str) -> Principal | None:
    """Whom the session with token SHA-256 ``digest`` belongs to, if it stands (not ended,
    not expired, its user active)."""
    found = (
        await uow.session.execute(
            select(UserRow)
            .join(StaffSessionRow, StaffSessionRow.user_id == UserRow.id)
            .where(
                StaffSessionRow.token_hash == digest,
                StaffSessionRow.expires_at > _wall_now(),
            )
        )
    ).scalar_one_or_none()
    return principal_for_user(found) if found is not None and found.active else None


async def end_session(uow: UnitOfWork, digest: str) -> None:
    """Sign this session out (nothing if it has ended already)."""
    row = await uow.session.scalar(
        select(StaffSessionRow).where(StaffSessionRow.token_hash == digest)
    )
    if row is not None:
        await uow.session.delete(row)
        await uow.commit()


async def end_sessions(uow: UnitOfWork, user_id: int, keep: str | None = None) -> int:
    """End every session of ``user_id`` but the one with digest ``keep``, in the caller's
    transaction (it commits); how many ended. Rows are deleted one by one so that each
    session's key, and only it, is forgotten in every process."""
    rows = await uow.session.scalars(
        select(StaffSessionRow).where(StaffSessionRow.user_id == user_id)
    )
    ended = 0
    for row in rows:
        if row.token_hash != keep:
            await uow.session.delete(row)
            ended += 1
    return ended


async def sign_out_everywhere(uow: UnitOfWork, user_id: int) -> int:
    ended = await end_sessions(uow, user_id)
    await uow.commit()
    return ended


async def list_sessions(uow: UnitOfWork, user_id: int, digest: str) -> list[SessionOut]:
    """The user's sessions still standing, newest first."""
    rows = await uow.session.scalars(
        select(StaffSessionRow)
        .where(
            StaffSessionRow.user_id == user_id,
            StaffSessionRow.expires_at > _wall_now(),
        )
        .order_by(StaffSessionRow.created_at.desc(), StaffSessionRow.id.desc())
    )
    return [
        SessionOut(
            r.id, r.created_at, r.expires_at, r.address, r.user_agent, r.token_hash == digest
        )
        for r in rows
    ]


async def change_own_password(
    uow: UnitOfWork, user_id: int, current: str, new: str, digest: str
) -> int:
    """Set a new password for the signed-in user, who proves the current one; every other
    session of theirs ends (this one goes on). How many ended."""
    row = await uow.session.get(UserRow, user_id)
    if row is None:
        raise NotFound(f"no staff member with id {user_id}")
    try:
        await asyncio.to_thread(verify_password, row.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise Forbidden("the current password is wrong; nothing was changed") from None
    if new == current:
        raise Invalid("new_password", "choose a password other than the current one")
    row.password_hash = await hash_password(new)
    ended = await end_sessions(uow, user_id, keep=digest)
    await uow.commit()
    return ended
