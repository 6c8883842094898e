"""The client's address behind reverse proxies: only a trusted proxy's X-Forwarded-For
counts, read from the right, so a client cannot choose its own address."""

from __future__ import annotations

import re
from ipaddress import ip_network

import pytest

from queue_server.api.clients import forwarded_client
from queue_server.settings import SettingsError, load_settings

PROXY = [ip_network("10.0.0.5/32"), ip_network("192.168.1.0/24"), ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not from a proxy: header ignored
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "", "10.0.0.5"),
        # The client wrote its own first hop; the proxy appended what it saw: the right one.
        ("10.0.0.5", "1.2.3.4, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "198.51.100.1, 192.168.1.20", "198.51.100.1"),  # two proxies
        ("10.0.0.5", "192.168.1.20, 192.168.1.21", "192.168.1.20"),  # all proxies: first hop
        ("10.0.0.5", "not-an-address, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "198.51.100.1, garbage", "10.0.0.5"),  # malformed nearest hop: the peer
        ("10.0.0.5", "198.51.100.1:4711", "198.51.100.1"),
        ("fd00::1", "[2001:db8::9]:443", "2001:db8::9"),
        ("testclient", "198.51.100.1", "testclient"),
    ],
)
def test_only_trusted_proxies_name_the_client(peer: str, header: str, client: str) -> None:
    assert forwarded_client(peer, header, PROXY) == client


def test_no_trusted_proxies_means_the_header_is_ignored() -> None:
    assert forwarded_client("127.0.0.1", "198.51.100.1", []) == "127.0.0.1"


def test_the_setting_is_checked_and_names_the_bad_entry() -> None:
    settings = load_settings({"ONEDOOR_TRUSTED_PROXIES": "10.0.0.5, 192.168.1.0/24"})
    assert [str(n) for n in settings.trusted_networks] == ["10.0.0.5/32", "192.168.1.0/24"]
    with pytest.raises(SettingsError, match=re.escape("ONEDOOR_TRUSTED_PROXIES='10.0.0.5,proxy'")):
        load_settings({"ONEDOOR_TRUSTED_PROXIES": "10.0.0.5,proxy"})
