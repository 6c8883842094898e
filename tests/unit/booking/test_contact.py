"""Who a booking is for, and the code they hold: what visitors type, and what they are told."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking.domain.codes import ALPHABET, CODE_LENGTH, new_code
from booking.domain.contact import normalise_id_tail, normalise_name, normalise_phone
from booking.domain.errors import InvalidContact


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+86-13800138000",
        "(+86) 138.0013.8000",
        "008613800138000",
        "8613800138000",
        "１３８００１３８０００",  # full-width digits from a Chinese input method
        " 13800138000 ",
    ],
)
def test_a_mobile_number_is_kept_as_its_11_digits(typed: str) -> None:
    assert normalise_phone(typed) == "13800138000"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "1380013800",
        "138001380001",
        "23800138000",
        "12800138000",
        "010-12345678",
        "+1 415 555 0100",
        "1380013800O",
        "+86",
    ],
)
def test_anything_else_is_refused_showing_the_form_to_use(typed: str) -> None:
    with pytest.raises(InvalidContact) as refused:
        normalise_phone(typed)

    assert str(refused.value) == (
        f"{typed!r} is not a mainland China mobile number; write its 11 digits, "
        "e.g. 138 0013 8000 (a leading +86 is fine)"
    )


@pytest.mark.parametrize(
    ("typed", "tail"),
    [
        ("123x", "123X"),
        ("11010519491231002X", "002X"),
        ("1101 0519 4912 3100 2x", "002X"),
        ("E1234567", "4567"),
    ],
)
def test_only_the_last_four_characters_of_an_id_are_kept(typed: str, tail: str) -> None:
    assert normalise_id_tail(typed) == tail


@pytest.mark.parametrize("typed", ["", "12X", "12#4", "１２３"])
def test_an_id_tail_needs_four_letters_or_digits(typed: str) -> None:
    with pytest.raises(InvalidContact, match=r"give its last 4 characters, e\.g\. 123X"):
        normalise_id_tail(typed)


def test_a_name_is_trimmed() -> None:
    assert normalise_name("  王   小明 ") == "王 小明"


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(InvalidContact, match="the name is empty; give the name of the person"):
        normalise_name("   ")


def test_a_very_long_name_is_refused_saying_the_limit() -> None:
    with pytest.raises(InvalidContact, match="the name has 51 characters; shorten it to 50"):
        normalise_name("王" * 51)


# --- booking codes ------------------------------------------------------------------------


def test_the_alphabet_leaves_out_look_alikes() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("01OI") & set(ALPHABET)


def test_a_code_comes_from_the_random_source_given() -> None:
    assert new_code(lambda n: 0) == "22222222"
    assert new_code(lambda n: n - 1) == "ZZZZZZZZ"
    assert new_code(random.Random(7).randrange) == new_code(random.Random(7).randrange)


@given(seed=st.integers())
def test_a_code_is_eight_unambiguous_symbols(seed: int) -> None:
    code = new_code(random.Random(seed).randrange)

    assert len(code) == CODE_LENGTH == 8
    assert set(code) <= set(ALPHABET)
