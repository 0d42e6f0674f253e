"""The LLM's chunk cache in the job store's backend: a table in the SQLite file, or keys in Redis.

Values are the verified proposals of one chunk (JSON); entries expire after LLM_CACHE_TTL_SECONDS.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from saq.utils import now_seconds

from bot.jobs.queue import Jobs
from bot.jobs.redis_backend import RedisBackend
from bot.jobs.sqlite_backend import SqliteQueue

REDIS_PREFIX = "companion:llm-cache:"
SCHEMA = "CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expire_at REAL)"


class ChunkStore:
    """`reviewer.engine.ChunkCache` over the queue's own backend."""

    def __init__(self, jobs: Jobs, ttl: int) -> None:
        self.backend = jobs.backend
        self.ttl = ttl
        self._ready = False

    async def get(self, key: str) -> list[dict[str, Any]] | None:
        raw: str | bytes | None
        if isinstance(self.backend, RedisBackend):
            raw = await self.backend.redis.get(REDIS_PREFIX + key)
        else:
            raw = await self._sqlite(self.backend, "get", key, None)
        return None if raw is None else list(json.loads(raw))

    async def put(self, key: str, value: list[dict[str, Any]]) -> None:
        text = json.dumps(value)
        if isinstance(self.backend, RedisBackend):
            await self.backend.redis.set(REDIS_PREFIX + key, text, ex=self.ttl or None)
        else:
            await self._sqlite(self.backend, "put", key, text)

    async def _sqlite(self, backend: SqliteQueue, op: str, key: str, text: str | None) -> str | None:
        ttl = self.ttl
        ready = self._ready

        def run(db: sqlite3.Connection) -> str | None:
            if not ready:
                db.execute(SCHEMA)
            if op == "put":
                expire = now_seconds() + ttl if ttl else None
                db.execute(
                    "INSERT OR REPLACE INTO llm_cache (key, value, expire_at) VALUES (?, ?, ?)", (key, text, expire)
                )
                return None
            row = db.execute(
                "SELECT value FROM llm_cache WHERE key = ? AND (expire_at IS NULL OR expire_at > ?)",
                (key, now_seconds()),
            ).fetchone()
            return None if row is None else str(row[0])

        result = await backend.call(run)
        self._ready = True
        return result
