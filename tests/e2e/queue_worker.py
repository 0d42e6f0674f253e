"""A worker process for the crash tests (tests/e2e/test_queue_crash.py).

    python -m tests.e2e.queue_worker <queue_url> <queue_name> <marker_dir> [--concurrency N]

Runs two tasks with a short :data:`POLICY` until SIGTERM/SIGINT (or SIGKILL, which is the point):

- ``hang(tag)`` writes ``<marker_dir>/<tag>.started.<pid>``; on the first run of a tag it then sleeps for
  :data:`HANG_SECONDS` (the test kills the process meanwhile), on a later run it returns at once.
- ``note(tag)`` writes ``<marker_dir>/<tag>.ran.<pid>`` and returns.

Both return ``{"pid": <this process>, "tag": tag}``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from bot.jobs import JobPolicy, Jobs, Task, build_worker

POLICY = JobPolicy(
    timeout=60,
    result_ttl=600,
    attempts=3,
    retry_delay=0.1,
    retry_max_delay=0.5,
    heartbeat=1,
    sweep_every=1,
    poll_interval=0.05,
    drain=0,  # the tests SIGKILL or SIGTERM these workers; a hung job is not waited for
)
HANG_SECONDS = 120

log = logging.getLogger("queue_worker")


def started_marker(markers: Path, tag: str, pid: int) -> Path:
    return markers / f"{tag}.started.{pid}"


def ran_marker(markers: Path, tag: str, pid: int) -> Path:
    return markers / f"{tag}.ran.{pid}"


def tasks(markers: Path) -> list[Task]:
    pid = os.getpid()

    def first_start(tag: str) -> bool:
        earlier = list(markers.glob(f"{tag}.started.*"))
        started_marker(markers, tag, pid).touch()
        return not earlier

    async def hang(tag: str) -> dict[str, Any]:
        if await asyncio.to_thread(first_start, tag):
            log.info("hang %s: first run, sleeping", tag)
            await asyncio.sleep(HANG_SECONDS)
        return {"pid": pid, "tag": tag}

    async def note(tag: str) -> dict[str, Any]:
        await asyncio.to_thread(ran_marker(markers, tag, pid).touch)
        return {"pid": pid, "tag": tag}

    return [Task("hang", hang), Task("note", note)]


async def run(url: str, name: str, markers: Path, concurrency: int) -> None:
    jobs = Jobs.from_url(url, POLICY, capacity=1000, name=name)
    await jobs.connect()
    try:
        worker = build_worker(jobs, tasks(markers), concurrency=concurrency, embedded=False)
        log.info("worker %d on %s (%s)", os.getpid(), jobs.where, name)
        await worker.start()  # until SIGINT/SIGTERM
    finally:
        await jobs.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.queue_worker")
    parser.add_argument("queue_url")
    parser.add_argument("queue_name")
    parser.add_argument("marker_dir", type=Path)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    asyncio.run(run(args.queue_url, args.queue_name, args.marker_dir, args.concurrency))


if __name__ == "__main__":
    main()
