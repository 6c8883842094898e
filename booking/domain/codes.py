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
