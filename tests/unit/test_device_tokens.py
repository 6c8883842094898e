"""Device tokens are pasted into command lines (``onedoor printer-agent --token …``)."""

from __future__ import annotations

from queue_server.service.accounts import new_device_token


def test_no_device_token_starts_with_a_dash() -> None:
    # One URL-safe token in 64 would start with "-" and be read as an option: among 2,000
    # drawn, some would (1 - (63/64) ** 2000 is all but certain) were it not ruled out.
    tokens = [new_device_token() for _ in range(2000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert len(set(tokens)) == 2000
    assert all(len(t) == 43 for t in tokens)  # still 32 random bytes
