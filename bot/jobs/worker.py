"""Workers: SAQ's Worker running our tasks, each wrapped with a heartbeat, a timeout and a retry policy.

In the embedded mode the worker runs inside ``serve`` (:class:`EmbeddedWorker`, which leaves SIGTERM to
uvicorn); in the Redis mode ``python -m bot worker`` runs a plain SAQ worker that handles the signals.
Every run is timed into the metrics, and every log line of a run (SAQ's own too) carries the job's key, the
id of the request that queued it and the task's own fields (a delivery id, a repository, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from saq import Worker
from saq.job import Job
from saq.types import Context
from saq.utils import cancel_tasks

from bot.context import bound
from bot.jobs.queue import JobPolicy, Jobs
from bot.metrics import Metrics

log = logging.getLogger("bot.jobs")

THREAD_HEADROOM = 8


class TransientError(Exception):
    """A failure worth another attempt (a dependency that timed out or answered 5xx)."""


@dataclass(frozen=True, slots=True)
class Task:
    """A job function: `run(**kwargs)` returns a JSON-serializable result. Exceptions of the `transient`
    types are retried with exponential backoff while attempts are left; every other error is final."""

    name: str
    run: Callable[..., Awaitable[Any]]
    transient: tuple[type[BaseException], ...] = field(default=(TransientError,))
    close: Callable[[], Awaitable[None]] | None = None  # at shutdown, after the worker stopped (its clients)
    # The fields its kwargs give every log line of a run (e.g. delivery, installation, repo, pr); never secrets.
    log_fields: Callable[[dict[str, Any]], dict[str, str]] | None = None


async def close_tasks(tasks: Iterable[Task]) -> None:
    for task in tasks:
        if task.close is not None:
            await task.close()


def describe(exc: BaseException) -> str:
    """A one-line message for the job's client: the exception's own text, no traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fail(job: Job, message: str, *, retry: bool) -> None:
    # SAQ stores the traceback in `job.error` for the operator; the client reads this message instead.
    job.meta["error"] = message
    if not retry:
        job.retries = job.attempts  # SAQ retries while retries > attempts: this makes the failure final


async def _heartbeat(job: Job, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await job.update()  # touches the job; the sweeper takes a job that stops beating as crashed
        except Exception:
            # Logged and beaten again next time: a heartbeat that died here would get a healthy job swept as
            # crashed and run twice. (The job's own errors are handled by the wrapper, not here.)
            log.exception("heartbeat of job %s failed", job.key)


def saq_function(
    task: Task, policy: JobPolicy, metrics: Metrics | None = None
) -> tuple[str, Callable[..., Awaitable[Any]]]:
    metrics = metrics or Metrics()

    async def run(ctx: dict[str, Any], **kwargs: Any) -> Any:
        job: Job = ctx["job"]
        beat = asyncio.create_task(_heartbeat(job, max(policy.heartbeat / 3, 0.2)))
        deadline = asyncio.timeout(policy.timeout)
        with metrics.job(task.name) as timing:
            try:
                async with deadline:
                    result = await task.run(**kwargs)
            except TimeoutError as exc:
                if not deadline.expired():
                    _fail(job, describe(exc), retry=isinstance(exc, task.transient))
                    timing.outcome = "retry" if job.retryable else "error"
                    raise
                _fail(job, f"the job did not finish within {policy.timeout} s (JOB_TIMEOUT_SECONDS)", retry=False)
                timing.outcome = "timeout"
                raise
            except task.transient as exc:
                _fail(job, describe(exc), retry=True)
                timing.outcome = "retry" if job.retryable else "error"
                log.warning("job %s: transient error (attempt %d of %d): %s", job.key, job.attempts, job.retries, exc)
                raise
            except Exception as exc:
                _fail(job, describe(exc), retry=False)
                timing.outcome = "error"
                raise
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
            timing.outcome = "done"
        job.meta.pop("error", None)
        return result

    return task.name, run


# The log scope of the job this `process` task of SAQ's worker is running (set before, closed after the job).
_JOB_SCOPE: ContextVar[ExitStack | None] = ContextVar("job_log_scope", default=None)


def job_log_scope(tasks: Iterable[Task]) -> tuple[Callable[..., Awaitable[None]], Callable[..., Awaitable[None]]]:
    """SAQ's before/after_process hooks, which run in the task that also logs "Processing", "Error processing"
    and "Finished" for the job: the job's fields are bound for all of it, and for the job function's task."""
    fields_of = {task.name: task.log_fields for task in tasks}

    async def before(ctx: dict[str, Any]) -> None:
        job: Job = ctx["job"]
        request_id = (job.meta or {}).get("request_id")
        fields = {"job": job.key}
        extra = fields_of.get(job.function)
        if extra is not None:
            fields.update(extra(job.kwargs or {}))
        scope = ExitStack()
        scope.enter_context(bound(request_id if isinstance(request_id, str) and request_id != "-" else None, **fields))
        _JOB_SCOPE.set(scope)

    async def after(ctx: dict[str, Any]) -> None:
        del ctx
        scope = _JOB_SCOPE.get()
        if scope is not None:
            _JOB_SCOPE.set(None)
            scope.close()

    return before, after


class AbridgedJobs(logging.Filter):
    """SAQ logs a failed job with its full repr (every kwarg: a chat job's whole source file, which may hold
    secrets): on SAQ's logger, a job argument is shown abridged (function, key, attempts; no kwargs, no result)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, Job) for arg in record.args):
            record.args = tuple(arg.info(False) if isinstance(arg, Job) else arg for arg in record.args)
        return True


def _abridge_saq_logs() -> None:
    saq_log = logging.getLogger("saq")
    if not any(isinstance(existing, AbridgedJobs) for existing in saq_log.filters):
        saq_log.addFilter(AbridgedJobs())


class ServiceWorker(Worker[Context]):
    """SAQ's worker with a drain: on stop, running jobs get `policy.drain` seconds to finish; what is still
    running then is cancelled and goes back to the queue (SAQ's retry on cancellation). Idle parts (dequeue
    loops, upkeep timers) are cancelled at once instead of timing out SAQ's grace period with a warning."""

    drain_seconds: float = 0.0

    async def stop(self) -> None:
        self.event.set()
        running = [context["task"] for context in self.job_task_contexts.values() if not context["task"].done()]
        if running and self.drain_seconds > 0:
            log.info("worker stopping: waiting up to %g s for %d running jobs", self.drain_seconds, len(running))
            _, left = await asyncio.wait(running, timeout=self.drain_seconds)
            if left:
                log.warning("worker stopping: %d jobs still running go back to the queue", len(left))
        await cancel_tasks(list(self.tasks), timeout=self._cancellation_hard_deadline_s)
        await super().stop()


class EmbeddedWorker(ServiceWorker):
    """Runs inside the web server's event loop: uvicorn owns SIGINT/SIGTERM and stops us in its lifespan."""

    SIGNALS: list[signal.Signals] = []  # noqa: RUF012 - overrides SAQ's class attribute


def size_thread_pool(worker_concurrency: int, llm_concurrency: int) -> None:
    """Give the running loop's default executor a thread for every LLM call the workers may have in flight
    (CrewAI runs each OpenAI call as a blocking call in `asyncio.to_thread`), plus room for the rules' and
    the web routes' own `to_thread` work. The stock pool (cores + 4) would queue calls behind each other."""
    threads = worker_concurrency * llm_concurrency + THREAD_HEADROOM
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="io"))


def build_worker(
    jobs: Jobs, tasks: Iterable[Task], *, concurrency: int, embedded: bool, metrics: Metrics | None = None
) -> ServiceWorker:
    """A worker for `tasks` (`metrics`: where its runs are recorded; a private registry when None)."""
    policy = jobs.policy
    tasks = list(tasks)
    metrics = metrics or Metrics()
    _abridge_saq_logs()
    before, after = job_log_scope(tasks)
    worker_class = EmbeddedWorker if embedded else ServiceWorker
    worker = worker_class(
        jobs.backend,
        functions=[saq_function(task, policy, metrics) for task in tasks],
        before_process=before,
        after_process=after,
        concurrency=concurrency,
        timers={"schedule": 1, "worker_info": 10, "sweep": policy.sweep_every, "abort": 1},
        dequeue_timeout=1.0,
        # Everything is done or cancelled by the time SAQ's own stop gathers the tasks (see `stop`).
        shutdown_grace_period_s=1,
    )
    worker.drain_seconds = policy.drain
    return worker
