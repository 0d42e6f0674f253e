"""The ids a unit of work binds for its log lines: a webhook delivery's, a job's; and what is never logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from saq.job import Job

from bot.api.webhooks import delivery_log_fields
from bot.context import bound, current_request_id, log_fields
from bot.jobs.tasks import REVIEW_CODE, REVIEW_PULL_REQUEST, pull_log_fields
from bot.jobs.worker import AbridgedJobs, Task, job_log_scope
from tests.conftest import FIXTURES, captured_logs

PULL_KWARGS = {
    "installation_id": 31,
    "owner": "android",
    "repo": "sunflower",
    "number": 812,
    "trigger": "opened",
    "head_sha": "2" * 40,
    "delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with captured_logs("DEBUG") as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "webhooks" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def test_a_pull_request_delivery_names_its_installation_repository_and_pull_request() -> None:
    assert delivery_log_fields(example("pull_request.opened")) == {
        "installation": "1",
        "repo": "Codertocat/Hello-World",
        "pr": "2",
    }


def test_a_comment_on_a_plain_issue_names_no_pull_request() -> None:
    assert "pr" not in delivery_log_fields(example("issue_comment.created"))
    on_a_pull = example("issue_comment.created")
    on_a_pull["issue"]["pull_request"] = {"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
    assert delivery_log_fields(on_a_pull)["pr"] == str(on_a_pull["issue"]["number"])


def test_a_payload_without_the_fields_names_nothing() -> None:
    assert delivery_log_fields({"zen": "Keep it logically awesome.", "installation": {"id": "not a number"}}) == {}


def test_a_pull_review_job_logs_its_delivery_installation_repository_and_number() -> None:
    assert pull_log_fields(PULL_KWARGS) == {
        "delivery": PULL_KWARGS["delivery"],
        "installation": "31",
        "repo": "android/sunflower",
        "pr": "812",
    }
    assert pull_log_fields({"installation_id": 31, "owner": "a", "repo": "b", "number": 1}) == {
        "installation": "31",
        "repo": "a/b",
        "pr": "1",
    }


async def test_every_line_of_a_job_carries_its_key_its_request_and_its_fields(captured: io.StringIO) -> None:
    async def nothing(**_: Any) -> None:
        return None

    before, after = job_log_scope(
        [Task(REVIEW_PULL_REQUEST, nothing, log_fields=pull_log_fields), Task(REVIEW_CODE, nothing)]
    )
    job = Job(function=REVIEW_PULL_REQUEST, kwargs=PULL_KWARGS, key="android/sunflower#812@" + "2" * 40)
    job.meta["request_id"] = "req-webhook-1"
    await before({"job": job})
    logging.getLogger("saq").info("Processing %s", job.info())
    await after({"job": job})
    logging.getLogger("bot.test").info("between jobs")
    chat = Job(function=REVIEW_CODE, kwargs={"request": {"source_code": "fun main() {}"}}, key="chat:abc")
    await before({"job": chat})  # queued outside any request: no request id of its own
    logging.getLogger("saq").info("Processing %s", chat.info())
    await after({"job": chat})

    processing, between, chat_line = [line for line in lines(captured) if line["logger"] in ("saq", "bot.test")]
    assert processing["request_id"] == "req-webhook-1"
    assert processing["job"] == job.key
    assert (processing["delivery"], processing["installation"], processing["repo"], processing["pr"]) == (
        PULL_KWARGS["delivery"],
        "31",
        "android/sunflower",
        "812",
    )
    assert between["request_id"] == "-"
    assert "job" not in between
    assert chat_line["job"] == "chat:abc"
    assert "delivery" not in chat_line
    assert current_request_id() == "-"
    assert log_fields() == {}


def test_saq_logs_a_failed_job_abridged_never_with_its_kwargs(captured: io.StringIO) -> None:
    marker = "unique-source-marker-4b1d"
    job = Job(function=REVIEW_CODE, kwargs={"request": {"source_code": f"val x = 1 // {marker}"}}, key="chat:abc")
    saq_log = logging.getLogger("saq")
    saq_log.addFilter(guard := AbridgedJobs())
    try:
        try:
            raise ValueError("the review failed")
        except ValueError:
            saq_log.exception("Error processing job %s", job)
    finally:
        saq_log.removeFilter(guard)
    [line] = lines(captured)
    assert marker not in json.dumps(line)
    assert "key: chat:abc" in line["msg"]
    assert "ValueError: the review failed" in line["exc"]


def test_bound_fields_nest_and_unwind(captured: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    with bound(request_id="r-1", delivery="d-1", event="pull_request"):
        with bound(repo="acme/app", pr="7"):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = lines(captured)
    assert inner.items() >= {"request_id": "r-1", "delivery": "d-1", "repo": "acme/app", "pr": "7"}.items()
    assert "repo" not in outer
    assert outer["delivery"] == "d-1"
    assert after["request_id"] == "-"
    assert "delivery" not in after
