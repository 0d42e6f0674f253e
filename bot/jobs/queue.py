"""The one small queue interface the rest of the service uses, over SAQ with either backend.

``QUEUE_URL=sqlite:///path`` is the embedded backend (workers run inside ``serve``);
``QUEUE_URL=redis://...`` is SAQ's Redis backend (web replicas enqueue, ``python -m bot worker`` runs jobs).
Callers see job *keys* and :class:`JobView`; SAQ's ``Job`` never leaves this package.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from saq.job import Job, Status
from saq.utils import now

from bot.context import current_request_id
from bot.errors import ServerBusy
from bot.jobs.redis_backend import RedisBackend
from bot.jobs.sqlite_backend import SqliteQueue
from bot.readiness import NotReady
from bot.settings import Settings

log = logging.getLogger("bot.jobs")

QUEUE_NAME = "reviews"
SWEPT_MESSAGE = "the worker running this job stopped before it finished"
BUSY_RETRY_AFTER_SECONDS = 5
WAIT_POLL_SECONDS = 0.1


class QueueUnavailable(Exception):
    """The queue cannot be opened at start; the message names QUEUE_URL and the cause."""


class JobState(StrEnum):
    """Job states as the API reports them."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


_STATES = {
    Status.NEW: JobState.QUEUED,
    Status.QUEUED: JobState.QUEUED,
    Status.ACTIVE: JobState.RUNNING,
    Status.ABORTING: JobState.RUNNING,
    Status.COMPLETE: JobState.DONE,
    Status.FAILED: JobState.ERROR,
    Status.ABORTED: JobState.CANCELLED,
}
FINISHED = frozenset({JobState.DONE, JobState.ERROR, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """How jobs run: the same numbers for every job the service enqueues (tests shorten them)."""

    timeout: int = 300  # seconds a job may run (JOB_TIMEOUT_SECONDS)
    result_ttl: int = 3600  # seconds a finished job and its result are kept (JOB_RESULT_TTL_SECONDS)
    attempts: int = 3  # runs in all, for transient errors and crashed workers
    retry_delay: float = 2.0  # first retry delay; doubles each time (with jitter), capped below
    retry_max_delay: float = 60.0
    heartbeat: int = 15  # a running job unseen this long is taken as crashed and run again
    sweep_every: int = 5  # seconds between sweeps (expired jobs, crashed jobs)
    poll_interval: float = 0.25  # embedded backend: how soon jobs from another process are noticed
    drain: float = 20.0  # on shutdown, seconds running jobs get to finish before they go back to the queue


def _time(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


@dataclass(frozen=True, slots=True)
class JobView:
    """What callers may know about a job."""

    key: str
    function: str
    state: JobState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    result: Any
    # A message fit for the client (not a traceback): set by the job wrapper or the sweeper.
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @classmethod
    def of(cls, job: Job) -> JobView:
        state = _STATES[job.status]
        error = job.meta.get("error") if job.meta else None
        if job.status == Status.ABORTED and job.error == SWEPT_MESSAGE:
            # Crashed on every attempt: an error, not a cancellation anyone asked for.
            state, error = JobState.ERROR, f"{SWEPT_MESSAGE} ({job.attempts} attempts)"
        elif state == JobState.CANCELLED:
            error = job.error or "cancelled"
        elif state == JobState.ERROR and not error:
            error = (job.error or "failed").strip().splitlines()[-1]
        return cls(
            key=job.key,
            function=job.function,
            state=state,
            created_at=_time(job.queued) or datetime.now(tz=UTC),
            started_at=_time(job.started),
            finished_at=_time(job.completed),
            attempts=job.attempts,
            result=job.result if state == JobState.DONE else None,
            error=error if state in (JobState.ERROR, JobState.CANCELLED) else None,
        )


@dataclass(frozen=True, slots=True)
class JobCounts:
    """How many jobs are ready to run (`queued`), `running`, and `pending` (those two plus the ones waiting for
    a retry: what `capacity` caps)."""

    queued: int
    running: int
    pending: int


@dataclass(frozen=True, slots=True)
class Submission:
    job: JobView
    created: bool  # False: a job with this key was already queued, running or recently done


Backend = SqliteQueue | RedisBackend


class Jobs:
    """Enqueue, look up, wait for, cancel and clean up jobs; one instance per process, shared."""

    def __init__(self, backend: Backend, policy: JobPolicy, *, capacity: int) -> None:
        self.backend = backend
        self.policy = policy
        self.capacity = capacity

    @classmethod
    def from_url(cls, url: str, policy: JobPolicy, *, capacity: int, name: str = QUEUE_NAME) -> Jobs:
        backend: Backend
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            backend = SqliteQueue(path, name, poll_interval=policy.poll_interval, swept_error_message=SWEPT_MESSAGE)
        else:
            import redis.asyncio as aioredis  # noqa: PLC0415 - only the Redis mode needs it

            client = aioredis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
            backend = RedisBackend(client, name=name, swept_error_message=SWEPT_MESSAGE)
        return cls(backend, policy, capacity=capacity)

    @classmethod
    def from_settings(cls, settings: Settings) -> Jobs:
        policy = JobPolicy(timeout=settings.job_timeout_seconds, result_ttl=settings.job_result_ttl_seconds)
        return cls.from_url(settings.queue_url, policy, capacity=settings.max_concurrent_jobs)

    @property
    def is_embedded(self) -> bool:
        return isinstance(self.backend, SqliteQueue)

    async def connect(self) -> None:
        """Open the queue. The embedded one must open now (the service cannot work without it); Redis
        connects lazily, so a web replica starts while Redis is down and /readyz says so."""
        try:
            await self.backend.connect()
        except (OSError, sqlite3.Error) as exc:
            raise QueueUnavailable(f"QUEUE_URL: the queue at {self.where} does not open: {exc}") from exc

    async def close(self) -> None:
        try:
            await self.backend.disconnect()
        except (OSError, RedisError) as exc:
            # Closing needs no answer from a Redis that is down; say so and move on with the shutdown.
            log.warning("closing the %s queue: %s: %s", self.where, type(exc).__name__, exc)

    @property
    def where(self) -> str:
        if isinstance(self.backend, SqliteQueue):
            return f"SQLite {self.backend.path}"
        return "Redis"

    async def check(self) -> None:
        """Readiness: the backend answers a real query; NotReady says which and why when it does not."""
        try:
            await self.backend.count("incomplete")
        except (OSError, sqlite3.Error, RedisError, RuntimeError) as exc:
            raise NotReady(f"{self.where} queue does not answer: {type(exc).__name__}: {exc}") from exc

    async def counts(self) -> JobCounts:
        """The queue's numbers (for the metrics); NotReady when the backend does not answer."""
        try:
            queued = await self.backend.count("queued")
            running = await self.backend.count("active")
            pending = await self.backend.count("incomplete")
        except (OSError, sqlite3.Error, RedisError, RuntimeError) as exc:
            raise NotReady(f"{self.where} queue does not answer: {type(exc).__name__}: {exc}") from exc
        return JobCounts(queued=queued, running=running, pending=pending)

    async def pending(self) -> int:
        """Jobs queued or running (including ones waiting for a retry)."""
        return await self.backend.count("incomplete")

    async def submit(
        self,
        function: str,
        key: str,
        kwargs: dict[str, Any],
        *,
        supersede: str | None = None,
        check_capacity: bool = True,
    ) -> Submission:
        """Enqueue `function(**kwargs)` as job `key` unless that key is queued, running or recently done.

        `supersede`: a key prefix (a PR's `owner/repo#12@`); other queued or running jobs under it are
        cancelled once this one is queued (a newer head SHA replaces the older review).
        Raises ServerBusy when `capacity` jobs are already pending.
        """
        existing = await self.backend.job(key)
        if existing is not None and existing.status not in (Status.FAILED, Status.ABORTED):
            return Submission(JobView.of(existing), created=False)
        if check_capacity and await self.pending() >= self.capacity:
            raise ServerBusy(
                f"{self.capacity} jobs are already queued or running (MAX_CONCURRENT_JOBS); retry later",
                retry_after=BUSY_RETRY_AFTER_SECONDS,
            )
        policy = self.policy
        job = Job(
            function=function,
            kwargs=kwargs,
            key=key,
            # SAQ's own timeout is a backstop: the job wrapper enforces `policy.timeout` with a clear error.
            timeout=policy.timeout + 10,
            heartbeat=policy.heartbeat,
            retries=policy.attempts,
            ttl=policy.result_ttl,
            retry_delay=policy.retry_delay,
            retry_backoff=policy.retry_max_delay,
            # The request that queued the job: its id is on every log line of the job too.
            meta={"request_id": current_request_id()},
        )
        created = await self.backend.enqueue(job)
        if created is None:
            # Lost a race with an identical submission: report the job that won.
            stored = await self.backend.job(key)
            if stored is None:
                raise ServerBusy("the job could not be queued; retry", retry_after=1)
            return Submission(JobView.of(stored), created=False)
        log.info("queued job %s (%s)", key, function)
        if supersede is not None:
            for older in await self.backend.incomplete_keys(supersede):
                if older != key:
                    await self.cancel(older, f"superseded by {key}")
        return Submission(JobView.of(created), created=True)

    async def get(self, key: str) -> JobView | None:
        job = await self.backend.job(key)
        return JobView.of(job) if job is not None else None

    async def wait(self, key: str, within: float) -> JobView | None:
        """The job once it has finished, or as it stands when `within` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            view = await self.get(key)
            left = deadline - loop.time()
            if view is None or view.finished or left <= 0:
                return view
            await self.backend.changed(min(left, WAIT_POLL_SECONDS))

    async def cancel(self, key: str, reason: str = "cancelled") -> JobView | None:
        """Cancel a job: a queued one is dropped at once, a running one is aborted by its worker."""
        job = await self.backend.job(key)
        if job is None:
            return None
        if job.status in (Status.NEW, Status.QUEUED, Status.ACTIVE):
            log.info("cancelling job %s: %s", key, reason)
            await self.backend.abort(job, reason, ttl=max(5, self.policy.heartbeat))
        return await self.get(key)

    async def cleanup(self, prefix: str, older_than: float) -> int:
        """Delete finished jobs under `prefix` that finished more than `older_than` seconds ago."""
        cutoff = now() - int(older_than * 1000)
        removed = await self.backend.delete_finished(prefix, cutoff)
        if removed:
            log.info("removed %d finished jobs under %r", removed, prefix)
        return removed
