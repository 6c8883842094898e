"""Planned booking places: the hall's spare counter time after its walk-ins, stretch by
stretch, with a busy stretch's backlog carried forward."""

from __future__ import annotations

import pytest

from booking.domain.capacity import SlotDemand, Stretch, spare_shares
from booking.domain.rules import BookingRules, rules_from_json, rules_to_json, slot_throughput


def test_a_quiet_stretch_offers_what_walk_ins_leave_up_to_the_target_load() -> None:
    # 4 counters for 15 minutes: 60 counter-minutes; walk-ins need 24 of them.
    assert spare_shares([Stretch(60, 24)], target_load=0.9) == [pytest.approx(0.5)]


def test_a_peak_offers_nothing_and_its_backlog_eats_into_the_next_stretch() -> None:
    shares = spare_shares([Stretch(60, 80), Stretch(60, 20), Stretch(60, 20)], target_load=0.9)

    # The peak leaves 20 minutes of queue: the next stretch offers 54 - 20 - 20 = 14 of 60.
    assert shares == [0.0, pytest.approx(14 / 60), pytest.approx(34 / 60)]


def test_a_stretch_with_no_counters_offers_nothing_and_keeps_its_walk_ins_queued() -> None:
    shares = spare_shares([Stretch(0, 10), Stretch(60, 0)], target_load=1.0)

    assert shares == [0.0, pytest.approx(50 / 60)]


def test_a_slot_offers_its_spare_share_of_what_the_matters_counters_can_serve() -> None:
    assert SlotDemand(throughput=7.5, spare=0.5).places == 3
    assert SlotDemand(throughput=6.0, spare=0.5).places == 3, "no float noise lost"
    assert SlotDemand(throughput=5.0, spare=0.0).places == 0


def test_what_the_counters_can_serve_in_a_slot() -> None:
    # A counter serving only this matter and one sharing it with another, 30 min, 10 min each.
    assert slot_throughput(30, 10, [1.0, 0.5]) == 4.5
    assert slot_throughput(30, 0, [1.0]) == 0.0


def test_capacity_from_the_counters_real_throughput_unless_told_otherwise() -> None:
    assert BookingRules().raw_capacity(counters=3, throughput=4.5) == 4
    assert BookingRules(per_counter=2).raw_capacity(counters=3, throughput=4.5) == 6
    assert BookingRules(capacity=5).raw_capacity(counters=3, throughput=4.5) == 5


def test_the_target_load_is_stored_and_checked() -> None:
    rules = BookingRules(target_load=0.85)

    assert rules_from_json(rules_to_json(rules)) == rules
    with pytest.raises(ValueError, match=r"target load 1\.5"):
        BookingRules(target_load=1.5)
    with pytest.raises(ValueError, match="target_load must be a share"):
        rules_from_json({"target_load": "most"})
