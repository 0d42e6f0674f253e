"""A fake OpenAI chat-completions service on 127.0.0.1, for tests: real HTTP, scripted answers, recorded calls.

    with FakeOpenAI(Reply.json({"findings": []}), api_key="sk-test") as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        ...
        assert fake.calls == 1

Each chat completion takes the next scripted reply, else asks `responder(body)`. Anything the script gets
wrong (no reply left, a responder that raised, content that breaks the schema under `check_schema`) is
answered with a 500 and kept in `problems`; leaving the `with` block (or the fixture) then fails the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

import pytest

from tests.fakes.loopback import Loopback, cut
from tests.fakes.openai_wire import (
    CHAT_COMPLETIONS,
    ApiError,
    Kind,
    Reply,
    Usage,
    as_reply,
    check_auth,
    check_request,
    completion,
    parse_body,
    schema_violation,
)

__all__ = ["FakeOpenAI", "RecordedRequest", "Reply", "Responder", "fake_openai_fixture"]

REDACTED = "Bearer <redacted>"

Responder = Callable[[dict[str, Any]], "Reply | str"]


@dataclass
class RecordedRequest:
    """One request as the server saw it. `headers` have lower-case names; Authorization's value is redacted."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, None when the body was not JSON
    at: float  # time.monotonic() on arrival
    call: int | None = None  # its number among the calls (1-based), if it passed the checks
    status: int | None = None  # what was answered; None for a hang or a dropped connection
    usage: Usage | None = None  # the usage a completion reported
    reply: Reply | None = field(default=None, repr=False)  # the scripted reply it took, if it reached the script


class FakeOpenAI:
    """The server. Start it with `with FakeOpenAI(...) as fake:` (or `start()`/`stop()`)."""

    def __init__(
        self,
        *replies: Reply | str,
        responder: Responder | None = None,
        api_key: str | None = None,
        latency: float = 0.0,
        check_schema: bool = False,
    ) -> None:
        """`replies` are answered in order (a str is Reply.content); `responder` answers once they run out.

        `api_key`: when given, only that key is accepted (any non-empty Bearer key otherwise).
        `latency`: seconds waited before every answer, settable while running.
        `check_schema`: validate scripted content against the request's `response_format` schema.
        """
        self.responder = responder
        self.api_key = api_key
        self.check_schema = check_schema
        self.latency = latency
        self._script: deque[Reply] = deque(as_reply(r) for r in replies)
        self._requests: list[RecordedRequest] = []
        self._problems: list[str] = []
        self._calls = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Loopback | None = None

    # lifecycle

    def start(self) -> FakeOpenAI:
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already started")
        self._stopping.clear()
        self._server = Loopback(_Handler, name="fake-openai", owner=self, report=self._problem)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections and hangs short, and join every thread."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.stop()
        self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        if exc_type is None:
            self.assert_no_problems()

    @property
    def port(self) -> int:
        return self._address()[1]

    def _address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>/v1`, for `openai.OpenAI(base_url=...)` or CrewAI's `LLM(base_url=...)`."""
        host, port = self._address()
        return f"http://{host}:{port}/v1"

    # scripting

    def enqueue(self, *replies: Reply | str) -> None:
        """Append replies to the script (a str is Reply.content)."""
        with self._lock:
            self._script.extend(as_reply(r) for r in replies)

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, got {seconds}")
        self._latency = seconds

    # what happened

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        """How many chat completions passed the checks and took a scripted or responder reply."""
        with self._lock:
            return self._calls

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._script)

    @property
    def usage_total(self) -> Usage:
        """The sum of the `usage` of every completion answered (what a client should have counted)."""
        total = Usage()
        for request in self.requests:
            if request.usage is not None:
                total.prompt_tokens += request.usage.prompt_tokens
                total.completion_tokens += request.usage.completion_tokens
        return total

    @property
    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)

    def take_problems(self) -> list[str]:
        """The problems so far, forgotten (for tests that provoke them on purpose)."""
        with self._lock:
            problems, self._problems = self._problems, []
            return problems

    def assert_no_problems(self) -> None:
        problems = self.problems
        if problems:
            raise AssertionError("the fake OpenAI server's script went wrong:\n- " + "\n- ".join(problems))

    # called by the handler threads

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _problem(self, problem: str) -> ApiError:
        with self._lock:
            self._problems.append(problem)
        return ApiError(500, f"fake OpenAI: {problem}", type="server_error")

    def _next_reply(self, recorded: RecordedRequest) -> Reply | ApiError:
        with self._lock:
            self._calls += 1
            number = recorded.call = self._calls
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        if self.responder is None:
            return self._problem(f"no scripted reply left for call {number} and no responder")
        try:
            return as_reply(self.responder(recorded.body))
        except Exception as exc:  # reported at the end of the test, not lost in a server thread
            return self._problem(f"the responder raised {exc!r} on call {number}")

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping; False when the server is stopping (then nothing more is sent)."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Loopback

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the requests are recorded instead

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _dispatch(self) -> None:
        fake: FakeOpenAI = self.server.owner
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): REDACTED if k.lower() == "authorization" else v for k, v in self.headers.items()}
        path = self.path.partition("?")[0]
        recorded = RecordedRequest(self.command, path, headers, parse_body(raw), time.monotonic())
        fake._record(recorded)
        answer = self._answer(fake, recorded)
        if not fake._wait(fake.latency + (answer.delay if isinstance(answer, Reply) else 0.0)):
            return self._drop()
        if isinstance(answer, ApiError):
            return self._send(recorded, answer.status, answer.body())
        if answer.kind in (Kind.HANG, Kind.DROP):
            return self._drop()
        if answer.kind is Kind.FAULT and answer.error is not None:
            return self._send(recorded, answer.status, answer.error.body(), dict(answer.headers))
        if answer.kind is Kind.RAW:
            return self._send(recorded, answer.status, answer.payload)
        result = completion(answer, recorded.body, recorded.call or 0)
        recorded.usage = result.usage
        return self._send(recorded, 200, result.body)

    def _answer(self, fake: FakeOpenAI, recorded: RecordedRequest) -> Reply | ApiError:
        """404 for another route, 401 without a key, 400 for a bad body; then the script."""
        if (self.command, recorded.path) != ("POST", CHAT_COMPLETIONS):
            return ApiError(404, f"Invalid URL ({self.command} {recorded.path})")
        error = check_auth(self.headers.get("authorization"), fake.api_key) or check_request(recorded.body)
        if error is not None:
            return error
        answer = fake._next_reply(recorded)
        if isinstance(answer, ApiError):
            return answer
        recorded.reply = answer
        response_format = recorded.body.get("response_format")
        if fake.check_schema and response_format and answer.kind is Kind.CONTENT and answer.checked:
            violation = schema_violation(answer.text, response_format)
            if violation is not None:
                return fake._problem(f"call {recorded.call}: {violation}")
        return answer

    def _send(self, recorded: RecordedRequest, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        recorded.status = status
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-request-id", f"req_fake_{id(recorded):x}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (its timeout) before the answer

    def _drop(self) -> None:
        self.close_connection = True
        cut(self.connection)


@pytest.fixture(name="fake_openai")
def fake_openai_fixture() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI with an empty script (use `enqueue`); its problems fail the test at teardown."""
    with FakeOpenAI() as fake:
        yield fake
