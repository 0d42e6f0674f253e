"""Which webhook deliveries were already taken: `X-GitHub-Delivery` ids remembered for a day in the queue's
backend (a table in the SQLite file, or keys in Redis), so every web replica knows a redelivery."""

from __future__ import annotations

import sqlite3

from saq.utils import now_seconds

from bot.jobs.queue import Jobs
from bot.jobs.redis_backend import RedisBackend
from bot.jobs.sqlite_backend import SqliteQueue

DELIVERY_TTL_SECONDS = 24 * 3600
REDIS_PREFIX = "companion:delivery:"
SCHEMA = "CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, expire_at REAL NOT NULL)"
PURGE_EVERY = 500  # SQLite: expired rows are deleted on every 500th new delivery


class Deliveries:
    def __init__(self, jobs: Jobs, ttl: int = DELIVERY_TTL_SECONDS) -> None:
        self.backend = jobs.backend
        self.ttl = ttl
        self._ready = False
        self._taken = 0

    async def first_time(self, delivery_id: str) -> bool:
        """Remember the id; True if it was not remembered yet (atomic: of two replicas, one gets True)."""
        if isinstance(self.backend, RedisBackend):
            return bool(await self.backend.redis.set(REDIS_PREFIX + delivery_id, b"1", nx=True, ex=self.ttl))
        return await self._sqlite(self.backend, delivery_id, forget=False)

    async def forget(self, delivery_id: str) -> None:
        """Let a redelivery through (the delivery could not be queued)."""
        if isinstance(self.backend, RedisBackend):
            await self.backend.redis.delete(REDIS_PREFIX + delivery_id)
        else:
            await self._sqlite(self.backend, delivery_id, forget=True)

    async def _sqlite(self, backend: SqliteQueue, delivery_id: str, *, forget: bool) -> bool:
        ready, ttl = self._ready, self.ttl
        self._taken += 1
        purge = self._taken % PURGE_EVERY == 0

        def run(db: sqlite3.Connection) -> bool:
            if not ready:
                db.execute(SCHEMA)
            now = now_seconds()
            if forget:
                db.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))
                return False
            if purge:
                db.execute("DELETE FROM deliveries WHERE expire_at <= ?", (now,))
            else:
                db.execute("DELETE FROM deliveries WHERE id = ? AND expire_at <= ?", (delivery_id, now))
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (id, expire_at) VALUES (?, ?)", (delivery_id, now + ttl)
            )
            return cursor.rowcount == 1

        result = await backend.call(run)
        self._ready = True
        return result
