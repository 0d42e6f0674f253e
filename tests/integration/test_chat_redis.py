"""The chat API with Redis: the web app only enqueues and a separate worker runs the jobs; replicas that share
RATE_LIMIT_STORAGE_URI share one limit.

Isolation in the shared Redis: every test uses its own client address (X-Forwarded-For, trusted with
FORWARDED_ALLOW_IPS="*") or API key, and deletes the job and limiter keys it created, nothing else, so
it can run beside other suites that use the same database and queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from bot.app import create_app
from bot.chat_review import FAST_NOTE
from bot.jobs import Jobs, build_worker
from bot.jobs.queue import QUEUE_NAME
from bot.jobs.tasks import CHAT_KEY_PREFIX, service_tasks
from bot.settings import Settings
from bot.throttle import key_identity
from reviewer.engine import RULES_ONLY_NOTE
from tests.conftest import FIXTURES, SettingsFactory

pytestmark = pytest.mark.redis

Client = TestClient[Any]

FAST = "/chat?fast=true"
# pending-intent-mutability on line 184; not-null-assertion on 231, 426, 481, 516 (real upstream code).
MUSIC_SERVICE = (
    FIXTURES
    / "kotlin"
    / "smells"
    / ("pending_intent_flags__googlesamples__android-UniversalMusicPlayer__MusicService.kt")
)
PLAYER_VIEW_MODEL = FIXTURES / "kotlin" / "smells" / "not_null_assertion__android__compose-samples__PlayerViewModel.kt"
FINISHED = {"done", "error", "cancelled"}


def review_body(path: Path, **fields: str) -> dict[str, str]:
    return {"source_code": path.read_text(encoding="utf-8"), **fields}


def unique_address() -> str:
    """A client address no other test (or earlier run within the limiter's window) has used."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}::{uuid.uuid4().hex[:4]}"


class RedisState:
    """Deletes what a test created in the shared Redis: its jobs and its limiter windows."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.job_ids: list[str] = []
        self.identities: list[str] = []

    def job_key(self, job_id: str) -> str:
        return f"saq:job:{QUEUE_NAME}:{CHAT_KEY_PREFIX}{job_id}"

    def clean(self) -> None:
        for job_id in self.job_ids:
            key = self.job_key(job_id)
            self.client.delete(key)
            self.client.zrem(f"saq:{QUEUE_NAME}:incomplete", key)
            for name in ("queued", "active"):
                self.client.lrem(f"saq:{QUEUE_NAME}:{name}", 0, key)
        for identity in self.identities:
            stale = list(self.client.scan_iter(match=f"*{identity}*"))
            if stale:
                self.client.delete(*stale)

    def all_keys(self) -> str:
        return " ".join(key.decode() for key in self.client.scan_iter(match="*"))


@pytest.fixture
def state(redis_url: str) -> Iterator[RedisState]:
    tracked = RedisState(redis_url)
    try:
        yield tracked
    finally:
        tracked.clean()
        tracked.client.close()


@contextmanager
def worker_for(settings: Settings) -> Iterator[None]:
    """A worker process's work (`python -m bot worker`), on its own event loop in a thread."""
    ready = threading.Event()
    loop: asyncio.AbstractEventLoop | None = None
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def run() -> None:
        nonlocal loop, stop
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        jobs = Jobs.from_settings(settings)
        await jobs.connect()
        worker = build_worker(jobs, service_tasks(settings), concurrency=2, embedded=True)
        started = asyncio.create_task(worker.start())
        ready.set()
        try:
            await stop.wait()
        finally:
            await worker.stop()
            await started
            await jobs.close()

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # reported by the test thread below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="test-worker", daemon=True)
    thread.start()
    assert ready.wait(10), "the worker did not start"
    assert not failure, failure
    try:
        yield
    finally:
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop"
        assert not failure, failure


@pytest.fixture
def redis_settings(make_settings: SettingsFactory, redis_url: str) -> Settings:
    return make_settings(
        queue_url=redis_url, rate_limit_per_minute=1000, forwarded_allow_ips="*", chat_timeout_seconds=10
    )


def status_of(client: Client, job_id: str, address: str) -> dict[str, Any]:
    response = client.get(f"/chat/status/{job_id}", headers={"X-Forwarded-For": address})
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def wait_finished(client: Client, job_id: str, address: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(client, job_id, address)
        if status["status"] in FINISHED:
            return status
        assert time.monotonic() < deadline, f"job {job_id} is still {status['status']}"
        time.sleep(0.05)


def test_the_web_app_enqueues_and_the_worker_runs_the_job(redis_settings: Settings, state: RedisState) -> None:
    address = unique_address()
    headers = {"X-Forwarded-For": address}
    with TestClient(app=create_app(redis_settings), raise_server_exceptions=False) as client:
        assert client.get("/readyz").json()["checks"]["queue"] == "ok"
        expected = client.post(FAST, json=review_body(MUSIC_SERVICE), headers=headers).json()["issues"]

        response = client.post("/chat/submit", json=review_body(MUSIC_SERVICE), headers=headers)
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        state.job_ids.append(job_id)
        assert response.headers["location"] == f"/chat/status/{job_id}"
        assert state.client.exists(state.job_key(job_id))

        # No worker yet: the web process only enqueues.
        time.sleep(0.5)
        assert status_of(client, job_id, address)["status"] == "queued"
        pending = client.get(f"/chat/result/{job_id}", headers=headers)
        assert pending.status_code == 202
        assert pending.json()["status"] == "queued"
        assert pending.headers["location"] == f"/chat/result/{job_id}"

        with worker_for(redis_settings):
            status = wait_finished(client, job_id, address)
            assert status["status"] == "done"
            assert status["created_at"] <= status["started_at"] <= status["finished_at"]
            result = client.get(f"/chat/result/{job_id}", headers=headers)
            assert result.status_code == 200
            assert result.json()["issues"] == expected
            assert sorted(issue["line"] for issue in expected) == [184, 231, 426, 481, 516]
            assert result.json()["summary"].endswith(RULES_ONLY_NOTE)

            # /chat waits for the worker's answer.
            full = client.post("/chat", json=review_body(MUSIC_SERVICE, code_snippet="newPlayer = if"), headers=headers)
            assert full.status_code == 200, full.text
            assert [(i["rule"], i["line"]) for i in full.json()["issues"]] == [("not-null-assertion", 231)]

        time.sleep(0.01)
        removed = client.delete("/chat/jobs/cleanup", params={"ttl": 0}, headers=headers)
        assert removed.status_code == 200
        assert removed.json()["removed"] >= 2  # ours, and any other finished chat job in this database
        gone = client.get(f"/chat/result/{job_id}", headers=headers)
        assert gone.status_code == 404
        assert gone.json()["error"]["type"] == "job_not_found"
    assert not state.client.exists(state.job_key(job_id))


def test_chat_answers_202_until_a_worker_takes_the_job(
    make_settings: SettingsFactory, redis_url: str, state: RedisState
) -> None:
    settings = make_settings(
        queue_url=redis_url,
        rate_limit_per_minute=1000,
        forwarded_allow_ips="*",
        chat_timeout_seconds=0.3,
    )
    address = unique_address()
    headers = {"X-Forwarded-For": address}
    with TestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/chat", json=review_body(PLAYER_VIEW_MODEL), headers=headers)
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        state.job_ids.append(job_id)
        assert response.json()["status"] == "queued"
        location = response.headers["location"]
        assert location == f"/chat/result/{job_id}"

        with worker_for(settings):
            wait_finished(client, job_id, address)
        result = client.get(location, headers=headers)
        assert result.status_code == 200
        assert [(i["rule"], i["line"]) for i in result.json()["issues"]] == [("not-null-assertion", 58)]


# Two replicas, one limit


@contextmanager
def two_replicas(make_settings: SettingsFactory, tmp_path: Path, **overrides: Any) -> Iterator[tuple[Client, Client]]:
    values: dict[str, Any] = {"rate_limit_per_minute": 3, "forwarded_allow_ips": "*", **overrides}
    first = make_settings(queue_url=f"sqlite:///{tmp_path}/first.sqlite3", **values)
    second = make_settings(queue_url=f"sqlite:///{tmp_path}/second.sqlite3", **values)
    with (
        TestClient(app=create_app(first), raise_server_exceptions=False) as one,
        TestClient(app=create_app(second), raise_server_exceptions=False) as two,
    ):
        yield one, two


def alternate(replicas: tuple[Client, Client], count: int, headers: dict[str, str]) -> list[Any]:
    body = {"source_code": "val x = 1\n"}
    return [replicas[n % 2].post(FAST, json=body, headers=headers) for n in range(count)]


def test_replicas_share_one_limit_per_address(
    make_settings: SettingsFactory, tmp_path: Path, redis_url: str, state: RedisState
) -> None:
    address = unique_address()
    state.identities.append(f"ip:{address}")
    with two_replicas(make_settings, tmp_path, rate_limit_storage_uri=redis_url) as replicas:
        answers = alternate(replicas, 5, {"X-Forwarded-For": address})
        # Another client is not affected.
        other = unique_address()
        state.identities.append(f"ip:{other}")
        assert replicas[1].post(FAST, json={"source_code": "x"}, headers={"X-Forwarded-For": other}).status_code == 200
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    for limited in answers[3:]:
        body = limited.json()
        assert body["error"]["type"] == "rate_limit_exceeded"
        assert 1 <= body["error"]["retry_after"] <= 60
        assert limited.headers["retry-after"] == str(body["error"]["retry_after"])
    assert answers[0].json()["summary"].endswith(FAST_NOTE)


def test_replicas_with_memory_storage_count_apart(make_settings: SettingsFactory, tmp_path: Path) -> None:
    # The control for the test above: without a shared storage each replica allows the full limit.
    with two_replicas(make_settings, tmp_path, rate_limit_storage_uri="memory://") as replicas:
        answers = alternate(replicas, 6, {"X-Forwarded-For": unique_address()})
    assert [r.status_code for r in answers] == [200] * 6


def test_replicas_share_one_limit_per_key(
    make_settings: SettingsFactory, tmp_path: Path, redis_url: str, state: RedisState
) -> None:
    key = f"ide-{uuid.uuid4().hex}"
    state.identities.append(key_identity(key))
    with two_replicas(make_settings, tmp_path, rate_limit_storage_uri=redis_url, api_keys=key) as replicas:
        # The same key from a new address on each request: the limit follows the key.
        answers = [
            replicas[n % 2].post(
                FAST,
                json={"source_code": "val x = 1\n"},
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": unique_address()},
            )
            for n in range(4)
        ]
        stored = state.all_keys()
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert key_identity(key) in stored
    assert key not in stored
