"""The REST API for IDE clients through the real app, with the embedded SQLite queue and its in-process worker.

The real `review_code` job runs wherever a test needs a review; a gated copy of it (held until the test
opens the gate) or a failing task stands in where a test needs a job that is slow or fails.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from litestar.types import Receive, Scope, Send

from bot.app import MAX_BODY_BYTES, create_app
from bot.chat_review import FAST_NOTE, LANGUAGES, MAX_SOURCE_BYTES
from bot.jobs import Jobs, Task
from bot.jobs.queue import BUSY_RETRY_AFTER_SECONDS
from bot.jobs.tasks import CHAT_KEY_PREFIX, REVIEW_CODE, RULES_SETTING_NOTE, service_tasks
from bot.settings import Settings
from bot.throttle import POLL_RATE_FACTOR, key_identity
from reviewer.engine import RULES_ONLY_NOTE
from tests.conftest import FIXTURES, SettingsFactory

Client = TestClient[Any]

FAST = "/chat?fast=true"
SMELLS = FIXTURES / "kotlin" / "smells"
ANDROID = FIXTURES / "android"
# pending-intent-mutability on line 184; not-null-assertion on 231, 426, 481, 516 (real upstream code).
MUSIC_SERVICE = SMELLS / "pending_intent_flags__googlesamples__android-UniversalMusicPlayer__MusicService.kt"
MUSIC_SERVICE_LINES = [184, 231, 426, 481, 516]
PLAYER_VIEW_MODEL = SMELLS / "not_null_assertion__android__compose-samples__PlayerViewModel.kt"  # line 58
CLEAN_KOTLIN = SMELLS / "ok_collect_as_state__android__nowinandroid__ForYouScreen.kt"
MANIFEST = ANDROID / "smells" / "allow_backup__android__nowinandroid__app__AndroidManifest.xml"
BUILD_GRADLE = ANDROID / "smells" / "minify_disabled_release__android__sunflower__app__build.gradle"
BUILD_GRADLE_KTS = ANDROID / "corpus" / "android__nowinandroid__app__build.gradle.kts"
CATALOG = ANDROID / "corpus" / "android__nowinandroid__libs.versions.toml"

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STATUS_FIELDS = {"job_id", "status", "created_at", "started_at", "finished_at"}
ISSUE_FIELDS = {"line", "end_line", "severity", "category", "rule", "message", "suggestion"}
FINISHED = {"done", "error", "cancelled"}
API_KEY = "ide-plugin-Zq7Lw2Nx8Vb4Kc9M"
OTHER_KEY = "ci-runner-Hd3Fs6Jt1Gy5Pr0W"
HIGH_LIMIT = 1000


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def lines_of(path: Path, first: int, last: int) -> str:
    return "\n".join(text(path).splitlines()[first - 1 : last])


def review_body(path: Path, **fields: str) -> dict[str, str]:
    return {"source_code": text(path), **fields}


def assert_error(response: Any, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}
    assert set(body["error"]) <= {"type", "message", "retry_after"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert body["detail"] == body["error"]["message"]
    return body


def found(response: Any) -> list[tuple[str, int]]:
    return [(issue["rule"], issue["line"]) for issue in response.json()["issues"]]


class Peer:
    """Puts the app behind a given peer address (Litestar's TestClient is always "testclient")."""

    def __init__(self, app: Litestar, host: str) -> None:
        self.app, self.host = app, host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": (self.host, 40000)}
        await self.app(scope, receive, send)


@contextmanager
def serve(settings: Settings, tasks: list[Task] | None = None, *, peer: str | None = None) -> Iterator[Client]:
    app = create_app(settings, tasks=tasks)
    with TestClient(app=app if peer is None else Peer(app, peer), raise_server_exceptions=False) as client:
        yield client


@contextmanager
def gated(settings: Settings) -> Iterator[tuple[Client, threading.Event]]:
    """The app with a `review_code` that waits for the gate, then runs the real review."""
    gate = threading.Event()
    real = service_tasks(settings)[0]

    async def review_code(request: dict[str, Any]) -> Any:
        # The gate is opened from the test's thread; a bound keeps a forgotten gate from hanging the run.
        await asyncio.to_thread(gate.wait, 30)
        return await real.run(request=request)

    with serve(settings, [Task(REVIEW_CODE, review_code)]) as client:
        try:
            yield client, gate
        finally:
            gate.set()


FAILURE = "the parser gave up on line 3"


async def failing_review(request: dict[str, Any]) -> Any:
    raise ValueError(FAILURE)


def jobs_of(client: Client) -> Jobs:
    jobs: Jobs = client.app.state.jobs
    return jobs


def pending(client: Client) -> int:
    return int(client.blocking_portal.call(jobs_of(client).pending))


def status_of(client: Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/chat/status/{job_id}")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    assert set(status) == STATUS_FIELDS
    return status


def wait_for(client: Client, job_id: str, states: set[str], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(client, job_id)
        if status["status"] in states:
            return status
        assert time.monotonic() < deadline, f"job {job_id} is still {status['status']}"
        time.sleep(0.02)


def submit(client: Client, body: dict[str, Any], **headers: str) -> str:
    response = client.post("/chat/submit", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(rate_limit_per_minute=HIGH_LIMIT)


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with serve(settings) as test_client:
        yield test_client


# The fast path


def test_fast_review_of_a_real_file(client: Client) -> None:
    response = client.post(FAST, json=review_body(PLAYER_VIEW_MODEL))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"summary", "issues", "reviewer"}
    assert body["reviewer"] == "rules"
    assert found(response) == [("not-null-assertion", 58)]
    issue = body["issues"][0]
    assert set(issue) == ISSUE_FIELDS
    assert issue["end_line"] == 58
    assert issue["severity"] in {"blocker", "major", "minor", "nit"}
    assert issue["category"]
    assert issue["message"]
    assert body["summary"].startswith("1 issue (1 ")
    assert "Snippet.kt" in body["summary"]
    assert body["summary"].endswith(FAST_NOTE)


def test_fast_review_of_clean_code(client: Client) -> None:
    response = client.post(FAST, json=review_body(CLEAN_KOTLIN))
    assert response.status_code == 200
    assert response.json()["issues"] == []
    assert response.json()["summary"] == f"No issues found in Snippet.kt. {FAST_NOTE}"


def test_fast_never_queues_and_never_calls_the_llm(make_settings: SettingsFactory) -> None:
    # An LLM is configured at a loopback port that records whether anything connects to it.
    with socket.socket() as llm:
        llm.bind(("127.0.0.1", 0))
        llm.listen()
        llm.setblocking(False)
        settings = make_settings(
            rate_limit_per_minute=HIGH_LIMIT,
            openai_api_key="sk-test-not-a-real-key-0000",
            openai_base_url=f"http://127.0.0.1:{llm.getsockname()[1]}/v1",
            chat_timeout_seconds=5,
        )
        with gated(settings) as (client, _gate):
            for path in (MUSIC_SERVICE, PLAYER_VIEW_MODEL, CLEAN_KOTLIN):
                started = time.perf_counter()
                response = client.post(FAST, json=review_body(path))
                elapsed = time.perf_counter() - started
                assert response.status_code == 200
                assert response.json()["summary"].endswith(FAST_NOTE)
                assert response.json()["reviewer"] == "rules"
                # The rules answer in milliseconds; a queued job would wait for the closed gate (5 s).
                assert elapsed < 1.0
            assert pending(client) == 0
            assert client.delete("/chat/jobs/cleanup", params={"ttl": 0}).json() == {"removed": 0}
        with pytest.raises(BlockingIOError):
            llm.accept()


# The full review (/chat), run as a job


def test_chat_runs_the_review_as_a_job(client: Client) -> None:
    fast = client.post(FAST, json=review_body(MUSIC_SERVICE))
    response = client.post("/chat", json=review_body(MUSIC_SERVICE))
    assert response.status_code == 200
    body = response.json()
    assert body["reviewer"] == "rules"
    assert body["issues"] == fast.json()["issues"]
    assert sorted(line for _, line in found(response)) == MUSIC_SERVICE_LINES
    # Which reviewer ran, and why, is said in the summary: no LLM is configured here.
    assert body["summary"].endswith(RULES_ONLY_NOTE)
    time.sleep(0.01)
    assert client.delete("/chat/jobs/cleanup", params={"ttl": 0}).json() == {"removed": 1}


def test_chat_says_when_the_rules_were_chosen(make_settings: SettingsFactory) -> None:
    with serve(make_settings(reviewer="rules")) as client:
        response = client.post("/chat", json=review_body(CLEAN_KOTLIN))
    assert response.status_code == 200
    assert response.json()["summary"] == f"No issues found in Snippet.kt. {RULES_SETTING_NOTE}"


def test_chat_answers_202_when_the_job_outlasts_the_timeout(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_per_minute=HIGH_LIMIT, chat_timeout_seconds=0.3)
    with gated(settings) as (client, gate):
        started = time.monotonic()
        response = client.post("/chat", json=review_body(PLAYER_VIEW_MODEL))
        assert 0.3 <= time.monotonic() - started < 5
        assert response.status_code == 202
        status = response.json()
        assert set(status) == STATUS_FIELDS
        assert JOB_ID.match(status["job_id"])
        assert status["status"] in {"queued", "running"}
        assert status["finished_at"] is None
        location = response.headers["location"]
        assert location == f"/chat/result/{status['job_id']}"

        still = client.get(location)
        assert still.status_code == 202
        assert still.json()["job_id"] == status["job_id"]
        assert still.headers["location"] == location

        gate.set()
        wait_for(client, status["job_id"], FINISHED)
        done = client.get(location)
        assert done.status_code == 200
        assert found(done) == [("not-null-assertion", 58)]


def test_failed_job_is_500_with_the_jobs_message(make_settings: SettingsFactory) -> None:
    with serve(make_settings(rate_limit_per_minute=HIGH_LIMIT), [Task(REVIEW_CODE, failing_review)]) as client:
        response = client.post("/chat", json=review_body(CLEAN_KOTLIN))
        body = assert_error(response, 500, "code_analysis_error")
        assert f"ValueError: {FAILURE}" in body["error"]["message"]
        assert "Traceback" not in response.text

        job_id = submit(client, review_body(CLEAN_KOTLIN))
        status = wait_for(client, job_id, FINISHED)
        assert status["status"] == "error"
        assert status["finished_at"] is not None
        result = client.get(f"/chat/result/{job_id}")
        body = assert_error(result, 500, "code_analysis_error")
        assert body["error"]["message"] == f"Job {job_id} failed: ValueError: {FAILURE}"


def test_cancelled_job_is_500_saying_so(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_per_minute=HIGH_LIMIT, worker_concurrency=1)
    with gated(settings) as (client, _gate):
        first = submit(client, review_body(CLEAN_KOTLIN))
        wait_for(client, first, {"running"})
        second = submit(client, review_body(CLEAN_KOTLIN))
        assert status_of(client, second)["status"] == "queued"
        client.blocking_portal.call(jobs_of(client).cancel, CHAT_KEY_PREFIX + second, "the client went away")
        assert status_of(client, second)["status"] == "cancelled"
        body = assert_error(client.get(f"/chat/result/{second}"), 500, "code_analysis_error")
        assert body["error"]["message"] == f"Job {second} was cancelled: the client went away"


# Submit, status, result


def test_submit_status_result_lifecycle(client: Client) -> None:
    response = client.post("/chat/submit", json=review_body(MUSIC_SERVICE))
    assert response.status_code == 202
    assert set(response.json()) == {"job_id"}
    job_id = response.json()["job_id"]
    assert JOB_ID.match(job_id)
    assert response.headers["location"] == f"/chat/status/{job_id}"

    status = wait_for(client, job_id, FINISHED)
    assert status == {**status, "job_id": job_id, "status": "done"}
    assert status["created_at"] <= status["started_at"] <= status["finished_at"]

    result = client.get(f"/chat/result/{job_id}")
    assert result.status_code == 200
    assert result.json()["issues"] == client.post(FAST, json=review_body(MUSIC_SERVICE)).json()["issues"]
    assert result.json()["summary"].endswith(RULES_ONLY_NOTE)
    # A result can be read again until it is cleaned up.
    assert client.get(f"/chat/result/{job_id}").json() == result.json()


def test_status_and_result_while_queued_and_running(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_per_minute=HIGH_LIMIT, worker_concurrency=1)
    with gated(settings) as (client, gate):
        running = submit(client, review_body(PLAYER_VIEW_MODEL))
        wait_for(client, running, {"running"})
        queued = submit(client, review_body(CLEAN_KOTLIN))

        status = status_of(client, queued)
        assert status["status"] == "queued"
        assert status["started_at"] is None
        assert status["finished_at"] is None
        status = status_of(client, running)
        assert status["started_at"] is not None
        assert status["finished_at"] is None

        for job_id, state in ((queued, "queued"), (running, "running")):
            result = client.get(f"/chat/result/{job_id}")
            assert result.status_code == 202
            assert result.json()["status"] == state
            assert result.headers["location"] == f"/chat/result/{job_id}"

        gate.set()
        for job_id in (running, queued):
            assert wait_for(client, job_id, FINISHED)["status"] == "done"
        assert found(client.get(f"/chat/result/{running}")) == [("not-null-assertion", 58)]
        assert client.get(f"/chat/result/{queued}").json()["issues"] == []


@pytest.mark.parametrize(
    "job_id",
    ["0" * 32, "F" * 32, "abc", "0" * 33, "not-a-job", "%2e%2e", CHAT_KEY_PREFIX + "0" * 32],
)
@pytest.mark.parametrize("route", ["status", "result"])
def test_unknown_or_malformed_job_id_is_404(client: Client, route: str, job_id: str) -> None:
    body = assert_error(client.get(f"/chat/{route}/{job_id}"), 404, "job_not_found")
    assert "No job with id" in body["error"]["message"]


# Refused input: 400, 413, 422 (never 500), and nothing is queued


ROUTES = [FAST, "/chat", "/chat/submit"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("raw", [b'{"source_code": ', b"{'source_code': 'x'}", b"\xff\xfe", b"source_code=x"])
def test_malformed_json_is_400(client: Client, route: str, raw: bytes) -> None:
    response = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"source_code": 3}, "source_code"),
        ({"source_code": "val x = 1", "file_path": ["A.kt"]}, "file_path"),
        ({"source_code": "val x = 1", "language": 7}, "language"),
        ({"source_code": "val x = 1", "code_snippet": {"line": 1}}, "code_snippet"),
        ({}, "source_code"),
        ({"code_snippet": "val x"}, "source_code"),
        ({"source_code": "val x = 1", "model": "gpt-4o"}, "model"),
        ({"source_code": ""}, "source_code"),
        ({"source_code": "val x = 1", "file_path": "a/" * 600 + "A.kt"}, "file_path"),
    ],
    ids=["int", "list", "int-language", "object-snippet", "empty", "missing", "extra", "blank", "long-path"],
)
def test_wrong_fields_are_422_naming_the_field(client: Client, route: str, body: dict[str, Any], named: str) -> None:
    error = assert_error(client.post(route, json=body), 422, "invalid_input")
    assert named in error["error"]["message"]
    assert pending(client) == 0


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [["source_code"], "val x = 1", 42])
def test_a_body_that_is_not_an_object_is_422(client: Client, route: str, body: Any) -> None:
    assert_error(client.post(route, json=body), 422, "invalid_input")


@pytest.mark.parametrize("route", ROUTES)
def test_an_empty_body_is_422_saying_so(client: Client, route: str) -> None:
    error = assert_error(
        client.post(route, content=b"", headers={"content-type": "application/json"}), 422, "invalid_input"
    )
    assert "the request body is empty" in error["error"]["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_language_is_422_naming_the_supported_ones(client: Client, route: str) -> None:
    error = assert_error(
        client.post(route, json={"source_code": "val x = 1", "language": "cobol"}), 422, "invalid_input"
    )
    message = error["error"]["message"]
    assert "cobol" in message
    assert all(language in message for language in LANGUAGES)
    assert pending(client) == 0


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("snippet", "said"),
    [("val track = player!!", "does not occur"), ("  \n ", "blank")],
)
def test_bad_snippet_is_422(client: Client, route: str, snippet: str, said: str) -> None:
    body = review_body(PLAYER_VIEW_MODEL, code_snippet=snippet)
    error = assert_error(client.post(route, json=body), 422, "invalid_input")
    assert "code_snippet" in error["error"]["message"]
    assert said in error["error"]["message"]
    assert pending(client) == 0


@pytest.mark.parametrize("route", ROUTES)
def test_a_file_that_is_not_reviewed_is_422(client: Client, route: str) -> None:
    body = {"source_code": "# Title\n", "file_path": "docs/README.md"}
    error = assert_error(client.post(route, json=body), 422, "invalid_input")
    assert "docs/README.md" in error["error"]["message"]
    assert "language" in error["error"]["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_source_over_the_limit_is_422_naming_it(client: Client, route: str) -> None:
    big = "// " + "x" * MAX_SOURCE_BYTES
    assert len(big) + 100 < MAX_BODY_BYTES
    error = assert_error(client.post(route, json={"source_code": big}), 422, "invalid_input")
    assert str(MAX_SOURCE_BYTES) in error["error"]["message"]
    assert "source_code" in error["error"]["message"]
    assert pending(client) == 0


@pytest.mark.parametrize("route", ROUTES)
def test_body_over_the_cap_is_413(client: Client, route: str) -> None:
    response = client.post(route, json={"source_code": "x" * MAX_BODY_BYTES})
    assert_error(response, 413, "payload_too_large")
    assert pending(client) == 0


ODD_INPUT = [
    b'{"source_code": "val a = \\"\\u0000\\"\\n"}',
    b'{"source_code": "fun f() {", "code_snippet": "fun f() {"}',
    b'{"source_code": "<manifest <<", "language": "xml"}',
    b'{"source_code": "<<<>>>", "file_path": "src/main/AndroidManifest.xml"}',
    b'{"source_code": "[versions\\nx = ", "language": "toml"}',
    b'{"source_code": "val x = 1", "file_path": "C:\\\\proj\\\\app\\\\src\\\\main\\\\A.kt"}',
    b'{"source_code": "val x = 1", "file_path": "../../etc/passwd"}',
    b'{"source_code": "\\ud800"}',
    b'{"source_code": "x", "source_code": "y"}',
    b'{"source_code": null}',
    b"null",
    b"",
]


@pytest.mark.parametrize("route", [FAST, "/chat"])
@pytest.mark.parametrize("raw", ODD_INPUT)
def test_odd_input_never_answers_500(client: Client, route: str, raw: bytes) -> None:
    response = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in {200, 400, 422}, response.text
    if response.status_code != 200:
        assert_error(response, response.status_code, "bad_request" if response.status_code == 400 else "invalid_input")


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_bad_fast_flag_is_422(client: Client, value: str) -> None:
    response = client.post("/chat", params={"fast": value}, json={"source_code": "val x = 1"})
    assert "fast" in assert_error(response, 422, "invalid_input")["error"]["message"]


# Which rules: file_path, language, Kotlin by default


SELECTIONS = [
    pytest.param(PLAYER_VIEW_MODEL, {}, "Snippet.kt", [("not-null-assertion", 58)], id="kotlin-default"),
    pytest.param(
        PLAYER_VIEW_MODEL,
        {"file_path": "app/src/main/java/com/example/PlayerViewModel.kt"},
        "app/src/main/java/com/example/PlayerViewModel.kt",
        [("not-null-assertion", 58)],
        id="kotlin-path",
    ),
    pytest.param(
        PLAYER_VIEW_MODEL,
        {"file_path": "app/src/test/java/com/example/PlayerViewModelTest.kt"},
        "PlayerViewModelTest.kt",
        [],
        id="kotlin-test-source",
    ),
    pytest.param(BUILD_GRADLE, {}, "Snippet.kt", [], id="gradle-as-default-kotlin"),
    pytest.param(
        BUILD_GRADLE, {"file_path": "app/build.gradle"}, "app/build.gradle", [("gradle-release-not-minified", 36)]
    ),
    pytest.param(BUILD_GRADLE, {"language": "gradle"}, "build.gradle", [("gradle-release-not-minified", 36)]),
    pytest.param(BUILD_GRADLE, {"language": "groovy"}, "build.gradle", [("gradle-release-not-minified", 36)]),
    pytest.param(
        BUILD_GRADLE,
        {"file_path": "notes.txt", "language": "gradle"},
        "build.gradle",
        [("gradle-release-not-minified", 36)],
        id="unreviewed-path-then-language",
    ),
    pytest.param(BUILD_GRADLE_KTS, {"file_path": "app/build.gradle.kts"}, "app/build.gradle.kts", []),
    pytest.param(MANIFEST, {}, "Snippet.kt", [], id="manifest-as-default-kotlin"),
    pytest.param(
        MANIFEST,
        {"file_path": "app/src/main/AndroidManifest.xml"},
        "app/src/main/AndroidManifest.xml",
        [("manifest-allow-backup", 20)],
    ),
    pytest.param(MANIFEST, {"language": "manifest"}, "AndroidManifest.xml", [("manifest-allow-backup", 20)]),
    pytest.param(MANIFEST, {"language": "xml"}, "AndroidManifest.xml", [("manifest-allow-backup", 20)]),
    pytest.param(CATALOG, {"language": "version-catalog"}, "gradle/libs.versions.toml", []),
]


@pytest.mark.parametrize(("path", "fields", "reviewed_as", "expected"), SELECTIONS)
def test_file_path_and_language_pick_the_rules(
    client: Client, path: Path, fields: dict[str, str], reviewed_as: str, expected: list[tuple[str, int]]
) -> None:
    response = client.post(FAST, json=review_body(path, **fields))
    assert response.status_code == 200, response.text
    assert found(response) == expected
    assert f"{reviewed_as}. " in response.json()["summary"]


@pytest.mark.parametrize(
    "fields", [{"language": "version-catalog"}, {"language": "toml"}, {"file_path": "gradle/libs.versions.toml"}]
)
def test_a_dynamic_version_in_the_real_catalog(client: Client, fields: dict[str, str]) -> None:
    catalog = text(CATALOG).replace('androidxCore = "1.9.0"', 'androidxCore = "1.+"')
    line = catalog.splitlines().index('androidxCore = "1.+"') + 1
    response = client.post(FAST, json={"source_code": catalog, **fields})
    assert found(response) == [("gradle-dynamic-version", line)]
    assert client.post(FAST, json={"source_code": catalog}).json()["issues"] == []


def test_the_job_reviews_with_the_same_rules(client: Client) -> None:
    for path, fields in (
        (MANIFEST, {"file_path": "src/main/AndroidManifest.xml"}),
        (BUILD_GRADLE, {"language": "gradle"}),
    ):
        fast = client.post(FAST, json=review_body(path, **fields))
        full = client.post("/chat", json=review_body(path, **fields))
        assert full.status_code == 200
        assert full.json()["issues"] == fast.json()["issues"] != []


# Snippet: the whole file is reviewed, the issues inside the snippet are reported


SNIPPETS = [
    pytest.param(lines_of(MUSIC_SERVICE, 229, 233), (229, 233), [231], id="exact"),
    pytest.param(textwrap.dedent(lines_of(MUSIC_SERVICE, 229, 233)), (229, 233), [231], id="dedented"),
    pytest.param(lines_of(MUSIC_SERVICE, 178, 185), (178, 185), [184], id="function-head"),
    pytest.param(lines_of(MUSIC_SERVICE, 420, 520), (420, 520), [426, 481, 516], id="several"),
    pytest.param(lines_of(MUSIC_SERVICE, 186, 200), (187, 200), [], id="none-leading-blank-line"),
]


@pytest.mark.parametrize("route", [FAST, "/chat"])
@pytest.mark.parametrize(("snippet", "lines", "expected"), SNIPPETS)
def test_snippet_narrows_the_issues(
    client: Client, route: str, snippet: str, lines: tuple[int, int], expected: list[int]
) -> None:
    response = client.post(route, json=review_body(MUSIC_SERVICE, code_snippet=snippet))
    assert response.status_code == 200, response.text
    assert [line for _, line in found(response)] == expected
    low, high = lines
    assert all(low <= issue["line"] and issue["end_line"] <= high for issue in response.json()["issues"])
    assert f"Snippet.kt, lines {low}-{high}." in response.json()["summary"]


# Cleanup


def test_cleanup_removes_finished_jobs_older_than_ttl(client: Client) -> None:
    jobs = [submit(client, review_body(path)) for path in (PLAYER_VIEW_MODEL, CLEAN_KOTLIN)]
    for job_id in jobs:
        wait_for(client, job_id, FINISHED)
    time.sleep(0.01)
    assert client.delete("/chat/jobs/cleanup").json() == {"removed": 0}  # the default TTL is an hour
    assert client.delete("/chat/jobs/cleanup", params={"ttl": 3600}).json() == {"removed": 0}
    response = client.delete("/chat/jobs/cleanup", params={"ttl": 0})
    assert response.status_code == 200
    assert response.json() == {"removed": 2}
    for job_id in jobs:
        assert_error(client.get(f"/chat/status/{job_id}"), 404, "job_not_found")
        assert_error(client.get(f"/chat/result/{job_id}"), 404, "job_not_found")
    assert client.delete("/chat/jobs/cleanup", params={"ttl": 0}).json() == {"removed": 0}


def test_cleanup_keeps_unfinished_jobs(make_settings: SettingsFactory) -> None:
    with gated(make_settings(rate_limit_per_minute=HIGH_LIMIT)) as (client, gate):
        job_id = submit(client, review_body(CLEAN_KOTLIN))
        assert client.delete("/chat/jobs/cleanup", params={"ttl": 0}).json() == {"removed": 0}
        assert status_of(client, job_id)["status"] in {"queued", "running"}
        gate.set()
        assert wait_for(client, job_id, FINISHED)["status"] == "done"


@pytest.mark.parametrize("ttl", ["-1", "soon", "1.5", str(10 * 365 * 86400 + 1)])
def test_cleanup_refuses_a_bad_ttl(client: Client, ttl: str) -> None:
    error = assert_error(client.delete("/chat/jobs/cleanup", params={"ttl": ttl}), 422, "invalid_input")
    assert "ttl" in error["error"]["message"]


# Capacity: MAX_CONCURRENT_JOBS


def test_503_server_busy_at_capacity(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_per_minute=HIGH_LIMIT, max_concurrent_jobs=2, worker_concurrency=1)
    with gated(settings) as (client, gate):
        running = submit(client, review_body(CLEAN_KOTLIN))
        queued = submit(client, review_body(CLEAN_KOTLIN))
        for route in ("/chat/submit", "/chat"):
            response = client.post(route, json=review_body(CLEAN_KOTLIN))
            body = assert_error(response, 503, "server_busy")
            assert body["error"]["retry_after"] == BUSY_RETRY_AFTER_SECONDS
            assert response.headers["retry-after"] == str(BUSY_RETRY_AFTER_SECONDS)
            assert "MAX_CONCURRENT_JOBS" in body["error"]["message"]
        assert pending(client) == 2
        # The rules-only path queues nothing, so it still answers.
        assert client.post(FAST, json=review_body(CLEAN_KOTLIN)).status_code == 200

        gate.set()
        for job_id in (running, queued):
            wait_for(client, job_id, FINISHED)
        assert client.post("/chat", json=review_body(CLEAN_KOTLIN)).status_code == 200


# Rate limits


def assert_limited(response: Any) -> int:
    body = assert_error(response, 429, "rate_limit_exceeded")
    retry_after = body["error"]["retry_after"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60
    assert response.headers["retry-after"] == str(retry_after)
    return retry_after


def test_review_routes_share_one_limit(make_settings: SettingsFactory) -> None:
    with serve(make_settings(rate_limit_per_minute=3)) as client:
        assert client.post(FAST, json=review_body(CLEAN_KOTLIN)).status_code == 200
        assert client.post("/chat", json=review_body(CLEAN_KOTLIN)).status_code == 200
        assert client.post("/chat/submit", json=review_body(CLEAN_KOTLIN)).status_code == 202
        for route in ROUTES:
            response = client.post(route, json=review_body(CLEAN_KOTLIN))
            assert_limited(response)
            assert "3 review requests per minute" in response.json()["error"]["message"]
        # Refused requests count too: the limit is checked before the body is read.
        assert_limited(client.post(FAST, content=b"{", headers={"content-type": "application/json"}))


def test_polls_have_their_own_larger_budget(make_settings: SettingsFactory) -> None:
    with serve(make_settings(rate_limit_per_minute=1)) as client:
        job_id = submit(client, review_body(CLEAN_KOTLIN))
        assert_limited(client.post(FAST, json=review_body(CLEAN_KOTLIN)))
        budget = POLL_RATE_FACTOR * 1
        polls = [client.get(f"/chat/status/{job_id}") for _ in range(budget - 2)]
        polls.append(client.get(f"/chat/result/{'0' * 32}"))
        polls.append(client.delete("/chat/jobs/cleanup"))
        assert [r.status_code for r in polls] == [200] * (budget - 2) + [404, 200]
        for response in (
            client.get(f"/chat/status/{job_id}"),
            client.get(f"/chat/result/{job_id}"),
            client.delete("/chat/jobs/cleanup"),
        ):
            retry_after = assert_limited(response)
            assert f"{budget} poll requests per minute" in response.json()["error"]["message"]
            assert retry_after > 50  # the window opened moments ago


def test_health_routes_are_never_limited(make_settings: SettingsFactory) -> None:
    with serve(make_settings(rate_limit_per_minute=1)) as client:
        assert client.post(FAST, json=review_body(CLEAN_KOTLIN)).status_code == 200
        assert_limited(client.post(FAST, json=review_body(CLEAN_KOTLIN)))
        for _ in range(3 * POLL_RATE_FACTOR):
            for route in ("/healthz", "/readyz", "/"):
                assert client.get(route).status_code == 200
        assert client.get("/schema/openapi.json").status_code == 200


# The client's address behind proxies


def fast_from(client: Client, forwarded_for: str | None, **headers: str) -> int:
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return int(client.post(FAST, json={"source_code": "val x = 1"}, headers=headers).status_code)


@pytest.mark.parametrize("allow", ["127.0.0.1", "10.0.0.0/8, 2001:db8::/32"])
def test_forwarded_for_is_ignored_from_an_untrusted_peer(make_settings: SettingsFactory, allow: str) -> None:
    with serve(make_settings(rate_limit_per_minute=2, forwarded_allow_ips=allow)) as client:
        statuses = [fast_from(client, ip) for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3")]
    # The peer ("testclient") is not a trusted proxy: one client, whatever the header says.
    assert statuses == [200, 200, 429]


def test_forwarded_for_is_honoured_from_a_trusted_peer(make_settings: SettingsFactory) -> None:
    with serve(make_settings(rate_limit_per_minute=2, forwarded_allow_ips="*")) as client:
        first = [fast_from(client, "198.51.100.1") for _ in range(3)]
        second = [fast_from(client, "198.51.100.2") for _ in range(2)]
        no_header = [client.post(FAST, json={"source_code": "val x = 1"}).status_code for _ in range(3)]
    assert first == [200, 200, 429]
    assert second == [200, 200]
    assert no_header == [200, 200, 429]


def test_a_client_cannot_escape_the_limit_by_forging_hops(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_per_minute=2, forwarded_allow_ips="10.0.0.0/8")
    with serve(settings, peer="10.0.0.5") as client:
        # Whatever the client puts left of it, the proxy appended the address it saw: 198.51.100.1.
        forged = [fast_from(client, f"203.0.113.{n}, 198.51.100.1") for n in range(3)]
        other = fast_from(client, "198.51.100.2, 10.0.0.9")
    assert forged == [200, 200, 429]
    assert other == 200


# API keys


def keyed(make_settings: SettingsFactory, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"api_keys": f"{API_KEY}, {OTHER_KEY}", "rate_limit_per_minute": HIGH_LIMIT}
    return make_settings(**{**values, **overrides})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CHAT_REQUESTS = [
    ("post", FAST),
    ("post", "/chat"),
    ("post", "/chat/submit"),
    ("get", f"/chat/status/{'0' * 32}"),
    ("get", f"/chat/result/{'0' * 32}"),
    ("delete", "/chat/jobs/cleanup"),
]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key-0000000000",
        f"Basic {API_KEY}",
        f"Token {API_KEY}",
        f"Bearer {API_KEY[:-1]}",
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY.lower()}",
        f"Bearer {API_KEY},{OTHER_KEY}",
        API_KEY,
    ],
)
def test_chat_routes_need_a_valid_key(make_settings: SettingsFactory, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with serve(keyed(make_settings)) as client:
        for method, path in CHAT_REQUESTS:
            response = client.request(method, path, headers=headers, json={"source_code": "val x = 1"})
            body = assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == 'Bearer realm="ai-dev-companion"'
            assert "Authorization: Bearer" in body["error"]["message"]
            assert API_KEY not in response.text
        assert pending(client) == 0


def test_valid_keys_are_accepted(make_settings: SettingsFactory) -> None:
    with serve(keyed(make_settings)) as client:
        for key in (API_KEY, OTHER_KEY):
            assert client.post(FAST, json={"source_code": "val x = 1"}, headers=bearer(key)).status_code == 200
        # The scheme is case-insensitive (RFC 9110); surrounding spaces do not matter.
        for value in (f"bearer {API_KEY}", f"BEARER  {API_KEY} "):
            response = client.post(FAST, json={"source_code": "val x = 1"}, headers={"Authorization": value})
            assert response.status_code == 200
        job_id = submit(client, {"source_code": "val x = 1"}, **bearer(API_KEY))
        assert wait_for_keyed(client, job_id)["status"] == "done"
        assert client.get(f"/chat/result/{job_id}", headers=bearer(OTHER_KEY)).status_code == 200


def wait_for_keyed(client: Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status: dict[str, Any] = client.get(f"/chat/status/{job_id}", headers=bearer(API_KEY)).json()
        if status["status"] in FINISHED or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def test_health_and_docs_need_no_key(make_settings: SettingsFactory) -> None:
    with serve(keyed(make_settings)) as client:
        for route in ("/healthz", "/readyz", "/", "/schema/openapi.json"):
            assert client.get(route).status_code == 200


def test_the_limit_applies_per_key(make_settings: SettingsFactory) -> None:
    with serve(keyed(make_settings, rate_limit_per_minute=2, forwarded_allow_ips="*")) as client:
        mine = [fast_from(client, "198.51.100.1", **bearer(API_KEY)) for _ in range(2)]
        # The same key from another address: still the same client.
        moved = fast_from(client, "198.51.100.2", **bearer(API_KEY))
        # Another key from the first address: another client.
        other = [fast_from(client, "198.51.100.1", **bearer(OTHER_KEY)) for _ in range(3)]
    assert mine == [200, 200]
    assert moved == 429
    assert other == [200, 200, 429]


def test_failed_attempts_are_limited_per_address(make_settings: SettingsFactory) -> None:
    with serve(keyed(make_settings, rate_limit_per_minute=2)) as client:
        guesses = [fast_from(client, None, **bearer(f"guess-{n:020d}")) for n in range(3)]
        # A valid key is counted on its own, not on the address that guessed.
        valid = fast_from(client, None, **bearer(API_KEY))
    assert guesses == [401, 401, 429]
    assert valid == 200


def test_keys_never_reach_the_logs_or_the_limiter(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-live-Wr0ngButRealLooking9876"
    with caplog.at_level(logging.DEBUG), serve(keyed(make_settings)) as client:
        assert client.post(FAST, json={"source_code": "val x = 1"}, headers=bearer(API_KEY)).status_code == 200
        assert client.post("/chat", json={"source_code": "val x = 1"}, headers=bearer(API_KEY)).status_code == 200
        assert client.post(FAST, json={"source_code": "val x = 1"}, headers=bearer(wrong)).status_code == 401
        assert client.get("/nowhere", headers=bearer(API_KEY)).status_code == 404
        stored = " ".join(str(name) for name in client.app.state.limiter_storage.events)
    assert caplog.records, "the requests were logged"
    logged = "\n".join(f"{record.getMessage()} {record.__dict__} {record.exc_text or ''}" for record in caplog.records)
    for secret in (API_KEY, wrong):
        assert secret not in logged
        assert secret not in stored
    assert key_identity(API_KEY) in stored


# OpenAPI


CHAT_OPERATIONS = {
    ("post", "/chat"): ({200, 202}, {400, 401, 413, 422, 429, 500, 503}),
    ("post", "/chat/submit"): ({202}, {400, 401, 413, 422, 429, 503}),
    ("get", "/chat/status/{job_id}"): ({200}, {401, 404, 429}),
    ("get", "/chat/result/{job_id}"): ({200, 202}, {401, 404, 429, 500}),
    ("delete", "/chat/jobs/cleanup"): ({200}, {401, 422, 429}),
}
ERROR_BODY = "#/components/schemas/ErrorBody"


@pytest.fixture
def openapi(client: Client) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_openapi_documents_every_route(client: Client, openapi: dict[str, Any]) -> None:
    documented = {(method, path) for path, item in openapi["paths"].items() for method in item}
    served = {
        (method.lower(), route.path_format)
        for route in client.app.routes
        if not route.path.startswith("/schema")
        for method in getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}
    }
    assert served == documented
    assert set(CHAT_OPERATIONS) <= documented
    assert {("get", "/healthz"), ("get", "/readyz"), ("get", "/")} <= documented


@pytest.mark.parametrize(("method", "path"), list(CHAT_OPERATIONS))
def test_openapi_lists_each_chat_routes_errors_with_the_error_body(
    openapi: dict[str, Any], method: str, path: str
) -> None:
    operation = openapi["paths"][path][method]
    successes, errors = CHAT_OPERATIONS[(method, path)]
    responses = {int(code): response for code, response in operation["responses"].items()}
    assert successes <= set(responses)
    assert errors <= set(responses)
    for code, response in responses.items():
        if code >= 400:
            assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_BODY}, code
            assert response["description"]


def test_openapi_documents_the_bodies(openapi: dict[str, Any]) -> None:
    for path in ("/chat", "/chat/submit"):
        body = openapi["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    schemas = openapi["components"]["schemas"]
    request = schemas["ChatRequest"]
    assert set(request["properties"]) == {"source_code", "code_snippet", "file_path", "language"}
    assert request["required"] == ["source_code"]
    assert set(schemas["Issue"]["properties"]) == ISSUE_FIELDS
    assert set(schemas["ChatResponse"]["properties"]) == {"summary", "issues", "reviewer"}
    assert set(schemas["JobStatus"]["properties"]) == STATUS_FIELDS
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    assert set(schemas["ErrorInfo"]["properties"]) == {"type", "message", "retry_after"}
    parameters = {p["name"]: p for p in openapi["paths"]["/chat"]["post"]["parameters"]}
    assert parameters["fast"]["schema"]["type"] == "boolean"
    parameters = {p["name"]: p for p in openapi["paths"]["/chat/jobs/cleanup"]["delete"]["parameters"]}
    assert parameters["ttl"]["schema"]["type"] == "integer"


def test_real_answers_match_the_documented_schemas(make_settings: SettingsFactory) -> None:
    """Each status a chat route actually answered with is documented, and the body fits its schema."""
    settings = make_settings(rate_limit_per_minute=3, max_concurrent_jobs=1, chat_timeout_seconds=0.2)
    with gated(settings) as (client, gate):
        document = client.get("/schema/openapi.json").json()
        answers: list[tuple[str, str, Any]] = []

        def record(method: str, path: str, response: Any) -> Any:
            answers.append((method, path, response))
            return response

        running = record("post", "/chat", client.post("/chat", json=review_body(PLAYER_VIEW_MODEL))).json()["job_id"]
        record("post", "/chat/submit", client.post("/chat/submit", json=review_body(CLEAN_KOTLIN)))
        record("post", "/chat", client.post(FAST, content=b"{", headers={"content-type": "application/json"}))
        record("post", "/chat", client.post(FAST, json={"source_code": 1}))
        record("get", "/chat/result/{job_id}", client.get(f"/chat/result/{running}"))
        record("get", "/chat/status/{job_id}", client.get(f"/chat/status/{running}"))
        record("get", "/chat/status/{job_id}", client.get(f"/chat/status/{'0' * 32}"))
        gate.set()
        wait_for(client, running, FINISHED)
        record("get", "/chat/result/{job_id}", client.get(f"/chat/result/{running}"))
        record("delete", "/chat/jobs/cleanup", client.delete("/chat/jobs/cleanup", params={"ttl": 0}))
        record("delete", "/chat/jobs/cleanup", client.delete("/chat/jobs/cleanup", params={"ttl": -5}))
        record("post", "/chat/submit", client.post("/chat/submit", json=review_body(CLEAN_KOTLIN)))
        record("post", "/chat", client.post(FAST, json=review_body(CLEAN_KOTLIN)))

    statuses = {(method, path, response.status_code) for method, path, response in answers}
    assert {s for *_, s in statuses} >= {200, 202, 400, 404, 422, 429, 503}
    for method, path, response in answers:
        documented = document["paths"][path][method]["responses"]
        assert str(response.status_code) in documented, (method, path, response.status_code)
        schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": document["components"]})
