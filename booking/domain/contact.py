"""Who a booking is for: a name, a mainland China mobile number, optionally an ID's tail.

Visitors type these on phones and kiosks, often with an input method that gives full-width
digits, so input is NFKC-normalised before it is checked.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidContact

MOBILE = re.compile(r"^1[3-9]\d{9}$")
SEPARATORS = re.compile(r"[\s\-().]")
NAME_MAX = 50


def normalise_phone(text: str) -> str:
    """The 11-digit mobile number in ``text`` (``+86 138-0013-8000`` → ``13800138000``).

    Spaces, dashes, dots and brackets are dropped, and a leading ``+86``, ``0086`` or
    ``86`` country code. Anything else raises ``InvalidContact`` showing the form to use.
    """
    digits = SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    if not MOBILE.match(digits):
        raise InvalidContact(
            f"{text!r} is not a mainland China mobile number; write its 11 digits, "
            "e.g. 138 0013 8000 (a leading +86 is fine)"
        )
    return digits


def normalise_id_tail(text: str) -> str:
    """The last 4 characters of an ID number, upper-cased (``...12345x`` → ``345X``).

    Takes a whole ID number or just its end, so only the tail is ever kept. Raises
    ``InvalidContact`` for fewer than 4 letters or digits, or any other character.
    """
    cleaned = SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()
    if len(cleaned) < 4 or not (cleaned.isascii() and cleaned.isalnum()):
        raise InvalidContact(
            f"{text!r} is not an ID number's end; give its last 4 characters, e.g. 123X"
        )
    return cleaned[-4:]


def normalise_name(text: str) -> str:
    """The visitor's name with surrounding and repeated spaces removed; 1 to 50 characters."""
    name = " ".join(unicodedata.normalize("NFKC", text).split())
    if not name:
        raise InvalidContact("the name is empty; give the name of the person who will come")
    if len(name) > NAME_MAX:
        raise InvalidContact(f"the name has {len(name)} characters; shorten it to {NAME_MAX}")
    return name


def mask_phone(phone: str | None) -> str | None:
    """The number as a shared screen may show it: ``138****8000``."""
    return f"{phone[:3]}****{phone[-4:]}" if phone else None
