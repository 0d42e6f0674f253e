"""Who the client is behind proxies, and the moving-window throttle on the memory storage."""

from __future__ import annotations

import time

import pytest
from limits.aio.storage import MemoryStorage

from bot.errors import RateLimitExceeded
from bot.throttle import POLL_RATE_FACTOR, Throttle, TrustedProxies, close_storage, create_storage, key_identity

# TrustedProxies


def test_no_trusted_proxy_means_the_peer() -> None:
    proxies = TrustedProxies([])
    assert proxies.client("203.0.113.7", "198.51.100.1") == "203.0.113.7"


def test_untrusted_peer_cannot_choose_its_address() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    assert not proxies.trusts("203.0.113.7")
    assert proxies.client("203.0.113.7", "198.51.100.1") == "203.0.113.7"
    assert proxies.client("203.0.113.7", "127.0.0.1, 198.51.100.1") == "203.0.113.7"


def test_trusted_peer_without_the_header_is_the_client() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    assert proxies.client("127.0.0.1", None) == "127.0.0.1"
    assert proxies.client("127.0.0.1", "") == "127.0.0.1"


def test_trusted_peer_gives_the_forwarded_client() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    assert proxies.client("127.0.0.1", "198.51.100.1") == "198.51.100.1"
    assert proxies.client("127.0.0.1", " 198.51.100.1 ") == "198.51.100.1"


def test_rightmost_untrusted_hop_wins() -> None:
    # The client may send any X-Forwarded-For; each proxy appends the address it saw. Entries left of the
    # first untrusted hop (counted from the right) may be forged, so they are ignored.
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.1") == "198.51.100.1"
    assert proxies.client("10.0.0.2", "6.6.6.6,198.51.100.1") == "198.51.100.1"
    assert proxies.client("10.0.0.2", "198.51.100.1, , 10.9.9.9,") == "198.51.100.1"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.0.0.2", "10.1.1.1, 10.0.0.1") == "10.1.1.1"


@pytest.mark.parametrize(
    ("allow", "trusted", "untrusted"),
    [
        (["10.0.0.0/8"], ["10.0.0.1", "10.255.255.255"], ["11.0.0.1", "192.168.0.1"]),
        (["192.168.1.0/24", "127.0.0.1"], ["192.168.1.77", "127.0.0.1"], ["192.168.2.1", "127.0.0.2"]),
        (["10.1.2.3/8"], ["10.200.0.1"], ["9.255.255.255"]),  # host bits allowed (strict=False)
        (["2001:db8::/32"], ["2001:db8::1", "2001:db8:ffff::9"], ["2001:db9::1", "10.0.0.1"]),
        (["::1"], ["::1"], ["127.0.0.1", "::2"]),
    ],
)
def test_networks(allow: list[str], trusted: list[str], untrusted: list[str]) -> None:
    proxies = TrustedProxies(allow)
    assert all(proxies.trusts(host) for host in trusted)
    assert not any(proxies.trusts(host) for host in untrusted)


def test_ipv6_peer_and_hops() -> None:
    proxies = TrustedProxies(["fd00::/8"])
    assert proxies.client("fd00::1", "2001:db8::42, fd00::7") == "2001:db8::42"
    assert proxies.client("2001:db8::99", "2001:db8::42") == "2001:db8::99"


def test_star_trusts_any_peer() -> None:
    proxies = TrustedProxies(["*"])
    assert proxies.trusts("testclient")
    assert proxies.trusts("203.0.113.7")
    assert proxies.client("testclient", "198.51.100.1") == "198.51.100.1"
    # Every hop is trusted too: the leftmost, what the first proxy was told (as uvicorn does with `*`).
    assert proxies.client("testclient", "198.51.100.1, 203.0.113.9") == "198.51.100.1"


@pytest.mark.parametrize("peer", ["testclient", "", "-", "not an ip", "10.0.0.1:8080", "[::1]", "999.1.1.1"])
def test_a_peer_that_is_not_an_address_is_not_trusted(peer: str) -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "::1"])
    assert not proxies.trusts(peer)
    assert proxies.client(peer, "198.51.100.1") == peer


def test_garbage_in_the_header() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    # Only separators: the peer itself.
    assert proxies.client("10.0.0.2", " , ,") == "10.0.0.2"
    # A hop that is not an address is not a trusted proxy: it is where the trusted chain ends.
    assert proxies.client("10.0.0.2", "198.51.100.1, unknown, 10.0.0.1") == "unknown"


def test_invalid_network_is_refused() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        TrustedProxies(["10.0.0.0/33"])


# key_identity

KEYS = ["ide-plugin-7Kq2xW9pLm4Rt8Vz", "s3cr3t-Key_with-Mixed.Case", "a" * 64]


@pytest.mark.parametrize("key", KEYS)
def test_key_identity_never_contains_the_key(key: str) -> None:
    identity = key_identity(key)
    assert identity.startswith("key:")
    assert key not in identity
    assert key[:8] not in identity
    assert identity == key_identity(key)


def test_key_identities_differ_per_key() -> None:
    identities = {key_identity(key) for key in KEYS}
    assert len(identities) == len(KEYS)
    assert key_identity(KEYS[0]) != key_identity(KEYS[0] + "x")


# Throttle on the memory storage


@pytest.fixture
def storage() -> MemoryStorage:
    created = create_storage("memory://")
    assert isinstance(created, MemoryStorage)
    return created


async def test_review_limit(storage: MemoryStorage) -> None:
    throttle = Throttle.create(storage, 3)
    for _ in range(3):
        await throttle.hit("review", "ip:198.51.100.1")
    started = time.time()
    with pytest.raises(RateLimitExceeded) as caught:
        await throttle.hit("review", "ip:198.51.100.1")
    error = caught.value
    assert error.status_code == 429
    assert error.error_type == "rate_limit_exceeded"
    assert "3 review requests per minute" in error.message
    assert error.retry_after is not None
    # The window opened a moment ago: the client may come back in about a minute, never sooner than 1 s.
    assert 55 <= error.retry_after <= 60
    assert f"retry in {error.retry_after} s" in error.message
    assert time.time() - started < 1


async def test_each_identity_has_its_own_window(storage: MemoryStorage) -> None:
    throttle = Throttle.create(storage, 1)
    await throttle.hit("review", "ip:198.51.100.1")
    await throttle.hit("review", "ip:198.51.100.2")
    await throttle.hit("review", key_identity(KEYS[0]))
    with pytest.raises(RateLimitExceeded):
        await throttle.hit("review", "ip:198.51.100.1")
    with pytest.raises(RateLimitExceeded):
        await throttle.hit("review", key_identity(KEYS[0]))


async def test_polls_get_a_bigger_separate_budget(storage: MemoryStorage) -> None:
    throttle = Throttle.create(storage, 2)
    assert throttle.poll.amount == 2 * POLL_RATE_FACTOR
    await throttle.hit("review", "ip:198.51.100.1")
    await throttle.hit("review", "ip:198.51.100.1")
    with pytest.raises(RateLimitExceeded):
        await throttle.hit("review", "ip:198.51.100.1")
    # A client out of review budget can still poll its jobs.
    for _ in range(2 * POLL_RATE_FACTOR):
        await throttle.hit("poll", "ip:198.51.100.1")
    with pytest.raises(RateLimitExceeded, match=f"{2 * POLL_RATE_FACTOR} poll requests per minute"):
        await throttle.hit("poll", "ip:198.51.100.1")


async def test_unknown_kind_counts_as_review(storage: MemoryStorage) -> None:
    throttle = Throttle.create(storage, 1)
    await throttle.hit("something-else", "ip:198.51.100.1")
    with pytest.raises(RateLimitExceeded):
        await throttle.hit("review", "ip:198.51.100.1")


async def test_the_key_never_reaches_the_storage(storage: MemoryStorage) -> None:
    throttle = Throttle.create(storage, 5)
    await throttle.hit("review", key_identity(KEYS[0]))
    stored = " ".join(str(name) for name in storage.events)
    assert key_identity(KEYS[0]) in stored
    assert KEYS[0] not in stored


def test_create_storage_schemes() -> None:
    assert isinstance(create_storage("async+memory://"), MemoryStorage)
    redis_storage = create_storage("redis://127.0.0.1:1/0")  # nothing is contacted until the first hit
    assert not isinstance(redis_storage, MemoryStorage)
    assert type(redis_storage).__module__.startswith("limits.aio.storage")


async def test_closing_a_memory_storage_is_a_no_op(storage: MemoryStorage) -> None:
    await close_storage(storage)
    await Throttle.create(storage, 1).hit("review", "ip:198.51.100.1")
