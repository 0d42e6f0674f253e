"""Throttles built on the `limits` library: one storage (memory or Redis), moving windows.

The storage is shared by every replica when RATE_LIMIT_STORAGE_URI points at Redis, so N replicas
together allow what one would. Clients are told when to come back (``retry_after``).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from bot.errors import RateLimitExceeded

# Status and result polls are cheap and frequent: they get this many times the review budget.
POLL_RATE_FACTOR = 10


def create_storage(uri: str) -> Storage:
    """An async `limits` storage for memory:// or redis://; redis-py is the client (no extra driver)."""
    scheme, rest = uri.split("://", 1)
    scheme = scheme.removeprefix("async+")
    if scheme == "memory":
        return storage_from_string("async+memory://")  # type: ignore[return-value]
    return storage_from_string(  # type: ignore[return-value]
        f"async+{scheme}://{rest}", implementation="redispy", socket_timeout=2, socket_connect_timeout=2
    )


async def close_storage(storage: Storage) -> None:
    """Close the storage's connection pool (Redis); a memory storage holds none."""
    # limits exposes no public close; its redis-py bridge keeps the client as `bridge.storage`.
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    if client is not None:
        await client.aclose()


class TrustedProxies:
    """FORWARDED_ALLOW_IPS: addresses and networks whose X-Forwarded-For is believed; `*` trusts any peer."""

    def __init__(self, allow: list[str]) -> None:
        self.any = "*" in allow
        self.networks = [ip_network(item, strict=False) for item in allow if item != "*"]

    def trusts(self, host: str) -> bool:
        if self.any:
            return True
        try:
            address: IPv4Address | IPv6Address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the peer, or when the peer is a trusted proxy, the nearest untrusted hop
        of X-Forwarded-For (rightmost first: entries left of a trusted proxy may be forged by the client)."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer


def key_identity(api_key: str) -> str:
    """The limiter identity of an API key: a digest, so the key itself never reaches the storage."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Throttle:
    """Moving-window limits for the REST API: `review` routes at RATE_LIMIT_PER_MINUTE, `poll` routes at
    POLL_RATE_FACTOR times that, both per client (IP address, or API key when keys are configured)."""

    limiter: MovingWindowRateLimiter
    review: RateLimitItem
    poll: RateLimitItem

    @classmethod
    def create(cls, storage: Storage, per_minute: int) -> Throttle:
        return cls(
            MovingWindowRateLimiter(storage),
            RateLimitItemPerMinute(per_minute, namespace="review"),
            RateLimitItemPerMinute(per_minute * POLL_RATE_FACTOR, namespace="poll"),
        )

    async def hit(self, kind: str, identity: str) -> None:
        """Count one request; raise RateLimitExceeded (with retry_after) when the window is full."""
        item = self.poll if kind == "poll" else self.review
        if await self.limiter.hit(item, identity):
            return
        stats = await self.limiter.get_window_stats(item, identity)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitExceeded(
            f"Rate limit of {item.amount} {kind} requests per minute exceeded; retry in {retry_after} s",
            retry_after=retry_after,
        )


@dataclass(frozen=True, slots=True)
class InstallationThrottle:
    """INSTALLATION_RATE_LIMIT: reviews per GitHub App installation (moving window, in the shared storage)."""

    limiter: MovingWindowRateLimiter
    item: RateLimitItem

    @classmethod
    def create(cls, storage: Storage, limit: str) -> InstallationThrottle:
        return cls(MovingWindowRateLimiter(storage), parse(limit))

    async def take(self, installation_id: int) -> datetime | None:
        """Count one review; None when it may run, else when the next one may (UTC)."""
        identity = f"installation:{installation_id}"
        if await self.limiter.hit(self.item, identity):
            return None
        stats = await self.limiter.get_window_stats(self.item, identity)
        return datetime.fromtimestamp(max(stats.reset_time, time.time() + 1), tz=UTC)
