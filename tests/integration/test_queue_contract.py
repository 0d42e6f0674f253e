"""One contract for the job queue, run against both backends: embedded SQLite and Redis.

Each test drives a real SAQ worker (`build_worker(..., embedded=True)`) in the test's event loop, with small
tasks that record what they did. Every wait is bounded: `Jobs.wait` with a deadline, `asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bot.errors import ServerBusy
from bot.jobs import JobPolicy, Jobs, JobState, JobView, Task, TransientError, build_worker
from bot.jobs.queue import BUSY_RETRY_AFTER_SECONDS

# Short numbers so the suite runs in seconds; `timeout` stays above the abort check (1 s) on purpose.
POLICY = JobPolicy(
    timeout=10,
    result_ttl=3600,
    attempts=3,
    retry_delay=0.05,
    retry_max_delay=0.2,
    heartbeat=1,
    sweep_every=1,
    poll_interval=0.05,
    drain=0,  # tests stop workers with blocked jobs: no waiting for them
)
WAIT = 10.0  # seconds any single job may take to reach the state a test expects
BLOCK_SECONDS = 30  # a blocking task never ends by itself within a test


@dataclass
class Probe:
    """The test tasks and what they saw. Each task takes `tag` (the job key) so runs can be told apart."""

    runs: list[tuple[str, str]] = field(default_factory=list)  # (task, tag) per run, in order
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    interrupted: list[str] = field(default_factory=list)  # tags of blocking runs that were cancelled

    def started_event(self, tag: str) -> asyncio.Event:
        return self.started.setdefault(tag, asyncio.Event())

    def count(self, tag: str) -> int:
        return sum(1 for _, ran in self.runs if ran == tag)

    async def wait_started(self, tag: str, within: float = WAIT) -> None:
        await asyncio.wait_for(self.started_event(tag).wait(), within)

    def tasks(self, worker: str = "w1") -> list[Task]:
        async def echo(tag: str, value: Any) -> dict[str, Any]:
            self.runs.append(("echo", tag))
            return {"value": value, "worker": worker}

        async def block(tag: str) -> str:
            self.runs.append(("block", tag))
            self.started_event(tag).set()
            try:
                await asyncio.sleep(BLOCK_SECONDS)
            except asyncio.CancelledError:
                self.interrupted.append(tag)
                raise
            return "not cancelled"

        async def flaky(tag: str, failures: int) -> int:
            self.runs.append(("flaky", tag))
            attempt = self.count(tag)
            if attempt <= failures:
                raise TransientError(f"upstream answered 503 on attempt {attempt}")
            return attempt

        async def flaky_then_block(tag: str) -> str:
            self.runs.append(("flaky_then_block", tag))
            if self.count(tag) == 1:
                raise TransientError("upstream answered 503")
            return await block(tag)

        async def broken(tag: str) -> None:
            self.runs.append(("broken", tag))
            raise ValueError("the diff is not valid UTF-8\nsecond line of detail")

        async def slow(tag: str, seconds: float) -> str:
            self.runs.append(("slow", tag))
            await asyncio.sleep(seconds)
            return "slept"

        return [
            Task("echo", echo),
            Task("block", block),
            Task("flaky", flaky),
            Task("flaky_then_block", flaky_then_block),
            Task("broken", broken),
            Task("slow", slow),
        ]


class Harness:
    """Opens queues and workers for one test and closes them all afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"test-{uuid.uuid4().hex[:12]}"
        # Job keys carry a unique owner: SAQ's Redis abort marker (`saq:abort:<key>`) is not per queue.
        self.owner = f"o{uuid.uuid4().hex[:8]}"
        self.probe = Probe()
        self._jobs: list[Jobs] = []
        self._workers: list[tuple[Any, asyncio.Task[None]]] = []

    def key(self, rest: str) -> str:
        return f"{self.owner}/{rest}"

    async def jobs(self, policy: JobPolicy = POLICY, capacity: int = 100) -> Jobs:
        jobs = Jobs.from_url(self.url, policy, capacity=capacity, name=self.name)
        await jobs.connect()
        self._jobs.append(jobs)
        return jobs

    async def worker(self, jobs: Jobs, *, concurrency: int = 2, tasks: Iterable[Task] | None = None) -> None:
        worker = build_worker(
            jobs, self.probe.tasks() if tasks is None else tasks, concurrency=concurrency, embedded=True
        )
        self._workers.append((worker, asyncio.create_task(worker.start())))

    async def close(self) -> None:
        for worker, running in reversed(self._workers):
            await worker.stop()
            await asyncio.wait_for(running, 10)
        for jobs in reversed(self._jobs):
            await jobs.close()
        if self.url.startswith("redis"):
            import redis.asyncio as aioredis  # noqa: PLC0415 - only the Redis runs need it

            client = aioredis.from_url(self.url)
            try:
                for pattern in (f"saq:{self.name}:*", f"saq:job:{self.name}:*", f"saq:abort:{self.owner}/*"):
                    keys = [key async for key in client.scan_iter(match=pattern)]
                    if keys:
                        await client.delete(*keys)
            finally:
                await client.aclose()


@pytest.fixture
async def harness(queue_url: str) -> AsyncIterator[Harness]:
    opened = Harness(queue_url)
    try:
        yield opened
    finally:
        await opened.close()


async def finished(jobs: Jobs, key: str, within: float = WAIT) -> JobView:
    view = await jobs.wait(key, within)
    assert view is not None, f"job {key} disappeared"
    assert view.finished, f"job {key} still {view.state} after {within} s"
    return view


async def state_of(jobs: Jobs, key: str) -> JobState:
    view = await jobs.get(key)
    assert view is not None, f"job {key} does not exist"
    return view.state


async def until(condition: Callable[[], Awaitable[bool]], within: float = WAIT, every: float = 0.05) -> None:
    """Poll an async predicate until it holds; fail (never hang) after about `within` seconds."""
    for _ in range(round(within / every)):
        if await condition():
            return
        await asyncio.sleep(every)
    pytest.fail(f"not true after {within} s: {condition.__name__}")


# Lifecycle.


async def test_a_job_goes_from_queued_to_done_with_its_result_and_times(harness: Harness) -> None:
    jobs = await harness.jobs()
    key = harness.key("repo#1@aaa")
    assert await jobs.get(key) is None

    submission = await jobs.submit("echo", key, {"tag": key, "value": [1, "two"]})

    assert submission.created
    queued = submission.job
    assert (queued.key, queued.function, queued.state) == (key, "echo", JobState.QUEUED)
    assert queued.started_at is None
    assert queued.finished_at is None
    assert queued.result is None
    assert queued.error is None
    assert not queued.finished
    assert await jobs.pending() == 1

    await harness.worker(jobs)
    done = await finished(jobs, key)

    assert done.state == JobState.DONE
    assert done.result == {"value": [1, "two"], "worker": "w1"}
    assert done.error is None
    assert done.attempts == 1
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at
    assert await jobs.pending() == 0
    assert harness.probe.runs == [("echo", key)]


async def test_a_running_job_reports_running(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#2@aaa")
    await jobs.submit("block", key, {"tag": key})
    await harness.probe.wait_started(key)

    view = await jobs.get(key)

    assert view is not None
    assert view.state == JobState.RUNNING
    assert view.started_at is not None
    assert view.finished_at is None
    assert view.result is None
    assert await jobs.pending() == 1


# Dedupe.


async def test_a_queued_key_is_not_queued_twice(harness: Harness) -> None:
    jobs = await harness.jobs()
    key = harness.key("repo#3@aaa")
    first = await jobs.submit("echo", key, {"tag": key, "value": 1})

    again = await jobs.submit("echo", key, {"tag": key, "value": 2})

    assert first.created
    assert not again.created
    assert again.job.state == JobState.QUEUED
    assert await jobs.pending() == 1
    await harness.worker(jobs)
    assert (await finished(jobs, key)).result == {"value": 1, "worker": "w1"}, "the first submission won"
    assert harness.probe.count(key) == 1


async def test_a_running_key_is_not_queued_again(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#4@aaa")
    await jobs.submit("block", key, {"tag": key})
    await harness.probe.wait_started(key)

    again = await jobs.submit("block", key, {"tag": key})

    assert not again.created
    assert again.job.state == JobState.RUNNING
    assert await jobs.pending() == 1
    await asyncio.sleep(0.3)
    assert harness.probe.count(key) == 1


async def test_a_done_key_within_its_ttl_returns_the_finished_job(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#5@aaa")
    await jobs.submit("echo", key, {"tag": key, "value": "first"})
    await finished(jobs, key)

    again = await jobs.submit("echo", key, {"tag": key, "value": "second"})

    assert not again.created
    assert again.job.state == JobState.DONE
    assert again.job.result == {"value": "first", "worker": "w1"}
    await asyncio.sleep(0.3)
    assert harness.probe.count(key) == 1
    assert await jobs.pending() == 0


async def test_a_failed_key_can_be_submitted_again(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#6@aaa")
    await jobs.submit("broken", key, {"tag": key})
    assert (await finished(jobs, key)).state == JobState.ERROR

    again = await jobs.submit("broken", key, {"tag": key})

    assert again.created
    assert again.job.state == JobState.QUEUED
    assert (await finished(jobs, key)).state == JobState.ERROR
    assert harness.probe.count(key) == 2


async def test_a_cancelled_key_can_be_submitted_again(harness: Harness) -> None:
    jobs = await harness.jobs()
    key = harness.key("repo#7@aaa")
    await jobs.submit("echo", key, {"tag": key, "value": "dropped"})
    cancelled = await jobs.cancel(key)
    assert cancelled is not None
    assert cancelled.state == JobState.CANCELLED

    again = await jobs.submit("echo", key, {"tag": key, "value": "kept"})

    assert again.created
    await harness.worker(jobs)
    done = await finished(jobs, key)
    assert done.state == JobState.DONE
    assert done.result == {"value": "kept", "worker": "w1"}
    assert harness.probe.count(key) == 1


async def test_a_key_cancelled_while_running_can_be_submitted_again(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#8@aaa")
    await jobs.submit("block", key, {"tag": key})
    await harness.probe.wait_started(key)
    await jobs.cancel(key)
    assert (await finished(jobs, key)).state == JobState.CANCELLED

    again = await jobs.submit("echo", key, {"tag": key, "value": "again"})

    assert again.created, f"a cancelled key must be accepted again, got {again.job}"
    done = await finished(jobs, key)
    assert done.state == JobState.DONE
    assert done.result == {"value": "again", "worker": "w1"}


# Supersede.


async def test_a_newer_head_supersedes_the_queued_and_running_reviews_of_the_same_pr(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs, concurrency=1)
    pr = harness.key("repo#12@")
    running, queued, newest = f"{pr}aaa", f"{pr}bbb", f"{pr}ccc"
    neighbour = harness.key("repo#123@zzz")  # another PR whose key merely starts alike
    await jobs.submit("block", running, {"tag": running})
    await harness.probe.wait_started(running)
    await jobs.submit("echo", queued, {"tag": queued, "value": "b"})
    await jobs.submit("echo", neighbour, {"tag": neighbour, "value": "z"})

    submission = await jobs.submit("echo", newest, {"tag": newest, "value": "c"}, supersede=pr)

    assert submission.created
    dropped = await jobs.get(queued)
    assert dropped is not None
    assert dropped.state == JobState.CANCELLED, "a queued older review is dropped at once"
    assert dropped.error == f"superseded by {newest}"
    aborted = await finished(jobs, running)
    assert aborted.state == JobState.CANCELLED
    assert aborted.error == f"superseded by {newest}"
    assert (await finished(jobs, newest)).result == {"value": "c", "worker": "w1"}
    assert (await finished(jobs, neighbour)).state == JobState.DONE
    assert harness.probe.interrupted == [running]
    assert harness.probe.count(queued) == 0
    assert harness.probe.count(newest) == 1


async def test_supersede_leaves_finished_jobs_alone(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    pr = harness.key("repo#14@")
    await jobs.submit("echo", f"{pr}aaa", {"tag": f"{pr}aaa", "value": "old"})
    await finished(jobs, f"{pr}aaa")

    await jobs.submit("echo", f"{pr}bbb", {"tag": f"{pr}bbb", "value": "new"}, supersede=pr)

    assert (await finished(jobs, f"{pr}bbb")).state == JobState.DONE
    old = await jobs.get(f"{pr}aaa")
    assert old is not None
    assert old.state == JobState.DONE
    assert old.result == {"value": "old", "worker": "w1"}


# Cancel.


async def test_cancel_drops_a_queued_job_at_once(harness: Harness) -> None:
    jobs = await harness.jobs()
    key = harness.key("repo#15@aaa")
    await jobs.submit("echo", key, {"tag": key, "value": 1})

    view = await jobs.cancel(key, "the PR was closed")

    assert view is not None
    assert view.state == JobState.CANCELLED
    assert view.finished
    assert view.error == "the PR was closed"
    assert await jobs.pending() == 0
    later = harness.key("repo#15@bbb")
    await jobs.submit("echo", later, {"tag": later, "value": 2})
    await harness.worker(jobs)
    await finished(jobs, later)  # the worker ran what came after: the cancelled job had its chance
    assert harness.probe.count(key) == 0
    assert await state_of(jobs, key) == JobState.CANCELLED


async def test_cancel_aborts_a_running_job(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#16@aaa")
    await jobs.submit("block", key, {"tag": key})
    await harness.probe.wait_started(key)

    await jobs.cancel(key, "user asked")
    view = await finished(jobs, key, within=5)

    assert view.state == JobState.CANCELLED
    assert view.error == "user asked"
    assert view.result is None
    assert harness.probe.interrupted == [key]
    assert await jobs.pending() == 0


async def test_cancel_of_a_retried_job_reports_the_reason_not_the_earlier_failure(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#16@bbb")
    await jobs.submit("flaky_then_block", key, {"tag": key})
    await harness.probe.wait_started(key)  # the second attempt, after a transient error

    await jobs.cancel(key, "user asked")
    view = await finished(jobs, key, within=5)

    assert view.state == JobState.CANCELLED
    assert view.error == "user asked"
    assert view.attempts == 2
    assert harness.probe.interrupted == [key]


async def test_cancel_of_an_unknown_or_finished_job(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#17@aaa")
    assert await jobs.cancel(harness.key("repo#17@nope")) is None
    await jobs.submit("echo", key, {"tag": key, "value": 1})
    await finished(jobs, key)

    view = await jobs.cancel(key)

    assert view is not None
    assert view.state == JobState.DONE, "a finished job stays as it finished"
    assert view.result == {"value": 1, "worker": "w1"}


# Retries, permanent errors, timeout.


async def test_transient_errors_are_retried_until_the_job_succeeds(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#20@aaa")

    await jobs.submit("flaky", key, {"tag": key, "failures": 2})
    view = await finished(jobs, key)

    assert view.state == JobState.DONE
    assert view.result == 3
    assert view.attempts == 3
    assert view.error is None
    assert harness.probe.count(key) == 3


async def test_transient_errors_stop_after_the_last_attempt_with_a_clean_message(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#21@aaa")

    await jobs.submit("flaky", key, {"tag": key, "failures": 10})
    view = await finished(jobs, key)

    assert view.state == JobState.ERROR
    assert view.attempts == POLICY.attempts
    assert harness.probe.count(key) == POLICY.attempts
    assert view.error == f"TransientError: upstream answered 503 on attempt {POLICY.attempts}"


async def test_a_permanent_error_is_not_retried_and_reads_clean(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs)
    key = harness.key("repo#22@aaa")

    await jobs.submit("broken", key, {"tag": key})
    view = await finished(jobs, key)

    assert view.state == JobState.ERROR
    assert view.error == "ValueError: the diff is not valid UTF-8"
    assert "Traceback" not in view.error
    assert view.attempts == 1
    assert view.result is None
    await asyncio.sleep(0.5)
    assert harness.probe.count(key) == 1, "a permanent error is final"


async def test_a_job_past_its_timeout_fails_with_the_timeout_message(harness: Harness) -> None:
    jobs = await harness.jobs(replace(POLICY, timeout=1))
    await harness.worker(jobs)
    key = harness.key("repo#23@aaa")

    await jobs.submit("slow", key, {"tag": key, "seconds": BLOCK_SECONDS})
    view = await finished(jobs, key)

    assert view.state == JobState.ERROR
    assert view.error == "the job did not finish within 1 s (JOB_TIMEOUT_SECONDS)"
    assert view.attempts == 1, "a timeout is not retried"
    assert view.started_at is not None
    assert view.finished_at is not None
    assert 0.9 <= (view.finished_at - view.started_at).total_seconds() < 5
    await asyncio.sleep(0.5)
    assert harness.probe.count(key) == 1


async def test_a_job_within_its_timeout_is_not_cut_short(harness: Harness) -> None:
    jobs = await harness.jobs(replace(POLICY, timeout=2))
    await harness.worker(jobs)
    key = harness.key("repo#24@aaa")

    await jobs.submit("slow", key, {"tag": key, "seconds": 0.5})

    assert (await finished(jobs, key)).result == "slept"


# TTL and cleanup.


async def test_a_finished_job_disappears_after_its_result_ttl(harness: Harness) -> None:
    jobs = await harness.jobs(replace(POLICY, result_ttl=1))
    await harness.worker(jobs)
    done_key, failed_key = harness.key("repo#30@aaa"), harness.key("repo#30@bbb")
    await jobs.submit("echo", done_key, {"tag": done_key, "value": 1})
    await jobs.submit("broken", failed_key, {"tag": failed_key})
    assert (await finished(jobs, done_key)).state == JobState.DONE
    assert (await finished(jobs, failed_key)).state == JobState.ERROR

    async def gone() -> bool:
        return await jobs.get(done_key) is None and await jobs.get(failed_key) is None

    await until(gone, within=6)
    again = await jobs.submit("echo", done_key, {"tag": done_key, "value": 2})
    assert again.created, "once its result expired, the key runs again"
    assert (await finished(jobs, done_key)).result == {"value": 2, "worker": "w1"}


async def test_cleanup_removes_only_finished_jobs_under_the_prefix(harness: Harness) -> None:
    jobs = await harness.jobs()
    await harness.worker(jobs, concurrency=4)
    chat = harness.key("chat:")
    done, failed, cancelled = f"{chat}done", f"{chat}failed", f"{chat}cancelled"
    running, other = f"{chat}running", harness.key("repo#31@aaa")
    await jobs.submit("echo", done, {"tag": done, "value": 1})
    await jobs.submit("broken", failed, {"tag": failed})
    await jobs.submit("echo", other, {"tag": other, "value": 2})
    for key in (done, failed, other):
        await finished(jobs, key)
    await jobs.submit("block", running, {"tag": running})
    await harness.probe.wait_started(running)
    await jobs.submit("block", cancelled, {"tag": cancelled})
    await harness.probe.wait_started(cancelled)
    await jobs.cancel(cancelled)
    await finished(jobs, cancelled)
    await asyncio.sleep(0.05)  # every finish time is now strictly in the past

    assert await jobs.cleanup(chat, older_than=3600) == 0, "nothing finished an hour ago"
    removed = await jobs.cleanup(chat, older_than=0)

    assert removed == 3
    for key in (done, failed, cancelled):
        assert await jobs.get(key) is None, key
    assert await state_of(jobs, running) == JobState.RUNNING
    assert await state_of(jobs, other) == JobState.DONE
    assert await jobs.cleanup(chat, older_than=0) == 0


# Capacity.


async def test_submit_at_capacity_raises_server_busy(harness: Harness) -> None:
    jobs = await harness.jobs(capacity=2)
    first, second, third = (harness.key(f"repo#40@{sha}") for sha in ("aaa", "bbb", "ccc"))
    await jobs.submit("echo", first, {"tag": first, "value": 1})
    await jobs.submit("echo", second, {"tag": second, "value": 2})

    with pytest.raises(ServerBusy) as busy:
        await jobs.submit("echo", third, {"tag": third, "value": 3})

    assert busy.value.retry_after == BUSY_RETRY_AFTER_SECONDS
    assert "MAX_CONCURRENT_JOBS" in busy.value.message
    assert await jobs.get(third) is None
    duplicate = await jobs.submit("echo", first, {"tag": first, "value": 1})
    assert not duplicate.created, "a duplicate at capacity still answers with its job"
    unchecked = await jobs.submit("echo", third, {"tag": third, "value": 3}, check_capacity=False)
    assert unchecked.created
    assert await jobs.pending() == 3

    await harness.worker(jobs)
    for key in (first, second, third):
        await finished(jobs, key)
    fourth = harness.key("repo#40@ddd")
    assert (await jobs.submit("echo", fourth, {"tag": fourth, "value": 4})).created, "room again once done"


# A worker that died.


async def test_a_job_claimed_by_a_worker_that_died_before_running_it_still_runs(harness: Harness) -> None:
    # What a worker does first with a job, and then nothing more: as if it died right there. (SQLite marks
    # the job active as it claims it; Redis moves it to the active list first and marks it a moment later.)
    jobs = await harness.jobs()
    key = harness.key("repo#45@aaa")
    await jobs.submit("echo", key, {"tag": key, "value": "late"})
    claimed = await jobs.backend.dequeue(timeout=1)
    assert claimed is not None
    assert claimed.key == key

    await harness.worker(jobs)
    view = await finished(jobs, key, within=20)  # swept: heartbeat (1 s), sweeps, SAQ's abort wait (5 s)

    assert view.state == JobState.DONE
    assert view.result == {"value": "late", "worker": "w1"}
    assert view.attempts == 1
    assert harness.probe.count(key) == 1


# Several workers.


async def test_two_workers_on_separate_connections_never_run_a_job_twice(harness: Harness) -> None:
    producer = await harness.jobs()
    second = await harness.jobs()
    seen: list[tuple[str, str]] = []

    def tasks(worker: str) -> list[Task]:
        async def work(tag: str) -> str:
            seen.append((worker, tag))
            await asyncio.sleep(0.05)
            return worker

        return [Task("work", work)]

    await harness.worker(producer, concurrency=3, tasks=tasks("w1"))
    await harness.worker(second, concurrency=3, tasks=tasks("w2"))
    keys = [harness.key(f"repo#50@{n:03d}") for n in range(40)]

    for key in keys:
        await producer.submit("work", key, {"tag": key})
    views = [await finished(second, key, within=20) for key in keys]

    runs = Counter(tag for _, tag in seen)
    assert {key: runs[key] for key in keys} == dict.fromkeys(keys, 1)
    assert len(seen) == len(keys)
    assert all(view.state == JobState.DONE for view in views)
    assert {view.result for view in views} == {"w1", "w2"}, "both workers took jobs"
    assert {worker for worker, _ in seen} == {"w1", "w2"}


# Shutdown.


async def test_stopping_a_worker_lets_a_running_job_finish_within_the_drain(harness: Harness) -> None:
    jobs = await harness.jobs(replace(POLICY, drain=5))
    await harness.worker(jobs)
    worker, running = harness._workers[-1]
    key = harness.key("repo#90@aaa")
    await jobs.submit("slow", key, {"tag": key, "seconds": 0.5})

    async def is_running() -> bool:
        return await state_of(jobs, key) == JobState.RUNNING

    await until(is_running)
    await worker.stop()
    await asyncio.wait_for(running, WAIT)

    view = await jobs.get(key)
    assert view is not None
    assert (view.state, view.result, view.attempts) == (JobState.DONE, "slept", 1)


async def test_a_job_still_running_after_the_drain_goes_back_to_the_queue(harness: Harness) -> None:
    jobs = await harness.jobs(replace(POLICY, drain=0.3))
    await harness.worker(jobs)
    worker, running = harness._workers[-1]
    key = harness.key("repo#91@aaa")
    await jobs.submit("block", key, {"tag": key})
    await harness.probe.wait_started(key)

    await worker.stop()
    await asyncio.wait_for(running, WAIT)

    assert harness.probe.interrupted == [key]
    view = await jobs.get(key)
    assert view is not None
    assert (view.state, view.attempts) == (JobState.QUEUED, 1), "nothing is lost: it runs again later"
