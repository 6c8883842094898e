"""Staff accounts (argon2-hashed passwords) and device tokens (stored as SHA-256), and the
process's cache of who is calling (``PrincipalCache``)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from queue_server.db.tables import DeviceRow, HallRow, UserRow

from .errors import Conflict, Forbidden, Invalid, NotFound
from .unit_of_work import UnitOfWork

MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing the same.
_DUMMY_HASH = _hasher.hash("not a real password")


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    CLERK = "clerk"


class DeviceKind(StrEnum):
    KIOSK = "kiosk"
    BOARD = "board"
    PRINTER = "printer"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff member (``role``) or a device (``role`` is its kind)."""

    role: str
    hall_id: int | None
    user_id: int | None = None
    device_id: int | None = None
    name: str = ""

    @property
    def is_device(self) -> bool:
        return self.device_id is not None

    def may_access_hall(self, hall_id: int) -> bool:
        return self.role == Role.ADMIN or self.hall_id == hall_id


async def hash_password(password: str) -> str:
    """An argon2 hash of ``password`` (computed in a worker thread)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid("password", f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    return await asyncio.to_thread(_hasher.hash, password)


def verify_password(password_hash: str, password: str) -> None:
    """Raise argon2's VerificationError unless ``password`` matches (blocking: run it in a
    worker thread)."""
    _hasher.verify(password_hash, password)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def new_device_token() -> str:
    """A device's secret: 32 random bytes, URL-safe, never starting with "-" (a command line
    such as ``onedoor printer-agent --token -Xy…`` would read it as an option)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate_user(uow: UnitOfWork, username: str, password: str) -> Principal | None:
    """The principal for a correct username and password, else None (same timing either way)."""
    row = await uow.session.scalar(select(UserRow).where(UserRow.username == username))
    # argon2 takes a few hundred milliseconds of CPU on purpose: off the event loop.
    try:
        await asyncio.to_thread(_hasher.verify, row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = await asyncio.to_thread(_hasher.hash, password)
        await uow.commit()
    return principal_for_user(row)


def principal_for_user(row: UserRow) -> Principal:
    return Principal(role=row.role, hall_id=row.hall_id, user_id=row.id, name=row.display_name)


async def user_principal(uow: UnitOfWork, user_id: int) -> Principal | None:
    row = await uow.session.get(UserRow, user_id)
    return principal_for_user(row) if row is not None and row.active else None


async def device_principal(uow: UnitOfWork, token: str) -> Principal | None:
    return await device_principal_by_digest(uow, token_digest(token))


async def device_principal_by_digest(uow: UnitOfWork, digest: str) -> Principal | None:
    """The device whose token has SHA-256 ``digest``, unless it is unknown or revoked."""
    row = await uow.session.scalar(select(DeviceRow).where(DeviceRow.token_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(role=row.kind, hall_id=row.hall_id, device_id=row.id, name=row.name)


USER_COLUMNS = frozenset({"active", "role", "hall_id", "display_name", "password_hash"})
"""A change to any of these columns of a user makes a cached principal of theirs stale (the
password: so that nothing read before a reset outlives it)."""
DEVICE_COLUMNS = frozenset({"revoked_at", "kind", "hall_id", "name", "token_hash"})
"""Likewise for a device. Heartbeats (``last_seen_at``) and print agent status are not here:
they change every few seconds and say nothing about who the device is."""


def user_key(user_id: int) -> str:
    """The cache key of a staff member's principal."""
    return f"user:{user_id}"


def device_key(digest: str) -> str:
    """The cache key of a device's principal: its token's SHA-256, never the token."""
    return f"device:{digest}"


EVERYONE = "*"
"""The key that stands for every key: forget everything."""


class PrincipalCache:
    """Principals by key, for ``ttl`` seconds at most, ``size`` of them at most.

    Entries are dropped at once when the rows they were read from change (``forget``, called
    by realtime.invalidation in every process); the time limit is only a safety net for a
    change made behind the server's back. Only principals are kept, never a refusal: a new
    device works at once, and an unknown token costs what it did before.

    A principal read from the database while a change was being committed could be the old
    one: ``put`` stores it only if nothing was forgotten since ``generation`` was taken,
    before the read.
    """

    def __init__(self, size: int = 10_000, ttl: float = 30.0) -> None:
        self.size = size
        self.ttl = ttl
        self.generation = 0
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key: str) -> Principal | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            del self._entries[key]
            return None
        return found[1]

    def put(self, key: str, principal: Principal, generation: int) -> None:
        if generation != self.generation:
            return  # something changed while it was read: it may be the old one
        self._entries.pop(key, None)
        while len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # the oldest stored
        self._entries[key] = (time.monotonic() + self.ttl, principal)

    def forget(self, keys: Iterable[str]) -> None:
        self.generation += 1
        for key in keys:
            if key == EVERYONE:
                self._entries.clear()
                return
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class NewUser:
    id: int
    username: str
    role: str
    hall_id: int | None
    display_name: str


async def create_user(
    uow: UnitOfWork,
    username: str,
    password: str,
    role: Role,
    hall_id: int | None,
    display_name: str = "",
    by_role: str = Role.ADMIN,
) -> NewUser:
    """Create a staff account; admins have no hall, managers and clerks exactly one.

    ``by_role`` is who asks: only an admin may add a manager (or an admin).
    """
    if role != Role.CLERK and by_role != Role.ADMIN:
        raise Forbidden(f"only an admin may add a {role}")
    if role == Role.ADMIN and hall_id is not None:
        raise Invalid("hall_id", "an admin serves all halls; leave it out")
    if role != Role.ADMIN:
        if hall_id is None:
            raise Invalid("hall_id", f"a {role} belongs to one hall; give its id")
        if await uow.session.get(HallRow, hall_id) is None:
            raise NotFound(f"no hall with id {hall_id}")
    row = UserRow(
        username=username,
        display_name=display_name or username,
        password_hash=await hash_password(password),
        role=str(role),
        hall_id=hall_id,
        active=True,
        created_at=uow.clock.now(),
    )
    uow.session.add(row)
    try:
        await uow.session.flush()
    except IntegrityError:
        raise Conflict(f"the username {username!r} is taken; choose another") from None
    await uow.commit()
    return NewUser(row.id, row.username, row.role, row.hall_id, row.display_name)


@dataclass(frozen=True)
class NewDevice:
    id: int
    hall_id: int
    kind: str
    name: str
    token: str
    """Shown once: only its hash is stored."""


async def create_device(
    uow: UnitOfWork, hall_id: int, kind: DeviceKind, name: str, kiosk_id: int | None = None
) -> NewDevice:
    """Register a device; a printer names the kiosk whose tickets it prints."""
    if await uow.session.get(HallRow, hall_id) is None:
        raise NotFound(f"no hall with id {hall_id}")
    if kiosk_id is not None:
        if kind != DeviceKind.PRINTER:
            raise Invalid("kiosk_id", "only a printer serves a kiosk")
        kiosk = await uow.session.get(DeviceRow, kiosk_id)
        if kiosk is None or kiosk.hall_id != hall_id or kiosk.kind != DeviceKind.KIOSK:
            raise Invalid("kiosk_id", f"hall {hall_id} has no kiosk with id {kiosk_id}")
    token = new_device_token()
    row = DeviceRow(
        hall_id=hall_id,
        kind=str(kind),
        name=name,
        token_hash=token_digest(token),
        token_hint=token[:6],
        created_at=uow.clock.now(),
        kiosk_id=kiosk_id,
        connected=False,
    )
    uow.session.add(row)
    await uow.commit()
    return NewDevice(row.id, hall_id, row.kind, name, token)
