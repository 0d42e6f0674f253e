"""SAQ's queue interface on SQLite (WAL): the embedded backend, so one machine needs no Redis.

SAQ 0.26 ships Redis, Postgres and HTTP backends only; this one follows its Postgres backend's contract
(status column beside the serialized job, expiry timestamps, sweep of stuck jobs) on the standard
library's ``sqlite3``. Every statement runs on one dedicated thread that owns the connection, so the
event loop never waits on the disk. Claiming a job is one ``BEGIN IMMEDIATE`` transaction: SQLite's
single writer lock is what makes two workers (threads or processes on the same file) never claim the
same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from saq.job import TERMINAL_STATUSES, Job, Status
from saq.queue.base import Queue
from saq.utils import now, now_seconds

if TYPE_CHECKING:
    from saq.types import CountKind, QueueInfo, WorkerInfo

log = logging.getLogger("bot.jobs")

T = TypeVar("T")

INCOMPLETE = ("new", "queued", "active", "aborting")
BUSY_TIMEOUT_MS = 10_000
# A finished job past its result TTL is gone for readers at once, as in Redis; the sweep deletes the row later.
LIVE = "(expire_at IS NULL OR expire_at > ?)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS saq_jobs (
    key TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    job TEXT NOT NULL,
    scheduled REAL NOT NULL DEFAULT 0,
    queued INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expire_at REAL
);
CREATE INDEX IF NOT EXISTS saq_jobs_next ON saq_jobs (queue, status, scheduled, queued);
CREATE TABLE IF NOT EXISTS saq_stats (
    worker_id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    info TEXT NOT NULL,
    expire_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS saq_locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expire_at REAL NOT NULL
);
"""


def _is_duplicate(status: str | None, expire_at: float | None) -> bool:
    """Dedupe rule shared with the Redis backend: a key that is queued or running, or that finished
    successfully and is still within its result TTL, is not enqueued again. A failed or cancelled one is."""
    if status is None:
        return False
    if status in INCOMPLETE:
        return True
    return status == Status.COMPLETE.value and (expire_at is None or expire_at > now_seconds())


class SqliteQueue(Queue):
    """A SAQ queue stored in one SQLite file. ``poll_interval`` bounds how late a worker notices a job
    enqueued by another process; jobs enqueued by this process wake its workers at once."""

    def __init__(
        self,
        path: Path,
        name: str = "default",
        *,
        poll_interval: float = 0.25,
        swept_error_message: str | None = None,
    ) -> None:
        super().__init__(name=name, dump=None, load=None, swept_error_message=swept_error_message)
        self.path = path
        self.poll_interval = poll_interval
        self._connection: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Replaced (after being set) on every local change, so waiters wake without polling.
        self._work = asyncio.Event()
        self._changed = asyncio.Event()
        self._holder = f"{id(self)}:{time.time_ns()}"

    def __repr__(self) -> str:
        return f"SqliteQueue<path={self.path}, name={self.name!r}>"

    # Plumbing: one thread owns the connection.

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.executescript(SCHEMA)
        self._connection = connection

    async def _run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._connection is None:
            raise RuntimeError("the SQLite queue is not connected; call connect() first")
        connection = self._connection
        return await self.loop.run_in_executor(self._executor, function, connection)

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run `function(connection)` on the queue's connection thread (for tables beside the queue's)."""
        return await self._run(function)

    async def connect(self) -> None:
        if self._connection is not None:
            return
        await super().connect()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-queue")
        try:
            await self.loop.run_in_executor(self._executor, self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def disconnect(self) -> None:
        if self._connection is None or self._executor is None:
            return
        connection, executor = self._connection, self._executor
        await self.loop.run_in_executor(executor, connection.close)
        executor.shutdown(wait=True)
        self._connection = None
        self._executor = None

    def _wake(self, *, work: bool) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if work:
            self._work.set()
            self._work = asyncio.Event()

    async def changed(self, within: float) -> None:
        """Return when this process changes a job, or after `within` seconds (another process may have)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), within)

    def _load_job(self, payload: str | None, status: str | None = None) -> Job | None:
        return self.deserialize(payload, status) if payload else None

    # Reads.

    async def job(self, job_key: str) -> Job | None:
        def read(db: sqlite3.Connection) -> tuple[str, str] | None:
            row: tuple[str, str] | None = db.execute(
                f"SELECT job, status FROM saq_jobs WHERE key = ? AND queue = ? AND {LIVE}",  # noqa: S608 - a constant
                (job_key, self.name, now_seconds()),
            ).fetchone()
            return row

        row = await self._run(read)
        return self._load_job(*row) if row else None

    async def jobs(self, job_keys: Iterable[str]) -> list[Job | None]:
        keys = list(job_keys)

        def read(db: sqlite3.Connection) -> dict[str, tuple[str, str]]:
            found: dict[str, tuple[str, str]] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, job, status FROM saq_jobs WHERE queue = ? AND {LIVE} AND key IN ({marks})",  # noqa: S608
                    (self.name, now_seconds(), *chunk),
                )
                found.update({key: (job, status) for key, job, status in rows})
            return found

        found = await self._run(read)
        return [self._load_job(*found[key]) if key in found else None for key in keys]

    async def iter_jobs(
        self,
        statuses: list[Status] = list(Status),  # noqa: B006 - SAQ's signature
        batch_size: int = 100,
    ) -> AsyncIterator[Job]:
        wanted = [status.value for status in statuses]
        last_key = ""
        while True:

            def page(db: sqlite3.Connection, after: str = last_key) -> list[tuple[str, str, str]]:
                marks = ",".join("?" * len(wanted))
                return db.execute(
                    f"SELECT key, job, status FROM saq_jobs WHERE queue = ? AND key > ? AND status IN ({marks})"  # noqa: S608
                    " ORDER BY key LIMIT ?",
                    (self.name, after, *wanted, batch_size),
                ).fetchall()

            rows = await self._run(page)
            if not rows:
                return
            for key, payload, status in rows:
                last_key = key
                job = self._load_job(payload, status)
                if job is not None:
                    yield job

    async def count(self, kind: CountKind) -> int:
        queries = {
            "queued": ("status = 'queued' AND scheduled <= ?", (now_seconds(),)),
            "active": ("status IN ('active', 'aborting')", ()),
            "incomplete": ("status IN ('new', 'queued', 'active', 'aborting')", ()),
        }
        if kind not in queries:
            raise ValueError(f"Can't count unknown type {kind}")
        where, args = queries[kind]

        def read(db: sqlite3.Connection) -> int:
            row = db.execute(f"SELECT count(*) FROM saq_jobs WHERE queue = ? AND {where}", (self.name, *args))  # noqa: S608
            return int(row.fetchone()[0])

        return await self._run(read)

    async def info(self, jobs: bool = False, offset: int = 0, limit: int = 10) -> QueueInfo:
        def read(db: sqlite3.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
            workers = db.execute(
                "SELECT worker_id, info FROM saq_stats WHERE queue = ? AND expire_at >= ?", (self.name, now_seconds())
            ).fetchall()
            listed = (
                db.execute(
                    "SELECT job, status FROM saq_jobs WHERE queue = ? AND status IN ('new', 'queued', 'active', "
                    "'aborting') ORDER BY scheduled, queued LIMIT ? OFFSET ?",
                    (self.name, limit, offset),
                ).fetchall()
                if jobs
                else []
            )
            return workers, listed

        workers, listed = await self._run(read)
        queued = await self.count("queued")
        active = await self.count("active")
        incomplete = await self.count("incomplete")
        return {
            "workers": {worker_id: json.loads(info) for worker_id, info in workers},
            "name": self.name,
            "queued": queued,
            "active": active,
            "scheduled": incomplete - queued - active,
            "jobs": [job.to_dict() for job in (self._load_job(*row) for row in listed) if job is not None],
        }

    async def incomplete_keys(self, prefix: str) -> list[str]:
        """Keys of queued or running jobs that start with `prefix` (a PR's jobs, for superseding)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

        def read(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT key FROM saq_jobs WHERE queue = ? AND key LIKE ? ESCAPE '\\' AND status IN "
                "('new', 'queued', 'active', 'aborting')",
                (self.name, escaped + "%"),
            )
            return [key for (key,) in rows]

        return await self._run(read)

    async def delete_finished(self, prefix: str, completed_before_ms: int) -> int:
        """Delete finished jobs whose key starts with `prefix` and that completed before the given time."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

        def delete(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM saq_jobs WHERE queue = ? AND key LIKE ? ESCAPE '\\' AND status IN "
                "('complete', 'failed', 'aborted') AND completed < ?",
                (self.name, escaped + "%", completed_before_ms),
            )
            return cursor.rowcount

        return await self._run(delete)

    # Writes.

    async def _enqueue(self, job: Job) -> Job | None:
        payload = self.serialize(job)

        def insert(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT status, expire_at FROM saq_jobs WHERE key = ?", (job.key,)).fetchone()
                if row is not None and _is_duplicate(*row):
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO saq_jobs (key, queue, status, job, scheduled, queued, completed, expire_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, 0, NULL)",
                    (job.key, self.name, job.status.value, payload, job.scheduled, job.queued),
                )
                return True
            finally:
                db.execute("COMMIT")

        if not await self._run(insert):
            return None
        self._wake(work=True)
        log.debug("enqueued %s", job.key)
        return job

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109
        deadline = None if timeout <= 0 else self.loop.time() + timeout
        interval = poll_interval or self.poll_interval
        while True:
            wake = self._work
            job = await self._claim()
            if job is not None:
                return job
            wait = interval if deadline is None else min(interval, deadline - self.loop.time())
            if wait <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    async def _claim(self) -> Job | None:
        def claim(db: sqlite3.Connection) -> Job | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT key, job FROM saq_jobs WHERE queue = ? AND status = 'queued' AND scheduled <= ?"
                    " ORDER BY scheduled, queued LIMIT 1",
                    (self.name, now_seconds()),
                ).fetchone()
                if row is None:
                    return None
                job = self._load_job(row[1], Status.ACTIVE)
                if job is None:
                    return None
                job.started = job.touched = now()
                db.execute(
                    "UPDATE saq_jobs SET status = 'active', job = ? WHERE key = ?", (self.serialize(job), row[0])
                )
                return job
            finally:
                db.execute("COMMIT")

        return await self._run(claim)

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        expire_at = kwargs.pop("expire_at", -1)

        def write(db: sqlite3.Connection) -> Status:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT status, job FROM saq_jobs WHERE key = ?", (job.key,)).fetchone()
                if status is not None:
                    job.status = status
                elif row is not None:
                    # A worker's heartbeat must not undo an abort that landed meanwhile.
                    job.status = Status(row[0])
                    if job.status == Status.ABORTING:  # the abort's reason, not an earlier attempt's error
                        job.error = json.loads(row[1]).get("error")
                completed = job.completed if job.status in TERMINAL_STATUSES else 0
                assignments = "job = ?, status = ?, scheduled = ?, completed = ?"
                values: list[Any] = [self.serialize(job), job.status.value, job.scheduled, completed]
                if expire_at != -1:
                    assignments += ", expire_at = ?"
                    values.append(expire_at)
                db.execute(f"UPDATE saq_jobs SET {assignments} WHERE key = ?", (*values, job.key))  # noqa: S608
                return job.status
            finally:
                db.execute("COMMIT")

        written = await self._run(write)
        self._wake(work=written == Status.QUEUED)

    async def abort(self, job: Job, error: str, ttl: float = 5) -> None:
        def mark(db: sqlite3.Connection) -> str | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT status, job FROM saq_jobs WHERE key = ?", (job.key,)).fetchone()
                if row is None:
                    return None
                stored = self._load_job(row[1], row[0])
                if stored is None or stored.status in TERMINAL_STATUSES:
                    return None
                if stored.status in (Status.NEW, Status.QUEUED):
                    return "queued"
                stored.status, stored.error = Status.ABORTING, error
                db.execute(
                    "UPDATE saq_jobs SET status = 'aborting', job = ? WHERE key = ?", (self.serialize(stored), job.key)
                )
                return "running"
            finally:
                db.execute("COMMIT")

        was = await self._run(mark)
        job.error = error
        if was == "queued":
            await self.finish(job, Status.ABORTED, error=error)
        elif was == "running":
            job.status = Status.ABORTING
            self._wake(work=False)

    async def _retry(self, job: Job, error: str | None) -> None:
        delay = job.next_retry_delay()
        # Kept as a float (SAQ types it int): whole seconds would cut short the sub-second, jittered delays.
        scheduled = now_seconds() + delay if delay else job.scheduled
        await self.update(job, status=Status.QUEUED, scheduled=scheduled, expire_at=None)

    async def _finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None, **_: Any
    ) -> None:
        if job.ttl >= 0:
            expire_at = now_seconds() + job.ttl if job.ttl > 0 else None
            await self.update(job, status=status, expire_at=expire_at)
            return

        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM saq_jobs WHERE key = ?", (job.key,))

        await self._run(delete)
        self._wake(work=False)

    async def listen(
        self,
        job_keys: Iterable[str],
        callback: Callable[[str, Status], Any],
        timeout: float | None = 10,  # noqa: ASYNC109 - SAQ's signature
        poll_interval: float = 0.5,
    ) -> None:
        """Like SAQ's polling listen, but woken at once by this process's own updates."""
        keys = list(job_keys)

        async def listen() -> None:
            while True:
                changed = self._changed
                for job in await self.jobs(keys):
                    if job is None:
                        continue
                    stop = callback(job.key, job.status)
                    if asyncio.iscoroutine(stop):
                        stop = await stop
                    if stop:
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(poll_interval, self.poll_interval))

        if timeout:
            await asyncio.wait_for(listen(), timeout)
        else:
            await listen()

    async def write_worker_info(self, worker_id: str, info: WorkerInfo, ttl: int) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO saq_stats (worker_id, queue, info, expire_at) VALUES (?, ?, ?, ?)",
                (worker_id, self.name, json.dumps(info), now_seconds() + ttl),
            )

        await self._run(write)

    async def _lock(self, name: str, seconds: float) -> bool:
        """Hold a named lock for `seconds` (renewed by its holder); one sweeper per file at a time."""

        def take(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT holder, expire_at FROM saq_locks WHERE name = ?", (name,)).fetchone()
                if row is not None and row[0] != self._holder and row[1] > now_seconds():
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO saq_locks (name, holder, expire_at) VALUES (?, ?, ?)",
                    (name, self._holder, now_seconds() + seconds),
                )
                return True
            finally:
                db.execute("COMMIT")

        return await self._run(take)

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        """Delete expired jobs and stats; retry (or abort) running jobs whose worker stopped beating."""
        if not await self._lock(f"sweep:{self.name}", lock + 1):
            return []

        def expire_and_list(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
            moment = now_seconds()
            db.execute(
                "DELETE FROM saq_jobs WHERE queue = ? AND status IN ('complete', 'failed', 'aborted')"
                " AND expire_at <= ?",
                (self.name, moment),
            )
            db.execute("DELETE FROM saq_stats WHERE expire_at < ?", (moment,))
            return db.execute(
                "SELECT key, job, status FROM saq_jobs WHERE queue = ? AND status IN ('active', 'aborting')",
                (self.name,),
            ).fetchall()

        swept: list[str] = []
        for key, payload, status in await self._run(expire_and_list):
            job = self._load_job(payload, status)
            if job is None or not job.stuck:
                continue
            swept.append(key)
            log.warning("job %s stopped beating (its worker died?): sweeping it", key)
            await self.abort(job, error=self.swept_error_message)
            try:
                await job.refresh(abort)
            except TimeoutError:
                log.info("nobody finished the abort of %s", key)
            if job.status in TERMINAL_STATUSES:
                continue
            if job.retryable:
                await self.retry(job, error=self.swept_error_message)
            else:
                await self.finish(job, Status.ABORTED, error=self.swept_error_message)
        return swept
