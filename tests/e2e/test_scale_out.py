"""Scale-out on Redis, proved with processes: two `python -m bot serve` replicas and two `python -m bot worker`
processes share the CI Redis (queue, delivery ids, installation limit); GitHub is the strict fake served on
127.0.0.1. The same deliveries go to both replicas, with redeliveries and several pushes to one PR; the fake
GitHub then shows exactly one review per PR head, none for superseded heads, and the installation's limit held
across both workers. Then a worker is killed with SIGKILL in the middle of a review (another worker finishes
it, once), and a worker stopped with SIGTERM finishes its running review before it exits 0.

Reviews are rules only (no LLM) so that workers start in a second; the slow review for the kill and the drain
comes from the fake GitHub answering the files of that PR late. Every wait is bounded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bot.github.publish import THROTTLED_TITLE
from tests.e2e.conftest import ROOT, clean_environ
from tests.e2e.test_github_app import APP_ID, SECRET, deliver, key_pair, serve_bot, tail
from tests.fakes.github import FakeGitHub
from tests.fakes.github_server import FakeGitHubServer, serve_fake_github
from tests.integration.test_pull_review import (
    BASE_SHA,
    GALLERY,
    GALLERY_DIFF,
    GALLERY_SOURCE,
    INSTALLATION,
    OWNER,
    REPO,
    github_files,
    pull_request_event,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PRS = range(101, 107)  # six pull requests; #101 gets three pushes
LIMIT = 5  # INSTALLATION_RATE_LIMIT per hour: one of the six final heads is throttled
WITHIN = 40.0  # seconds for the deliveries to become reviews
CRASH_WITHIN = 60.0  # a killed worker's job: heartbeat (15 s) + sweep + SAQ's abort wait, then a new run
REDIS_PATTERNS = ("saq:*reviews*", "companion:*", "LIMITS*")


def head(number: int, push: int = 0) -> str:
    return f"{number:04d}{push:02d}".ljust(40, "a")


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The CI Redis without this service's keys, before and after (queue, delivery ids, limits, LLM cache)."""
    client = redis.Redis.from_url(redis_url)

    def flush() -> None:
        for pattern in REDIS_PATTERNS:
            keys = list(client.scan_iter(match=pattern))
            if keys:
                client.delete(*keys)

    flush()
    yield redis_url
    flush()
    client.close()


def environ(redis_url: str, github: FakeGitHubServer, private_key: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_environ(
        QUEUE_URL=redis_url,
        RATE_LIMIT_STORAGE_URI=redis_url,
        INSTALLATION_RATE_LIMIT=f"{LIMIT}/hour",
        GITHUB_APP_ID=str(APP_ID),
        GITHUB_PRIVATE_KEY=private_key,
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_API_URL=github.base_url,
        REVIEWER="rules",
        HOME=str(tmp_path),
        NO_PROXY="127.0.0.1,localhost",
        **extra,
    )
    env.pop("REDIS_URL", None)
    return env


@contextmanager
def worker(env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """`python -m bot worker`, output in `log`; killed at the end if still running."""
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker"],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def wait_for(github: FakeGitHubServer, done: Callable[[FakeGitHub], bool], within: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + within
    while not github.read(done):
        if time.monotonic() > deadline:
            raise AssertionError("timed out; the logs end with:\n" + "\n\n".join(tail(log, 25) for log in logs))
        time.sleep(0.1)


def completed_reviews(fake: FakeGitHub) -> dict[int, list[str]]:
    """PR number -> the heads of its posted (non-pending) reviews."""
    return {
        number: [r["commit_id"] for r in found if r["state"] != "PENDING"]
        for (_, _, number), found in fake.reviews.items()
    }


def set_up(github: FakeGitHubServer) -> None:
    def build(fake: FakeGitHub) -> None:
        fake.add_installation(INSTALLATION)
        sources = {head(n, p): {GALLERY: GALLERY_SOURCE.read_bytes()} for n in PRS for p in range(3)}
        fake.add_repo(OWNER, REPO, installation_id=INSTALLATION, files=sources)
        for number in PRS:
            fake.add_pull(
                OWNER, REPO, number, head_sha=head(number), base_sha=BASE_SHA, files=github_files(GALLERY_DIFF)
            )

    github.read(build)


def event(number: int, action: str, sha: str) -> dict[str, Any]:
    payload = pull_request_event(action, sha)
    payload["number"] = number
    payload["pull_request"]["number"] = number
    return payload


def test_replicas_and_workers_on_redis_review_each_head_once(tmp_path: Path, clean_redis: str) -> None:
    private_key, public_key = key_pair()
    with serve_fake_github(app_id=APP_ID, public_key=public_key) as github, ExitStack() as stack:
        set_up(github)
        env = environ(clean_redis, github, private_key, tmp_path)
        logs = [tmp_path / name for name in ("web-1.log", "web-2.log", "worker-1.log", "worker-2.log")]
        webs = [stack.enter_context(serve_bot(env, tmp_path, log))[0] for log in logs[:2]]
        clients = [stack.enter_context(httpx.Client(base_url=base, timeout=10, trust_env=False)) for base in webs]
        # PR #101 is pushed to twice before any worker runs: its first two heads are superseded.
        github.read(lambda fake: fake.move_head(OWNER, REPO, 101, head(101, 2)))
        deliveries = [(101, "synchronize", head(101, p), f"d-101-{p}") for p in range(3)]
        deliveries += [(n, "opened", head(n), f"d-{n}") for n in PRS if n != 101]
        answers = []
        for number, action, sha, delivery in deliveries:
            for client in clients:  # the same delivery to both replicas, then a redelivery to the first
                answers.append(deliver(client, "pull_request", event(number, action, sha), delivery).json())
            answers.append(deliver(clients[0], "pull_request", event(number, action, sha), delivery).json())
        queued = [a for a in answers if "queued" in a]
        assert len(queued) == len(deliveries), answers  # each delivery taken once, by one replica
        assert sum(1 for a in answers if "already received" in a.get("ignored", "")) == 2 * len(deliveries)

        for log in logs[2:]:
            stack.enter_context(worker(env, tmp_path, log))

        def settled(fake: FakeGitHub) -> bool:
            finished = [c for c in fake.check_runs.values() if c["status"] == "completed"]
            return len(finished) == len(PRS)

        wait_for(github, settled, WITHIN, logs)
        time.sleep(1.0)  # anything late (a duplicate) would arrive now
        found = github.read(completed_reviews)
        checks = github.read(lambda fake: list(fake.check_runs.values()))

    reviewed = {number: heads for number, heads in found.items() if heads}
    throttled = [c for c in checks if c["output"]["title"] == THROTTLED_TITLE]
    assert len(reviewed) == LIMIT, found  # the limit held across the two workers...
    assert len(throttled) == len(PRS) - LIMIT  # ...and the rest were told when to come back
    for number, heads in reviewed.items():
        expected = head(number, 2) if number == 101 else head(number)
        assert heads == [expected], (number, heads)  # one review per PR head; superseded heads none
    assert not any(c["head_sha"] in (head(101, 0), head(101, 1)) for c in checks)


def test_a_worker_killed_mid_review_is_replaced_and_the_review_arrives_once(tmp_path: Path, clean_redis: str) -> None:
    private_key, public_key = key_pair()
    with serve_fake_github(app_id=APP_ID, public_key=public_key) as github, ExitStack() as stack:
        set_up(github)
        github.delay = {rf"/repos/{OWNER}/{REPO}/pulls/102/files": 3.0}  # the review sits in its files request
        env = environ(clean_redis, github, private_key, tmp_path)
        logs = [tmp_path / name for name in ("web.log", "worker-1.log", "worker-2.log")]
        base, _ = stack.enter_context(serve_bot(env, tmp_path, logs[0]))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10, trust_env=False))
        first = stack.enter_context(worker(env, tmp_path, logs[1]))
        assert "queued" in deliver(client, "pull_request", event(102, "opened", head(102)), "d-kill").json()

        def reading_files(fake: FakeGitHub) -> bool:
            return any(r.path.endswith("/pulls/102/files") for r in fake.requests)

        wait_for(github, reading_files, WITHIN, logs)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        github.delay = {}
        stack.enter_context(worker(env, tmp_path, logs[2]))

        def reviewed(fake: FakeGitHub) -> bool:
            return bool(completed_reviews(fake).get(102))

        wait_for(github, reviewed, CRASH_WITHIN, logs)
        time.sleep(1.0)
        found = github.read(completed_reviews)
        runs = github.read(lambda fake: [dict(run) for run in fake.check_runs.values()])
    assert found[102] == [head(102)]
    # The new attempt took over the check run the killed worker had started: one run, completed.
    assert [(run["head_sha"], run["status"]) for run in runs] == [(head(102), "completed")]


def test_a_worker_stopped_with_sigterm_finishes_its_review_first(tmp_path: Path, clean_redis: str) -> None:
    private_key, public_key = key_pair()
    with serve_fake_github(app_id=APP_ID, public_key=public_key) as github, ExitStack() as stack:
        set_up(github)
        github.delay = {rf"/repos/{OWNER}/{REPO}/pulls/103/files": 3.0}
        env = environ(clean_redis, github, private_key, tmp_path)
        logs = [tmp_path / "web.log", tmp_path / "worker.log"]
        base, _ = stack.enter_context(serve_bot(env, tmp_path, logs[0]))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10, trust_env=False))
        running = stack.enter_context(worker(env, tmp_path, logs[1]))
        assert "queued" in deliver(client, "pull_request", event(103, "opened", head(103)), "d-term").json()
        wait_for(github, lambda fake: any(r.path.endswith("/pulls/103/files") for r in fake.requests), WITHIN, logs)
        running.send_signal(signal.SIGTERM)
        code = running.wait(timeout=30)  # the drain (20 s) is longer than what is left of the review
        found = github.read(completed_reviews)
    assert code == 0, tail(logs[1])
    assert found.get(103) == [head(103)]  # finished before the worker exited
