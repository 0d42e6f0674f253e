"""SAQ's Redis queue, with the dedupe rule of the embedded backend and the two lookups the service needs.

SAQ's own enqueue only refuses a key while its job is incomplete; ours also refuses one that finished
successfully and is still within its result TTL (its stored record still exists), in the same atomic
script. A failed or cancelled job's key can be enqueued again.

Two fixes to SAQ 0.26's Redis queue: its sweep takes a job that a worker has just moved to the active
list, and not yet marked active, for an orphan and aborts it while it starts (tobymao/saq#124, #277);
and a heartbeat replaces the reason of an abort that landed while the job ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

from saq.job import Status
from saq.queue.redis import RedisQueue

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript
    from saq.job import Job

log = logging.getLogger("bot.jobs")

# KEYS: incomplete zset, job id, queued list, abort id. ARGV: payload, scheduled.
ENQUEUE_SCRIPT = """
if redis.call('ZSCORE', KEYS[1], KEYS[2]) or redis.call('EXISTS', KEYS[4]) == 1 then
    return nil
end
local stored = redis.call('GET', KEYS[2])
if stored then
    local ok, job = pcall(cjson.decode, stored)
    local status = ok and job['status'] or 'new'
    if status ~= 'failed' and status ~= 'aborted' then
        return nil
    end
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
if ARGV[2] == '0' then redis.call('RPUSH', KEYS[3], KEYS[2]) end
return 1
"""

# Delete finished jobs under a key prefix that completed before ARGV[1] (ms); returns how many.
CLEANUP_SCRIPT = """
local removed = 0
for _, id in ipairs(KEYS) do
    local stored = redis.call('GET', id)
    if stored then
        local ok, job = pcall(cjson.decode, stored)
        if ok then
            local status = job['status']
            local finished = status == 'complete' or status == 'failed' or status == 'aborted'
            if finished and (tonumber(job['completed']) or 0) < tonumber(ARGV[1]) then
                redis.call('DEL', id)
                removed = removed + 1
            end
        end
    end
end
return removed
"""

# SAQ's sweep script (KEYS: sweep lock, active list; ARGV: lock seconds), except for a job in the active
# list whose status is not 'active': a worker moves a job there (BLMOVE) a moment before it marks it active,
# so such a job is handed to the sweep only when a previous sweep saw it there with the very same payload
# (its worker died in between); the first sighting is remembered in `<sweep lock>:<job id>`.
SWEEP_SCRIPT = """
local id_jobs = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SETEX', KEYS[1], ARGV[1], 1)
    local remember = math.max(60, math.ceil(tonumber(ARGV[1]) * 10))
    for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
        local stored = redis.call('GET', id)
        local sweep = true
        if stored then
            local ok, job = pcall(cjson.decode, stored)
            if ok and job['status'] ~= 'active' then
                local seen = KEYS[1] .. ':' .. id
                sweep = redis.call('GET', seen) == stored
                if not sweep then redis.call('SETEX', seen, remember, stored) end
            end
        end
        if sweep then table.insert(id_jobs, {id, stored}) end
    end
end
return id_jobs
"""


class RedisBackend(RedisQueue):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dedupe_script: AsyncScript | None = None
        self._delete_script: AsyncScript | None = None
        # SAQ's sweep runs `_cleanup_script` (registered lazily when unset): ours replaces it.
        self._cleanup_script = self.redis.register_script(SWEEP_SCRIPT)

    async def _enqueue(self, job: Job) -> Job | None:
        if self._dedupe_script is None:
            self._dedupe_script = self.redis.register_script(ENQUEUE_SCRIPT)
        async with self._op_sem:
            created = await self._dedupe_script(
                keys=[self._incomplete, job.id, self._queued, job.abort_id],
                args=[self.serialize(job), job.scheduled],
                client=self.redis,
            )
        if not created:
            return None
        log.debug("enqueued %s", job.key)
        return job

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        if not status:
            stored = await self.job(job.key)
            if stored is not None:
                status = stored.status
                if status == Status.ABORTING:
                    # A worker's heartbeat must not replace why the job is being aborted (with nothing, or with
                    # an earlier attempt's traceback); as in the SQLite backend.
                    job.error = stored.error
        await super()._update(job, status, **kwargs)

    async def changed(self, within: float) -> None:
        """Pause between looks at a job (polling one GET is cheaper than a pub/sub round trip per wait)."""
        await asyncio.sleep(within)

    async def incomplete_keys(self, prefix: str) -> list[str]:
        """Keys of queued or running jobs that start with `prefix` (bounded by the queue's capacity)."""
        start = self.job_id(prefix)
        ids = await self.redis.zrange(self._incomplete, 0, -1)
        active = await cast("Awaitable[list[bytes]]", self.redis.lrange(self._active, 0, -1))
        keys = {raw.decode() for raw in [*ids, *active]}
        return sorted(self.job_key_from_id(job_id) for job_id in keys if job_id.startswith(start))

    async def delete_finished(self, prefix: str, completed_before_ms: int) -> int:
        if self._delete_script is None:
            self._delete_script = self.redis.register_script(CLEANUP_SCRIPT)
        removed = 0
        pattern = self.job_id(prefix).replace("*", r"\*").replace("?", r"\?").replace("[", r"\[") + "*"
        async for batch in self._scan(pattern):
            removed += int(await self._delete_script(keys=batch, args=[completed_before_ms], client=self.redis))
        return removed

    async def _scan(self, pattern: str, count: int = 500) -> Any:
        cursor = 0
        while True:
            cursor, ids = await self.redis.scan(cursor=cursor, match=pattern, count=count)
            if ids:
                yield [raw.decode() for raw in ids]
            if cursor == 0:
                return
