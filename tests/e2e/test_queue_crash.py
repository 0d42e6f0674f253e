"""Crash recovery with real processes: a worker killed with SIGKILL in the middle of a job.

The job stops heartbeating; a sweep in another worker process (embedded: the restarted process on the same
SQLite file; Redis: another worker) takes it as crashed and runs it again, and every job that was queued
behind it still runs, exactly once. Workers are `python -m tests.e2e.queue_worker` (see that module).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.jobs import Jobs, JobState, JobView
from tests.e2e.conftest import ROOT, clean_environ
from tests.e2e.queue_worker import POLICY, ran_marker, started_marker

pytestmark = pytest.mark.slow

WORKER = (sys.executable, "-m", "tests.e2e.queue_worker")
QUEUED_BEHIND = 4
START_SECONDS = 30  # a worker process imports the service and claims its first job within this
RECOVERY_SECONDS = 30  # heartbeat (1 s) + sweep tick (1 s) + SAQ's wait for an abort (5 s) + retry, with room


class Workers:
    """Worker processes of one test, all on one queue; every one is killed at the end."""

    def __init__(self, url: str, name: str, root: Path) -> None:
        self.url, self.name, self.root = url, name, root
        self.markers = root / "markers"
        self.markers.mkdir()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        log = self.root / f"worker-{len(self.processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*WORKER, self.url, self.name, str(self.markers), "--concurrency", str(concurrency)],
                env=clean_environ(PYTHONPATH=str(ROOT)),
                cwd=self.root,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- worker {n} (pid {process.pid}, exit {process.poll()}):\n"
            + (self.root / f"worker-{n}.log").read_text(errors="replace")[-4000:]
            for n, process in enumerate(self.processes)
        )

    async def wait_for_marker(self, marker: Path, process: subprocess.Popen[bytes]) -> None:
        for _ in range(START_SECONDS * 20):
            if await asyncio.to_thread(marker.exists):
                return
            assert process.poll() is None, f"worker exited early\n{self.logs()}"
            await asyncio.sleep(0.05)
        pytest.fail(f"{marker.name} did not appear within {START_SECONDS} s\n{self.logs()}")

    def ran(self, tag: str) -> list[str]:
        return sorted(path.name for path in self.markers.glob(f"{tag}.ran.*"))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def worker_processes(url: str, name: str, root: Path) -> Iterator[Workers]:
    workers = Workers(url, name, root)
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
async def queue(queue_url: str) -> AsyncIterator[Jobs]:
    jobs = Jobs.from_url(queue_url, POLICY, capacity=1000, name=f"crash-{uuid.uuid4().hex[:12]}")
    await jobs.connect()
    try:
        yield jobs
    finally:
        await jobs.close()
        if queue_url.startswith("redis"):
            import redis.asyncio as aioredis  # noqa: PLC0415 - only the Redis runs need it

            client = aioredis.from_url(queue_url)
            try:
                name = jobs.backend.name
                for pattern in (f"saq:{name}:*", f"saq:job:{name}:*", f"saq:abort:{name}/*"):
                    keys = [key async for key in client.scan_iter(match=pattern)]
                    if keys:
                        await client.delete(*keys)
            finally:
                await client.aclose()


def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


async def finished(jobs: Jobs, key: str, workers: Workers) -> JobView:
    view = await jobs.wait(key, RECOVERY_SECONDS)
    assert view is not None, f"job {key} disappeared\n{workers.logs()}"
    assert view.finished, f"job {key} still {view.state} after {RECOVERY_SECONDS} s\n{workers.logs()}"
    return view


def keys_of(jobs: Jobs) -> tuple[str, dict[str, str]]:
    """The hanging job's key and the queued ones' (tag -> key). The owner is the queue's unique name, so that
    SAQ's per-key abort marker in Redis (`saq:abort:<key>`, not per queue) never meets another test's."""
    owner = jobs.backend.name
    return f"{owner}/repo#1@aaa", {f"note-{n}": f"{owner}/repo#{n + 2}@bbb" for n in range(QUEUED_BEHIND)}


async def state(jobs: Jobs, key: str) -> JobState:
    view = await jobs.get(key)
    assert view is not None, f"job {key} does not exist"
    return view.state


async def test_a_restarted_worker_finishes_the_killed_job_and_everything_queued(
    queue: Jobs, queue_url: str, tmp_path: Path
) -> None:
    hang, behind = keys_of(queue)
    await queue.submit("hang", hang, {"tag": "hang"})
    with worker_processes(queue_url, queue.backend.name, tmp_path) as workers:
        first = workers.start(concurrency=1)
        await workers.wait_for_marker(started_marker(workers.markers, "hang", first.pid), first)
        for tag, key in behind.items():
            await queue.submit("note", key, {"tag": tag})
        assert await state(queue, hang) == JobState.RUNNING
        await asyncio.sleep(0.5)  # the worker is busy: what came after stays queued
        assert [await state(queue, key) for key in behind.values()] == [JobState.QUEUED] * QUEUED_BEHIND

        kill(first)
        assert await state(queue, hang) == JobState.RUNNING, "nobody knows yet"
        assert await queue.pending() == 1 + QUEUED_BEHIND
        second = workers.start(concurrency=1)

        done = await finished(queue, hang, workers)
        assert done.state == JobState.DONE, f"{done}\n{workers.logs()}"
        assert done.result == {"pid": second.pid, "tag": "hang"}
        assert done.attempts == 2
        for tag, key in behind.items():
            view = await finished(queue, key, workers)
            assert view.state == JobState.DONE, f"{view}\n{workers.logs()}"
            assert view.result == {"pid": second.pid, "tag": tag}
            assert workers.ran(tag) == [ran_marker(workers.markers, tag, second.pid).name], "ran exactly once"
        assert await queue.pending() == 0


async def test_a_live_worker_takes_over_the_job_of_a_killed_one(queue: Jobs, queue_url: str, tmp_path: Path) -> None:
    hang, behind = keys_of(queue)
    await queue.submit("hang", hang, {"tag": "hang"})
    with worker_processes(queue_url, queue.backend.name, tmp_path) as workers:
        doomed = workers.start(concurrency=1)
        await workers.wait_for_marker(started_marker(workers.markers, "hang", doomed.pid), doomed)
        survivor = workers.start(concurrency=2)
        for tag, key in behind.items():
            await queue.submit("note", key, {"tag": tag})
        await workers.wait_for_marker(ran_marker(workers.markers, "note-0", survivor.pid), survivor)

        kill(doomed)
        done = await finished(queue, hang, workers)

        assert done.state == JobState.DONE, f"{done}\n{workers.logs()}"
        assert done.result == {"pid": survivor.pid, "tag": "hang"}
        assert done.attempts == 2
        assert sorted(path.name for path in workers.markers.glob("hang.started.*")) == sorted(
            [f"hang.started.{doomed.pid}", f"hang.started.{survivor.pid}"]
        )
        for tag, key in behind.items():
            assert (await finished(queue, key, workers)).result == {"pid": survivor.pid, "tag": tag}
            assert len(workers.ran(tag)) == 1, f"{tag} ran exactly once"
        assert await queue.pending() == 0
        assert survivor.poll() is None, "the survivor is still serving"
