"""Throttles built on the `limits` library: one storage (memory or Redis), moving windows.

The storage is shared by every replica when RATE_LIMIT_STORAGE_URI points at Redis.
"""

from __future__ import annotations

from limits.aio.storage import Storage
from limits.storage import storage_from_string


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
