"""`POST /api/github/webhooks` with GitHub's own example payloads (tests/fixtures/webhooks, from
@octokit/webhooks-examples), signed as GitHub signs them. The review job is replaced by a recorder: these tests
are about intake (verify, decide, remember the delivery, enqueue), never about GitHub or the LLM."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from bot.api.webhooks import (
    BAD_SIGNATURE,
    MAX_DELIVERY_BYTES,
    MISSING_SIGNATURE,
    NOT_CONFIGURED,
    WEBHOOK_PATH,
    signature,
)
from bot.app import create_app
from bot.jobs import Task
from bot.jobs.deliveries import Deliveries
from bot.jobs.queue import JobPolicy, Jobs
from bot.jobs.tasks import REVIEW_PULL_REQUEST
from tests.conftest import FIXTURES, SettingsFactory

SECRET = "It's a Secret to Everybody"  # GitHub's own example secret (docs: validating webhook deliveries)
WEBHOOKS = FIXTURES / "webhooks"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"  # pull_request.head.sha of the examples
PR_KEY = f"Codertocat/Hello-World#2@{HEAD}"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def review_comment(body: str, **comment: Any) -> dict[str, Any]:
    """issue_comment.created, made a comment on a pull request (the examples only comment on plain issues)."""
    payload = example("issue_comment.created")
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
    payload["comment"]["body"] = body
    payload["comment"].update(comment)
    return payload


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def run(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"recorded": True}

    def wait(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.calls


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def github(make_settings: SettingsFactory, recorder: Recorder) -> Iterator[TestClient[Litestar]]:
    app = create_app(make_settings(github_webhook_secret=SECRET), tasks=[Task(REVIEW_PULL_REQUEST, recorder.run)])
    with TestClient(app=app, raise_server_exceptions=False) as client:
        yield client


def deliver(
    client: TestClient[Litestar],
    event: str,
    payload: Any,
    *,
    delivery: str | None = None,
    secret: str | None = SECRET,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    sent = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    if secret is not None:
        sent["X-Hub-Signature-256"] = signature(secret.encode(), body)
    sent.update(headers or {})
    return client.post(WEBHOOK_PATH, content=body, headers=sent)


def test_githubs_documented_signature_example() -> None:
    # docs.github.com, "Validating webhook deliveries": this secret and payload give this signature.
    assert signature(SECRET.encode(), b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_an_opened_pull_request_is_queued_once_per_head(github: TestClient[Litestar], recorder: Recorder) -> None:
    answer = deliver(github, "pull_request", example("pull_request.opened"), delivery="d-1")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"queued": PR_KEY, "status": "queued", "created": True}
    [call] = recorder.wait(1)
    assert call == {
        "installation_id": 1,
        "owner": "Codertocat",
        "repo": "Hello-World",
        "number": 2,
        "trigger": "opened",
        "head_sha": HEAD,
        "before_sha": None,
        "full": False,
        "draft": False,
        "comment_id": None,
        "commenter": None,
        "trusted": True,
        "delivery": "d-1",
    }
    # GitHub's redelivery of the same delivery: acknowledged, nothing queued.
    again = deliver(github, "pull_request", example("pull_request.opened"), delivery="d-1")
    assert (again.status_code, again.json()) == (202, {"ignored": "delivery d-1 was already received"})
    # Another event for the same head (reopened): the same diff, reviewed already.
    reopened = deliver(github, "pull_request", example("pull_request.reopened"), delivery="d-2")
    assert reopened.status_code == 202
    assert reopened.json()["created"] is False
    time.sleep(0.2)
    assert len(recorder.calls) == 1


@pytest.mark.parametrize(
    ("name", "trigger"),
    [("pull_request.synchronize", "synchronize"), ("pull_request.ready_for_review", "ready_for_review")],
)
def test_every_reviewing_action_is_queued(
    github: TestClient[Litestar], recorder: Recorder, name: str, trigger: str
) -> None:
    payload = example(name)
    answer = deliver(github, "pull_request", payload)
    assert answer.status_code == 202, answer.text
    [call] = recorder.wait(1)
    assert call["trigger"] == trigger
    assert call["before_sha"] == (payload["before"] if trigger == "synchronize" else None)


def test_ping_is_answered(github: TestClient[Litestar]) -> None:
    answer = deliver(github, "ping", example("ping"))
    assert (answer.status_code, answer.json()) == (200, {"ok": True, "event": "ping"})


@pytest.mark.parametrize(
    ("event", "name", "reason"),
    [
        ("push", "push", "push"),
        ("installation", "installation.created", "installation.created"),
        ("check_run", "check_run.rerequested", "check_run.rerequested"),
        ("pull_request", "pull_request.closed", "pull_request.closed"),
        ("pull_request", "pull_request.labeled", "pull_request.labeled"),
        ("issue_comment", "issue_comment.edited", "issue_comment.edited"),
        ("issue_comment", "issue_comment.deleted", "issue_comment.deleted"),
        ("issue_comment", "issue_comment.created", "comment is not a /review command"),
    ],
)
def test_other_events_and_actions_are_acknowledged_and_ignored(
    github: TestClient[Litestar], recorder: Recorder, event: str, name: str, reason: str
) -> None:
    answer = deliver(github, event, example(name))
    assert (answer.status_code, answer.json()) == (202, {"ignored": reason})
    time.sleep(0.1)
    assert recorder.calls == []


def test_pull_requests_by_bots_and_closed_ones_are_ignored(github: TestClient[Litestar]) -> None:
    by_bot = example("pull_request.opened")
    by_bot["pull_request"]["user"].update({"login": "dependabot[bot]", "type": "Bot"})
    assert deliver(github, "pull_request", by_bot).json() == {
        "ignored": "pull request #2 is by a bot (dependabot[bot])"
    }
    closed = example("pull_request.synchronize")
    closed["pull_request"]["state"] = "closed"
    assert deliver(github, "pull_request", closed).json() == {"ignored": "pull request #2 is closed"}


def test_a_draft_is_queued_with_its_flag_for_the_worker_to_decide(
    github: TestClient[Litestar], recorder: Recorder
) -> None:
    draft = example("pull_request.opened")
    draft["pull_request"]["draft"] = True  # the repo config (read by the worker) may ask for drafts
    assert deliver(github, "pull_request", draft).status_code == 202
    assert recorder.wait(1)[0]["draft"] is True


@pytest.mark.parametrize(("body", "full"), [("/review", False), ("/review full\nplease, all of it", True)])
def test_a_review_command_on_a_pull_request_is_queued(
    github: TestClient[Litestar], recorder: Recorder, body: str, full: bool
) -> None:
    payload = review_comment(body)
    answer = deliver(github, "issue_comment", payload)
    key = f"Codertocat/Hello-World#1@comment-{payload['comment']['id']}"
    assert (answer.status_code, answer.json()["queued"]) == (202, key)
    [call] = recorder.wait(1)
    assert (call["trigger"], call["full"], call["head_sha"]) == ("comment", full, None)
    assert (call["comment_id"], call["commenter"], call["trusted"]) == (payload["comment"]["id"], "Codertocat", True)


def test_a_command_from_outside_the_repo_is_queued_for_a_permission_check(
    github: TestClient[Litestar], recorder: Recorder
) -> None:
    assert deliver(github, "issue_comment", review_comment("/review", author_association="CONTRIBUTOR")).status_code
    assert recorder.wait(1)[0]["trusted"] is False


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (review_comment("/review", user={"login": "ai-dev-companion[bot]", "type": "Bot"}), "comment by a bot"),
        (review_comment("please /review"), "comment is not a /review command"),
        (review_comment("/reviewer"), "comment is not a /review command"),
        (review_comment("/review everything"), "comment is not a /review command"),
    ],
)
def test_comments_that_start_nothing(github: TestClient[Litestar], payload: dict[str, Any], reason: str) -> None:
    assert deliver(github, "issue_comment", payload).json() == {"ignored": reason}


def test_a_review_command_on_a_plain_issue_is_ignored(github: TestClient[Litestar]) -> None:
    payload = example("issue_comment.created")
    payload["comment"]["body"] = "/review"
    assert deliver(github, "issue_comment", payload).json() == {"ignored": "#1 is an issue, not a pull request"}


# Refusals: every one in the error shape, nothing queued.


def error_of(answer: Any) -> tuple[int, str, str]:
    body = answer.json()
    assert body["detail"] == body["error"]["message"]
    return answer.status_code, body["error"]["type"], body["error"]["message"]


def test_unsigned_and_wrongly_signed_deliveries_are_refused(github: TestClient[Litestar], recorder: Recorder) -> None:
    payload = example("pull_request.opened")
    assert error_of(deliver(github, "pull_request", payload, secret=None)) == (401, "unauthorized", MISSING_SIGNATURE)
    assert error_of(deliver(github, "pull_request", payload, secret="not the secret")) == (
        401,
        "unauthorized",
        BAD_SIGNATURE,
    )
    body = json.dumps(payload).encode()
    tampered = deliver(
        github,
        "pull_request",
        None,
        raw=body.replace(b'"number": 2', b'"number": 3'),
        headers={"X-Hub-Signature-256": signature(SECRET.encode(), body)},
    )
    assert error_of(tampered) == (401, "unauthorized", BAD_SIGNATURE)
    time.sleep(0.1)
    assert recorder.calls == []


def test_without_a_secret_every_delivery_is_refused_and_readyz_says_why(
    make_settings: SettingsFactory, recorder: Recorder
) -> None:
    app = create_app(make_settings(), tasks=[Task(REVIEW_PULL_REQUEST, recorder.run)])
    with TestClient(app=app, raise_server_exceptions=False) as client:
        assert error_of(deliver(client, "pull_request", example("pull_request.opened"))) == (
            401,
            "unauthorized",
            NOT_CONFIGURED,
        )
        ready = client.get("/readyz")
        assert ready.status_code == 200  # the IDE API works without it
        assert ready.json()["checks"]["github_webhooks"] == NOT_CONFIGURED


def test_readyz_reports_webhooks_ok_with_a_secret(github: TestClient[Litestar]) -> None:
    assert github.get("/readyz").json()["checks"]["github_webhooks"] == "ok"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"action": "opened", "pull_request": ', "Malformed JSON body: "),
        (b"\xff\xfe not utf-8", "Malformed JSON body: "),
        (b"[1, 2]", "The body must be a JSON object"),
        (b'{"action": "opened"}', "not a pull_request payload: pull_request: Field required"),
        (b'{"action": "opened", "pull_request": {"number": "two"}}', "not a pull_request payload: "),
    ],
)
def test_bodies_that_are_not_the_promised_payload_are_400(
    github: TestClient[Litestar], recorder: Recorder, raw: bytes, message: str
) -> None:
    status, kind, text = error_of(deliver(github, "pull_request", None, raw=raw))
    assert (status, kind) == (400, "bad_request")
    assert text.startswith(message), text
    time.sleep(0.05)
    assert recorder.calls == []


def test_a_large_delivery_is_taken_and_one_over_githubs_cap_is_413(github: TestClient[Litestar]) -> None:
    payload = example("pull_request.opened")
    payload["pull_request"]["body"] = "x" * (3 * 1024 * 1024)  # over the REST API's 2 MiB, under GitHub's 25 MB
    assert deliver(github, "pull_request", payload).status_code == 202
    huge = b"{" + b" " * MAX_DELIVERY_BYTES + b"}"
    answer = deliver(github, "pull_request", None, raw=huge)
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "payload_too_large"


def test_a_payload_without_an_installation_is_400(github: TestClient[Litestar]) -> None:
    status, _, message = error_of(deliver(github, "pull_request", example("pull_request.opened.3")))
    assert status == 400
    assert "without `installation`" in message


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-GitHub-Event": ""}, "X-GitHub-Event is missing"),
        ({"X-GitHub-Delivery": ""}, "X-GitHub-Delivery is missing"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type must be application/json"),
    ],
)
def test_deliveries_missing_githubs_headers_are_400(
    github: TestClient[Litestar], headers: dict[str, str], message: str
) -> None:
    status, kind, text = error_of(deliver(github, "pull_request", example("pull_request.opened"), headers=headers))
    assert (status, kind) == (400, "bad_request")
    assert text.startswith(message)


def test_a_delivery_that_could_not_be_queued_can_be_redelivered(make_settings: SettingsFactory) -> None:
    settings = make_settings(github_webhook_secret=SECRET, max_concurrent_jobs=1, worker_concurrency=1)
    gate = threading.Event()

    async def gated(**kwargs: Any) -> None:
        await asyncio.to_thread(gate.wait, 30)  # opened by the test; bounded so a forgotten gate cannot hang

    app = create_app(settings, tasks=[Task(REVIEW_PULL_REQUEST, gated)])
    with TestClient(app=app, raise_server_exceptions=False) as client:
        try:
            assert deliver(client, "pull_request", example("pull_request.opened")).status_code == 202
            other = copy.deepcopy(example("pull_request.opened"))
            other["pull_request"]["number"] = 3
            assert error_of(deliver(client, "pull_request", other, delivery="d-busy"))[:2] == (503, "server_busy")
            gate.set()
            deadline = time.monotonic() + 5
            answer = deliver(client, "pull_request", other, delivery="d-busy")
            while answer.status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.05)
                answer = deliver(client, "pull_request", other, delivery="d-busy")
            # Not remembered when refused: GitHub's redelivery is taken, not mistaken for a duplicate.
            assert (answer.status_code, answer.json()["created"]) == (202, True)
        finally:
            gate.set()


# The delivery memory itself, on both backends.


async def test_deliveries_are_remembered_once_and_forgotten_on_request(queue_url: str) -> None:
    jobs = Jobs.from_url(queue_url, JobPolicy(), capacity=10, name=f"deliveries-{uuid.uuid4().hex[:8]}")
    await jobs.connect()
    try:
        deliveries = Deliveries(jobs)
        other_replica = Deliveries(jobs)
        delivery = str(uuid.uuid4())
        assert await deliveries.first_time(delivery) is True
        assert await other_replica.first_time(delivery) is False
        await deliveries.forget(delivery)
        assert await other_replica.first_time(delivery) is True
        short = Deliveries(jobs, ttl=1)
        expiring = str(uuid.uuid4())
        assert await short.first_time(expiring) is True
        await asyncio.sleep(1.1)
        assert await short.first_time(expiring) is True  # a day later (here: a second), it is new again
        await deliveries.forget(delivery)
        await deliveries.forget(expiring)
    finally:
        await jobs.close()
