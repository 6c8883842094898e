"""Booking codes: short, random, and easy to read aloud or type on a kiosk."""

from __future__ import annotations

from collections.abc import Callable

# No 0/O or 1/I, which people mix up when reading a code off a phone; 32 symbols, so an
# 8-symbol code carries 40 bits.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8


def new_code(randbelow: Callable[[int], int]) -> str:
    """A fresh booking code of ``CODE_LENGTH`` symbols from ``ALPHABET``.

    ``randbelow(n)`` returns a random int in ``[0, n)``: ``secrets.randbelow`` in the
    service, a seeded ``random.Random().randrange`` in tests. Uniqueness among live
    bookings is the store's to enforce (draw again on a clash).
    """
    return "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str | None:
    """The booking code in what a visitor typed or a scanner read, or None if there is none.

    A QR scanner types the whole link (``https://…/b/ABCD2345``); people type lower case,
    spaces and dashes. Returns the upper-cased code when it has ``CODE_LENGTH`` symbols of
    ``ALPHABET``; 0, O, 1 and I are not in it, so a code with them is refused, not guessed.
    """
    tail = text.strip().rstrip("/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in tail.upper() if ch not in " -")
    if len(cleaned) != CODE_LENGTH or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned
