"""Readiness checks for /readyz: each dependency the service needs before it may take traffic.

Each check is bounded in time and reports ``ok`` or a one-line reason an operator can act on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis
from limits.aio.storage import Storage

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


class NotReady(Exception):
    """A dependency does not answer; the message says which and why."""


def sqlite_check(path: Path) -> Check:
    def probe() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=CHECK_TIMEOUT_SECONDS)
        try:
            connection.execute("SELECT 1").fetchone()
        finally:
            connection.close()

    async def check() -> None:
        try:
            await asyncio.to_thread(probe)
        except (OSError, sqlite3.Error) as exc:
            raise NotReady(f"SQLite queue at {path} does not open: {exc}") from exc

    return check


def redis_check(url: str) -> Check:
    async def check() -> None:
        client = aioredis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
        try:
            # redis-py types ping() for both its sync and async clients.
            await cast("Awaitable[bool]", client.ping())
        except (aioredis.RedisError, OSError) as exc:
            raise NotReady(f"Redis queue does not answer: {type(exc).__name__}") from exc
        finally:
            await client.aclose()

    return check


def limiter_check(storage: Storage) -> Check:
    async def check() -> None:
        if not await storage.check():
            raise NotReady("rate-limit storage (RATE_LIMIT_STORAGE_URI) does not answer")

    return check


async def run_checks(checks: dict[str, Check]) -> dict[str, str]:
    """Run every check at once; the result maps each name to "ok" or the reason it failed."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except NotReady as exc:
            return str(exc)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))
