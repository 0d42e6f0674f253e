"""Readiness checks for /readyz: each dependency the service needs before it may take traffic.

Each check is bounded in time and reports ``ok`` or a one-line reason an operator can act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from limits.aio.storage import Storage

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


class NotReady(Exception):
    """A dependency does not answer; the message says which and why."""


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
