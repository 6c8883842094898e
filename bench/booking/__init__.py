"""Booking-rush benchmark: ``python -m bench.booking`` (full, a few minutes) or ``--smoke`` (CI).

The issue's scenario: on PostgreSQL, 20,000 booking attempts for 4,000 places released at
once, sent as fast as the clients can. A fresh ``onedoor serve`` (pinned to all CPUs but the
last, booking rate limit and scheduler off) gets one hall open 09:00-19:00 every day and one
matter booked in 30-minute slots of 25 places over an 8-day window: 8 x 20 x 25 = 4,000
places. A load generator process (pinned to the last CPU, httpx AsyncClient, 200 concurrent
clients) then sends every attempt once, each to a uniformly random slot, about 10% of them
with a phone number another attempt also uses (the matter allows one active booking per
phone); a refused client does not retry. Afterwards PostgreSQL itself is asked: bookings made
(must equal the places), overbooked slots (0), slots whose counter disagrees with their
bookings (0), phones holding more than one active booking (0). The answers give the 5xx (0),
409s, 429s, p50/p99 latency and the time to clear (first attempt sent to last answer; target
<= 10 s, reported, not enforced).

Prints a table, writes it to bench/results/booking-latest.txt (the server log beside it) and
exits 1 if a correctness check failed, a 5xx was answered or the run could not complete. When
PostgreSQL is unreachable the run is skipped (exit 0) unless ONEDOOR_REQUIRE_SERVICES=1.
"""
