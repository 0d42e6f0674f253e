"""The fake OpenAI server, driven by the real `openai` SDK the way CrewAI drives it."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from reviewer.models import Category, Severity
from reviewer.proposals import Proposal, Proposals
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.openai_wire import CHARS_PER_TOKEN, NO_KEY, WRONG_KEY

KEY = "sk-fake-test"
MODEL = "fake-model"
USER = [{"role": "user", "content": "Review this diff: + val q = 1"}]


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: bool
    reason: str


def client(fake: FakeOpenAI, *, max_retries: int = 0, timeout: float = 5.0, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=api_key, max_retries=max_retries, timeout=timeout)


def ask(fake: FakeOpenAI, **options: Any) -> Any:
    with client(fake, **options) as sdk:
        return sdk.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]


def parse(fake: FakeOpenAI, model: type[BaseModel], **options: Any) -> Any:
    with client(fake, **options) as sdk:
        return sdk.beta.chat.completions.parse(model=MODEL, messages=USER, response_format=model)  # type: ignore[arg-type]


def fake_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fake-openai")]


# answers


def test_a_completion_carries_the_content_and_an_estimated_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("Looks fine.")

    answer = ask(fake_openai)

    assert answer.choices[0].message.content == "Looks fine."
    assert answer.choices[0].finish_reason == "stop"
    prompt = math.ceil(len(USER[0]["content"]) / CHARS_PER_TOKEN)
    completion = math.ceil(len("Looks fine.") / CHARS_PER_TOKEN)
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt, completion)
    assert answer.usage.total_tokens == prompt + completion
    assert fake_openai.usage_total.as_dict() == answer.usage.model_dump(
        include={"prompt_tokens", "completion_tokens", "total_tokens"}
    )
    [seen] = fake_openai.requests
    assert (seen.method, seen.path, seen.status, seen.call) == ("POST", "/v1/chat/completions", 200, 1)
    assert seen.body["model"] == MODEL
    assert seen.body["messages"] == USER
    assert seen.headers["authorization"] == "Bearer <redacted>"
    assert KEY not in repr(seen)
    assert fake_openai.calls == 1
    assert fake_openai.pending == 0


def test_usage_is_given_or_left_out_on_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.content("a", prompt_tokens=1000, completion_tokens=7), Reply.content("b", usage=False))

    assert ask(fake_openai).usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) == {
        "prompt_tokens": 1000,
        "completion_tokens": 7,
        "total_tokens": 1007,
    }
    assert ask(fake_openai).usage is None
    assert fake_openai.usage_total.total_tokens == 1007


def test_parse_gets_the_project_proposals_through_a_checked_strict_schema() -> None:
    proposal = Proposal(
        path="app/src/main/java/Foo.kt",
        line=3,
        end_line=3,
        quote="val q = 1",
        severity=next(iter(Severity)),
        category=next(iter(Category)),
        title="Magic number",
        body="Name it.",
        suggestion=None,
        confidence=0.5,
    )
    with FakeOpenAI(Reply.json(Proposals(findings=[proposal])), api_key=KEY, check_schema=True) as fake:
        answer = parse(fake, Proposals)

    assert answer.choices[0].message.parsed == Proposals(findings=[proposal])
    response_format = fake.requests[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Proposals"
    assert response_format["json_schema"]["strict"] is True


def test_a_responder_answers_once_the_script_is_used_up(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("scripted")
    fake_openai.responder = lambda body: f"echo {body['model']}"

    assert [ask(fake_openai).choices[0].message.content for _ in range(3)] == [
        "scripted",
        f"echo {MODEL}",
        f"echo {MODEL}",
    ]


def test_concurrent_calls_are_all_recorded(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: body["messages"][0]["content"]
    fake_openai.latency = 0.05

    def one(n: int) -> str:
        with client(fake_openai) as sdk:
            answer = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"n{n}"}])
            return str(answer.choices[0].message.content)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))

    assert answers == [f"n{n}" for n in range(8)]
    assert fake_openai.calls == 8
    assert sorted(r.call or 0 for r in fake_openai.requests) == list(range(1, 9))


# the checks of the real service


def test_no_key_is_401_in_openai_error_shape(fake_openai: FakeOpenAI) -> None:
    with client(fake_openai) as sdk, pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=USER, extra_headers={"Authorization": openai.Omit()})  # type: ignore[arg-type]

    assert caught.value.body == {"message": NO_KEY, "type": "invalid_request_error", "param": None, "code": None}
    assert "authorization" not in fake_openai.requests[0].headers
    assert fake_openai.calls == 0


def test_a_wrong_key_is_401_when_a_key_is_required() -> None:
    with FakeOpenAI(api_key=KEY) as fake, pytest.raises(openai.AuthenticationError) as caught:
        ask(fake, api_key="sk-other")

    assert caught.value.code == "invalid_api_key"
    assert caught.value.body["message"] == WRONG_KEY  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/models"), ("POST", "/embeddings"), ("GET", "/chat/completions")]
)
def test_other_routes_are_404(fake_openai: FakeOpenAI, method: str, path: str) -> None:
    with client(fake_openai) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.get(path, cast_to=object) if method == "GET" else sdk.post(path, cast_to=object, body={})

    assert caught.value.body == {
        "message": f"Invalid URL ({method} /v1{path})",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert fake_openai.calls == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": ["hi"]}, "messages"),
        ({"model": MODEL, "messages": USER, "stream": True}, "stream"),
        ({"model": MODEL, "messages": USER, "response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "model": MODEL,
                "messages": USER,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "V", "strict": False, "schema": Verdict.model_json_schema()},
                },
            },
            "response_format",
        ),
        (
            {
                "model": MODEL,
                "messages": USER,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "Open",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    },
                },
            },
            "response_format",
        ),
        (
            {
                "model": MODEL,
                "messages": USER,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "Partial",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                            "required": ["a"],
                            "additionalProperties": False,
                        },
                    },
                },
            },
            "response_format",
        ),
    ],
)
def test_bad_requests_are_400(fake_openai: FakeOpenAI, body: dict[str, Any], param: str) -> None:
    with client(fake_openai) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.post("/chat/completions", cast_to=object, body=body)

    assert caught.value.param == param
    assert fake_openai.calls == 0


def test_a_body_that_is_not_json_is_400(fake_openai: FakeOpenAI) -> None:
    answer = httpx.post(
        f"{fake_openai.base_url}/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )

    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert fake_openai.requests[0].body is None


# faults


def test_429_with_retry_after_reaches_the_sdk(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.fault(429, retry_after=1))

    with pytest.raises(openai.RateLimitError) as caught:
        ask(fake_openai)

    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


def test_the_sdk_honours_retry_after_and_retries_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.fault(429, retry_after=1), "second time lucky")

    started = time.monotonic()
    answer = ask(fake_openai, max_retries=1)

    assert answer.choices[0].message.content == "second time lucky"
    first, second = fake_openai.requests
    assert (first.status, second.status) == (429, 200)
    assert second.headers["x-stainless-retry-count"] == "1"
    assert second.at - first.at >= 1.0
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize(("status", "error"), [(500, openai.InternalServerError), (503, openai.InternalServerError)])
def test_server_errors(fake_openai: FakeOpenAI, status: int, error: type[openai.APIStatusError]) -> None:
    fake_openai.enqueue(Reply.fault(status))

    with pytest.raises(error) as caught:
        ask(fake_openai)

    assert caught.value.status_code == status
    assert caught.value.type == "server_error"


def test_a_dropped_connection_is_a_connection_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.drop())

    with pytest.raises(openai.APIConnectionError):
        ask(fake_openai)

    assert fake_openai.requests[0].status is None


def test_a_raw_body_is_sent_verbatim(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.raw({"choices": [{"message": {"role": "assistant", "content": "{}"}}]}))

    assert ask(fake_openai).choices[0].message.content == "{}"


# time


def test_global_latency_can_change_while_running(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("fast", "slow")
    ask(fake_openai)

    fake_openai.latency = 0.2
    started = time.monotonic()
    ask(fake_openai)

    assert time.monotonic() - started >= 0.2


def test_a_reply_can_be_delayed(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.content("late", delay=0.2))

    started = time.monotonic()
    assert ask(fake_openai).choices[0].message.content == "late"
    assert time.monotonic() - started >= 0.2


def test_a_hang_outlasts_the_client_timeout_and_does_not_hold_up_the_shutdown() -> None:
    with FakeOpenAI(Reply.hang()) as fake:
        with pytest.raises(openai.APITimeoutError):
            ask(fake, timeout=0.2)
        assert fake.requests[0].status is None

    assert fake_threads() == []


# what the SDK makes of broken content


def test_malformed_content_makes_parse_raise(fake_openai: FakeOpenAI) -> None:
    fake_openai.check_schema = True  # Reply.malformed is never checked
    fake_openai.enqueue(Reply.malformed(), Reply.malformed('{"keep": "yes"}'))

    with pytest.raises(ValidationError):
        parse(fake_openai, Verdict)
    with pytest.raises(ValidationError):
        parse(fake_openai, Verdict)


def test_a_truncated_answer_makes_parse_raise(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.json({"keep": True, "reason": "x"}, finish_reason="length"))

    with pytest.raises(openai.LengthFinishReasonError):
        parse(fake_openai, Verdict)


# mistakes in the script fail the test


def test_content_against_the_schema_is_a_problem_when_checked(fake_openai: FakeOpenAI) -> None:
    fake_openai.check_schema = True
    fake_openai.enqueue(Reply.json({"keep": "yes"}))

    with pytest.raises(openai.InternalServerError):
        parse(fake_openai, Verdict)

    [problem] = fake_openai.take_problems()
    assert "violates the response_format schema" in problem


def test_unchecked_content_is_sent_as_scripted(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.json({"keep": "yes"}))

    with pytest.raises(ValidationError):
        parse(fake_openai, Verdict)


def test_running_out_of_replies_or_a_failing_responder_is_a_problem(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.InternalServerError, match="no scripted reply left for call 1"):
        ask(fake_openai)

    def broken(body: dict[str, Any]) -> Reply:
        raise KeyError("choices")

    fake_openai.responder = broken
    with pytest.raises(openai.InternalServerError):
        ask(fake_openai)

    problems = fake_openai.take_problems()
    assert len(problems) == 2
    assert "responder raised KeyError('choices') on call 2" in problems[1]


def test_leaving_with_problems_fails() -> None:
    fake = FakeOpenAI()
    with pytest.raises(AssertionError, match="no scripted reply left"), fake, pytest.raises(openai.InternalServerError):
        ask(fake)


# lifecycle


def test_it_binds_loopback_and_stops_every_thread() -> None:
    with FakeOpenAI("one") as fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        with client(fake) as sdk:  # a kept-alive connection is still open when the server stops
            sdk.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
            assert fake_threads()
            fake.stop()
        with pytest.raises(RuntimeError, match="not started"):
            _ = fake.base_url

    assert fake_threads() == []
