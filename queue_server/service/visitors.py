"""Who a visitor is, for the one-visit rate: a keyed hash, never the phone or ID in clear.

A visit is linked to its visitor when that is known: from the booking it was checked in
from (its phone, else its ID tail and name), or from what the clerk asked at the counter.
The hash is HMAC-SHA256 under the hall's own random key (``halls.visitor_salt``): equal
visitors give equal hashes within a hall, hashes of two halls cannot be matched, and the
hash alone does not give the number back without that key.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass

from sqlalchemy import update

from booking.domain import contact
from booking.domain.errors import InvalidContact
from queue_server.db.tables import HallRow, VisitRow

from .errors import Invalid
from .unit_of_work import UnitOfWork


@dataclass(frozen=True)
class VisitorId:
    """What identifies a visitor: a mainland mobile number, or an ID tail with a name."""

    phone: str | None = None
    id_tail: str | None = None
    name: str | None = None


def identity_key(visitor: VisitorId) -> str | None:
    """The normalised identity a hash is made of (phone first), or None when too little is
    given; ``Invalid`` when a phone or ID tail is given but malformed."""
    try:
        if visitor.phone:
            return f"phone:{contact.normalise_phone(visitor.phone)}"
        if visitor.id_tail:
            tail = contact.normalise_id_tail(visitor.id_tail)
            # Spaces are typing noise in a name (李 四 is 李四), case too (Li Si, LI SI).
            name = unicodedata.normalize("NFKC", "".join((visitor.name or "").split()))
            if not name:
                raise Invalid("visitor_name", "give the visitor's name with the ID tail")
            return f"id:{tail}:{name.casefold()}"
    except InvalidContact as exc:
        field = "visitor_phone" if visitor.phone else "visitor_id_tail"
        raise Invalid(field, str(exc)) from None
    return None


def visitor_hash(salt: str, key: str) -> str:
    return hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()


async def remember_visitor(
    uow: UnitOfWork, hall: HallRow | int, visit_id: int, visitor: VisitorId
) -> bool:
    """Link the visit to its visitor (when ``visitor`` says enough); True when it did."""
    key = identity_key(visitor)
    if key is None:
        return False
    row = hall if isinstance(hall, HallRow) else await uow.session.get(HallRow, hall)
    assert row is not None, "the visit's hall exists"
    await uow.session.execute(
        update(VisitRow)
        .where(VisitRow.id == visit_id)
        .values(visitor_hash=visitor_hash(row.visitor_salt, key))
    )
    return True
