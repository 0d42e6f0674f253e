"""The queue through real processes: `serve` with its in-process workers (embedded SQLite), and `serve` +
`python -m bot worker` over Redis. Reviews are real Kotlin from tests/fixtures (see SOURCES.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import FIXTURES
from tests.e2e.conftest import ROOT, clean_environ, serve

SMELLY = (FIXTURES / "kotlin" / "smells").glob("*.kt")
SOURCE = next(path for path in sorted(SMELLY) if not path.name.startswith("ok_")).read_text(encoding="utf-8")


def _wait_done(base: str, job_id: str, seconds: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/chat/status/{job_id}", timeout=5).json()
        if status["status"] in ("done", "error", "cancelled"):
            return dict(status)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {seconds} s")


def test_make_run_defaults_serve_jobs_that_survive_a_kill(tmp_path: Path) -> None:
    # The defaults of `make run`: embedded queue at data/jobs.sqlite3 under the working directory.
    env = clean_environ(RATE_LIMIT_PER_MINUTE="100")
    with serve(env, tmp_path) as (base, process):
        submitted = httpx.post(f"{base}/chat/submit", json={"source_code": SOURCE}, timeout=10)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        assert _wait_done(base, job_id)["status"] == "done"
        result = httpx.get(f"{base}/chat/result/{job_id}", timeout=5)
        assert result.status_code == 200
        assert result.json()["issues"], "the smell fixture has findings"
        synchronous = httpx.post(f"{base}/chat", json={"source_code": SOURCE}, timeout=30)
        assert synchronous.status_code == 200
        assert synchronous.json()["issues"] == result.json()["issues"]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert (tmp_path / "data" / "jobs.sqlite3").is_file()

    with serve(env, tmp_path) as (base, _):
        again = httpx.get(f"{base}/chat/result/{job_id}", timeout=5)
        assert again.status_code == 200, "a finished result outlives the process within its TTL"
        assert again.json() == result.json()


@pytest.fixture
def clean_reviews_queue(redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)

    def flush() -> None:
        for pattern in ("saq:reviews:*", "saq:job:reviews:*"):
            keys = list(client.scan_iter(match=pattern))
            if keys:
                client.delete(*keys)

    flush()
    yield redis_url
    flush()
    client.close()


@pytest.mark.redis
def test_web_replica_enqueues_and_a_worker_process_runs_the_job(tmp_path: Path, clean_reviews_queue: str) -> None:
    env = clean_environ(QUEUE_URL=clean_reviews_queue, RATE_LIMIT_PER_MINUTE="100", LOG_FORMAT="json")
    with serve(env, tmp_path) as (base, _):
        submitted = httpx.post(f"{base}/chat/submit", json={"source_code": SOURCE}, timeout=10)
        assert submitted.status_code == 202
        job_id = submitted.json()["job_id"]
        time.sleep(0.5)
        assert httpx.get(f"{base}/chat/status/{job_id}", timeout=5).json()["status"] == "queued", (
            "in the Redis mode the web process runs no jobs"
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker"],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert _wait_done(base, job_id)["status"] == "done"
            assert httpx.get(f"{base}/chat/result/{job_id}", timeout=5).json()["reviewer"] == "rules"
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(timeout=20)
            finally:
                if worker.poll() is None:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.wait()
            output = worker.stdout.read() if worker.stdout else ""
            if worker.stdout:
                worker.stdout.close()
    assert code == 0, output
