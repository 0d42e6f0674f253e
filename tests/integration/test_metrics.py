"""Observability: `GET /metrics` after real activity (signed deliveries through the real pull-review job against
the strict fake GitHub, the chat API, its limit), the job counters on both queue backends, the GitHub client's
counters, the worker's own metrics endpoint, and the JSON log lines that follow one delivery to its review.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot.api.webhooks import WEBHOOK_PATH, signature
from bot.app import create_app
from bot.github import client as client_module
from bot.github.client import GitHubApp, GitHubRateLimited, github_errors
from bot.jobs import Jobs, build_worker
from bot.jobs.tasks import CHAT_KEY_PREFIX, REVIEW_CODE
from bot.metrics import Metrics, serve_metrics
from bot.settings import Settings
from reviewer.crew import Usage
from tests.conftest import FIXTURES, SettingsFactory, captured_logs
from tests.e2e.conftest import ROOT, clean_environ, free_port
from tests.fakes.github import FakeGitHub
from tests.integration.test_github_client import token_response
from tests.integration.test_pull_review import (
    BASE_SHA,
    GALLERY,
    GALLERY_DIFF,
    GALLERY_SOURCE,
    HEAD,
    INSTALLATION,
    KEY,
    NUMBER,
    OWNER,
    REPO,
    SECRET,
    github_files,
    pull_request_event,
    reviews,
)
from tests.integration.test_queue_contract import POLICY, Harness

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SNIPPET = {"source_code": "fun main() { GlobalScope.launch { } }"}
KOTLIN = FIXTURES / "kotlin" / "smells" / "not_null_assertion__android__compose-samples__PlayerViewModel.kt"


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient[Litestar]) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= series)


def wait_until(condition: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def signed(event: str, payload: dict[str, Any], delivery: str, *, secret: str = SECRET) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature(secret.encode(), body),
        "Content-Type": "application/json",
    }
    return {"content": body, "headers": headers}


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub(app_id=4242)
    github.add_installation(INSTALLATION)
    github.add_repo(
        OWNER,
        REPO,
        installation_id=INSTALLATION,
        default_branch="main",
        files={HEAD: {GALLERY: GALLERY_SOURCE.read_bytes()}},
    )
    github.add_pull(OWNER, REPO, NUMBER, head_sha=HEAD, base_sha=BASE_SHA, files=github_files(GALLERY_DIFF))
    with github.mock():
        yield github


@pytest.fixture
def settings(make_settings: SettingsFactory, fake: FakeGitHub) -> Settings:
    return make_settings(
        github_app_id=4242,
        github_private_key=KEY,
        github_webhook_secret=SECRET,
        github_api_url=fake.base_url,
        rate_limit_per_minute=3,
    )


# --- /metrics after real activity -----------------------------------------------------------------------------


def test_metrics_answer_prometheus_text_with_every_series(client: TestClient[Litestar]) -> None:
    samples = scrape(client)
    names = {name for name, _ in samples}
    assert value(samples, "companion_queue_up") == 1
    assert value(samples, "companion_jobs", state="queued") == 0
    assert value(samples, "companion_jobs", state="running") == 0
    assert value(samples, "companion_queue_depth") == 0
    assert value(samples, "companion_queue_capacity") == 100
    assert {"companion_build_info", "process_cpu_seconds_total"} <= names
    # OpenMetrics when the scraper asks for it.
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


def test_metrics_move_with_deliveries_chat_calls_limits_and_jobs(settings: Settings, fake: FakeGitHub) -> None:
    opened = pull_request_event("opened", HEAD)
    with TestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        before = scrape(client)
        assert client.post(WEBHOOK_PATH, **signed("pull_request", opened, "d-1")).status_code == 202
        wait_until(lambda: len(reviews(fake)) == 1)
        # GitHub's redelivery, a forged signature, a body that is not JSON, an event this App does not expect.
        assert client.post(WEBHOOK_PATH, **signed("pull_request", opened, "d-1")).json()["ignored"]
        assert client.post(WEBHOOK_PATH, **signed("pull_request", opened, "d-2", secret="wrong")).status_code == 401
        bad = signed("pull_request", opened, "d-3")
        bad["content"] = b"{not json"
        bad["headers"]["X-Hub-Signature-256"] = signature(SECRET.encode(), bad["content"])
        assert client.post(WEBHOOK_PATH, **bad).status_code == 400
        assert client.post(WEBHOOK_PATH, **signed("deployment", {"action": "created"}, "d-4")).status_code == 202
        # The chat API: a fast call, a full one (a job), a fast one, then the fourth is over the limit of 3.
        assert client.post("/chat?fast=true", json=SNIPPET).status_code == 200
        assert client.post("/chat", json=SNIPPET).status_code == 200
        assert client.post("/chat?fast=true", json=SNIPPET).status_code == 200
        assert client.post("/chat?fast=true", json=SNIPPET).status_code == 429
        wait_until(lambda: value(scrape(client), "companion_jobs_in_progress", function="review_pull_request") == 0)
        after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    deliveries = "companion_webhook_deliveries_total"
    assert moved(deliveries, event="pull_request", outcome="queued") == 1
    assert moved(deliveries, event="pull_request", outcome="duplicate") == 1
    assert moved(deliveries, event="pull_request", outcome="refused") == 1
    assert moved(deliveries, event="pull_request", outcome="bad_request") == 1
    assert moved(deliveries, event="other", outcome="ignored") == 1  # `deployment`: bounded to `other`
    assert moved("companion_rate_limited_total", limit="review") == 1
    assert moved("companion_job_duration_seconds_count", function="review_pull_request", outcome="done") == 1
    assert moved("companion_job_duration_seconds_count", function="review_code", outcome="done") == 1
    assert moved("companion_pull_reviews_total", outcome="posted") == 1
    # The job's GitHub calls: the token (201), reads (200), the missing .github/ai-review.yml (404), the review.
    requests = "companion_github_requests_total"
    assert moved(requests, method="POST", code="201", status_class="2xx") >= 2  # the token and the check run
    assert moved(requests, method="GET", code="200", status_class="2xx") >= 4
    assert moved(requests, method="GET", code="404", status_class="4xx") == 1
    assert total(after, requests) == len(fake.requests)
    assert value(after, "companion_jobs", state="running") == 0
    assert value(after, "companion_queue_depth") == 0
    # Nothing identifies a repository, a pull request or a delivery in any label.
    every_label_value = {v for _, series in after for _, v in series}
    assert not {OWNER, REPO, f"{OWNER}/{REPO}", HEAD, str(NUMBER), "d-1"} & every_label_value


def test_the_metrics_route_is_never_limited_and_quiet_in_the_access_log(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(app=create_app(make_settings(rate_limit_per_minute=1)), raise_server_exceptions=False) as client:
        caplog.set_level(logging.INFO, logger="bot.access")
        assert all(client.get("/metrics").status_code == 200 for _ in range(5))
        assert client.get("/healthz").status_code == 200
    logged = [record.getMessage() for record in caplog.records if record.name == "bot.access"]
    assert [line for line in logged if "/metrics" in line] == []
    assert any("/healthz" in line for line in logged)


class FakeLLM:
    """An LLM reviewer at the engine's seam that finds nothing and reports, per chunk, what a real API bills."""

    model = "gpt-4o-mini"

    def __init__(self) -> None:
        self.chunks = 0

    async def review(self, item: Any) -> tuple[list[Any], Usage]:
        del item
        self.chunks += 1
        return [], Usage(prompt_tokens=1200, completion_tokens=80, calls=2)


def test_llm_usage_is_counted_by_model(make_settings: SettingsFactory) -> None:
    from bot.jobs.tasks import service_tasks  # noqa: PLC0415

    settings = make_settings()
    metrics, llm = Metrics(), FakeLLM()
    tasks = service_tasks(settings, llm=llm, metrics=metrics)  # type: ignore[arg-type]
    with TestClient(app=create_app(settings, tasks=tasks, metrics=metrics), raise_server_exceptions=False) as client:
        answer = client.post("/chat", json={"source_code": KOTLIN.read_text(encoding="utf-8")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["reviewer"] == "crew"
        samples = scrape(client)
    chunks = llm.chunks
    assert chunks >= 1
    assert value(samples, "companion_llm_reviews_total", model="gpt-4o-mini", complete="true") == 1
    assert value(samples, "companion_llm_calls_total", model="gpt-4o-mini") == 2 * chunks
    assert value(samples, "companion_llm_prompt_tokens_total", model="gpt-4o-mini") == 1200 * chunks
    assert value(samples, "companion_llm_completion_tokens_total", model="gpt-4o-mini") == 80 * chunks
    # gpt-4o-mini: $0.15 / $0.60 per million tokens.
    cost = value(samples, "companion_llm_cost_dollars_total", model="gpt-4o-mini")
    assert cost == pytest.approx(chunks * (1200 * 0.15 + 80 * 0.60) / 1_000_000)


# --- jobs on both backends ------------------------------------------------------------------------------------


@pytest.fixture
async def harness(queue_url: str) -> AsyncIterator[Harness]:
    opened = Harness(queue_url)
    try:
        yield opened
    finally:
        await opened.close()


async def run_worker(jobs: Jobs, harness: Harness, metrics: Metrics) -> tuple[Any, asyncio.Task[None]]:
    worker = build_worker(jobs, harness.probe.tasks(), concurrency=1, embedded=True, metrics=metrics)
    return worker, asyncio.create_task(worker.start())


async def stop_worker(worker: tuple[Any, asyncio.Task[None]]) -> None:
    await worker[0].stop()
    await asyncio.wait_for(worker[1], 10)


async def test_job_runs_are_timed_by_function_and_outcome_and_the_queue_is_counted(harness: Harness) -> None:
    metrics = Metrics()
    jobs = await harness.jobs(capacity=10)
    key = harness.key
    worker = await run_worker(jobs, harness, metrics)
    try:
        await jobs.submit("echo", key("echo"), {"tag": key("echo"), "value": 1})
        await jobs.submit("broken", key("broken"), {"tag": key("broken")})
        await jobs.submit("flaky", key("flaky"), {"tag": key("flaky"), "failures": 1})
        for name in ("echo", "broken", "flaky"):
            assert (await jobs.wait(key(name), 15)).finished  # type: ignore[union-attr]
        # One worker slot: a blocking job runs, the next one waits.
        await jobs.submit("block", key("b1"), {"tag": key("b1")})
        await harness.probe.wait_started(key("b1"))
        await jobs.submit("echo", key("queued"), {"tag": key("queued"), "value": 2})
        counts = await jobs.counts()
        assert (counts.queued, counts.running, counts.pending) == (1, 1, 2)
        samples = parse(metrics.exposition()[0].decode())
        assert value(samples, "companion_jobs_in_progress", function="block") == 1
        await jobs.cancel(key("b1"))
        assert (await jobs.wait(key("queued"), 15)).finished  # type: ignore[union-attr]
    finally:
        await stop_worker(worker)
    # Out of time (JOB_TIMEOUT_SECONDS), in a queue of its own with a one-second policy.
    short = Harness(harness.url)
    try:
        jobs = await short.jobs(replace(POLICY, timeout=1))
        worker = await run_worker(jobs, short, metrics)
        await jobs.submit("slow", short.key("slow"), {"tag": short.key("slow"), "seconds": 5})
        assert (await jobs.wait(short.key("slow"), 15)).finished  # type: ignore[union-attr]
        await stop_worker(worker)
    finally:
        await short.close()

    samples = parse(metrics.exposition()[0].decode())
    count = "companion_job_duration_seconds_count"
    assert value(samples, count, function="echo", outcome="done") == 2
    assert value(samples, count, function="broken", outcome="error") == 1
    assert value(samples, count, function="flaky", outcome="retry") == 1
    assert value(samples, count, function="flaky", outcome="done") == 1
    assert value(samples, count, function="block", outcome="cancelled") == 1
    assert value(samples, count, function="slow", outcome="timeout") == 1
    assert value(samples, "companion_job_duration_seconds_sum", function="slow", outcome="timeout") >= 1
    assert value(samples, "companion_jobs_in_progress", function="block") == 0


# --- the GitHub client ----------------------------------------------------------------------------------------

BASE = "https://github.test/api/v3"


async def test_github_answers_network_errors_and_rate_limits_are_counted(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RETRY_BACKOFF", (0.001, 0.001, 0.001))
    metrics = Metrics()
    settings = make_settings(github_app_id=1, github_private_key=KEY, github_api_url=BASE)
    router = respx.MockRouter(base_url=BASE, assert_all_mocked=True)
    router.post(path__regex=r"/app/installations/\d+/access_tokens").mock(side_effect=token_response)
    limited = httpx.Response(429, headers={"retry-after": "0"}, json={"message": "secondary rate limit"})
    router.get("/repos/acme/app/pulls/7").mock(
        side_effect=[limited, httpx.ConnectError("refused"), httpx.Response(200, json={"number": 7})]
    )
    router.get("/repos/acme/app/pulls/8").respond(403, headers={"retry-after": "600"}, json={"message": "secondary"})
    async with GitHubApp(settings, transport=httpx.MockTransport(router.async_handler), metrics=metrics) as app:
        gh = await app.installation(1)
        await gh.rest.pulls.async_get("acme", "app", 7)
        with pytest.raises(GitHubRateLimited), github_errors():
            await gh.rest.pulls.async_get("acme", "app", 8)

    samples = parse(metrics.exposition()[0].decode())
    requests = "companion_github_requests_total"
    assert value(samples, requests, method="POST", code="201", status_class="2xx") == 1
    assert value(samples, requests, method="GET", code="429", status_class="4xx") == 1
    assert value(samples, requests, method="GET", code="network_error", status_class="network_error") == 1
    assert value(samples, requests, method="GET", code="200", status_class="2xx") == 1
    assert value(samples, requests, method="GET", code="403", status_class="4xx") == 1
    limits = "companion_github_rate_limited_total"
    assert value(samples, limits, kind="secondary", outcome="retried") == 1
    assert value(samples, limits, kind="secondary", outcome="gave_up") == 1


# --- the worker's own endpoint --------------------------------------------------------------------------------


def test_the_worker_metrics_server_serves_its_registry_and_stops() -> None:
    metrics = Metrics()
    metrics.rejected("installation")
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "companion_rate_limited_total", limit="installation") == 1
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


@pytest.mark.slow
def test_python_m_bot_worker_serves_metrics_on_its_port_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = clean_environ(
        PYTHONPATH=str(ROOT),
        QUEUE_URL=f"sqlite:///{tmp_path}/jobs.sqlite3",
        WORKER_METRICS_PORT=str(port),
        WORKER_METRICS_HOST="127.0.0.1",
        LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the worker's metrics endpoint did not come up"
                time.sleep(0.1)
        assert response.status_code == 200
        assert "companion_build_info" in response.text
        assert "companion_queue_up" not in response.text  # the web replicas report the shared queue
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_worker_metrics_port_in_use_stops_the_worker_with_a_message(tmp_path: Path) -> None:
    metrics = Metrics()
    taken = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        env = clean_environ(
            QUEUE_URL=f"sqlite:///{tmp_path}/jobs.sqlite3", WORKER_METRICS_PORT=str(taken.port), PYTHONPATH=str(ROOT)
        )
        result = subprocess.run(
            [sys.executable, "-m", "bot", "worker"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        taken.stop()
    assert result.returncode == 2
    assert f"WORKER_METRICS_PORT: cannot listen on 127.0.0.1:{taken.port}" in result.stderr


# --- one delivery, followed in the JSON logs ------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with captured_logs(secrets=[SECRET, KEY]) as stream:
        yield stream


def test_one_delivery_is_followed_by_its_ids_from_the_webhook_to_the_posted_review(
    settings: Settings, fake: FakeGitHub, json_log: io.StringIO
) -> None:
    payload = pull_request_event("opened", HEAD)
    delivery = f"delivery-{uuid.uuid4().hex[:8]}"
    secret_source = 'val token = "' + "x" * 12 + '"  // unique-marker-' + uuid.uuid4().hex
    with TestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        answer = client.post(WEBHOOK_PATH, **signed("pull_request", payload, delivery))
        assert answer.status_code == 202, answer.text
        request_id = answer.headers["x-request-id"]
        wait_until(lambda: len(reviews(fake)) == 1)
        # A chat job that fails: SAQ logs it, and the log must not carry the job's whole source file.
        jobs: Jobs = client.app.state.jobs
        key = CHAT_KEY_PREFIX + uuid.uuid4().hex
        client.blocking_portal.call(
            jobs.submit, REVIEW_CODE, key, {"request": {"source_code": secret_source, "language": "cobol"}}
        )
        wait_until(lambda: (view := client.blocking_portal.call(jobs.get, key)) is not None and view.finished)
        wait_until(lambda: "Error processing" in json_log.getvalue())

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [line for line in lines if line.get("delivery") == delivery]
    expected = {
        "delivery": delivery,
        "installation": str(INSTALLATION),
        "repo": f"{OWNER}/{REPO}",
        "pr": str(NUMBER),
        "request_id": request_id,
    }
    webhook = [line for line in mine if line["logger"] == "bot.webhooks"]
    assert webhook, mine
    assert all(line.items() >= {**expected, "event": "pull_request"}.items() for line in webhook)
    job_key = f"{OWNER}/{REPO}#{NUMBER}@{HEAD}"
    job_lines = [line for line in mine if line.get("job") == job_key]
    assert {line["logger"] for line in job_lines} >= {"saq"}  # SAQ's own "Processing" and "Finished" lines too
    assert any(line["msg"].startswith("Finished") for line in job_lines)
    assert all(line.items() >= expected.items() for line in job_lines)
    # Every line of the job, whoever wrote it, is there: nothing about this PR is logged without its ids.
    about_the_pr = [line for line in lines if job_key in line["msg"]]
    assert about_the_pr
    assert all(line.get("delivery") == delivery for line in about_the_pr)
    # The failed chat job is logged with its key, abridged: no payload, no source.
    text = json_log.getvalue()
    failed = [line for line in lines if line.get("job") == key and line["msg"].startswith("Error processing")]
    assert failed, [line for line in lines if line.get("job") == key]
    assert "unique-marker-" not in text
    assert payload["pull_request"]["body"] not in text
    assert SECRET not in text
    assert KEY.splitlines()[1] not in text


def test_the_metrics_are_per_app(make_settings: SettingsFactory) -> None:
    first, second = create_app(make_settings()), create_app(make_settings(rate_limit_per_minute=1))
    with TestClient(app=first) as one, TestClient(app=second) as two:
        two.post("/chat?fast=true", json=SNIPPET)
        two.post("/chat?fast=true", json=SNIPPET)
        assert value(scrape(two), "companion_rate_limited_total", limit="review") == 1
        assert value(scrape(one), "companion_rate_limited_total", limit="review") == 0
