"""The strict fake GitHub (tests/fakes/github.py) served over real HTTP on 127.0.0.1, for tests that start the
bot as a process (where respx cannot reach):

    with serve_fake_github(app_id=4242) as server:
        server.fake.add_installation(7)  # set-up before the first request, or inside server.read(...)
        env["GITHUB_API_URL"] = server.base_url  # http://127.0.0.1:<port>/api/v3
        ...
        reviews = server.read(lambda fake: list(fake.reviews.get(("acme", "app", 1), [])))

Each request becomes an `httpx.Request` (method, the full URL, headers, body) for `FakeGitHub._handle`, and its
`httpx.Response` is written back (hop-by-hop headers dropped, Content-Length recomputed). The socket is bound
before the fake is built, so the fake's `base_url` carries the real port. Calls into the fake, and `read`, are
serialized by one lock: the test thread never sees the fake half-way through a request. Anything the server gets
wrong (a path outside base_url, a chunked body, the fake raising) is answered 500 and kept in `problems`; leaving
the `with` block then fails the test.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tests.fakes.github import FakeGitHub
from tests.fakes.loopback import HOST, Loopback

__all__ = ["FakeGitHubServer", "serve_fake_github"]

API_PATH = "/api/v3"  # GitHub Enterprise Server's REST prefix: the App's GITHUB_API_URL points here
MAX_DELAY = 4.0  # seconds: below the loopback server's JOIN_SECONDS, so stop() never waits on a delay
# RFC 9110 7.6.1: meaningful for one connection only, never forwarded. Content-Length is recomputed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

T = TypeVar("T")


class FakeGitHubServer:
    """A FakeGitHub behind a loopback HTTP server. Bound at construction (so `base_url` is known), serving
    between `start()` and `stop()` (or inside `with`)."""

    def __init__(self, **fake_options: Any) -> None:
        """`fake_options`: FakeGitHub's keyword arguments (app_id, app_slug, public_key)."""
        self._server = Loopback(_Handler, name="fake-github", owner=self, report=self._problem)
        self.base_url = f"http://{HOST}:{self.port}{API_PATH}"
        self.fake = FakeGitHub(self.base_url, **fake_options)
        self.lock = threading.Lock()  # around every call into the fake, and around `read`
        # Path regex (relative to base_url, whole match) -> seconds to wait before answering: a slow GitHub.
        self.delay: dict[str, float] = {}
        self._problems: list[str] = []
        self._state = threading.Lock()  # guards _problems
        self._started = self._closed = False

    @property
    def port(self) -> int:
        return self._server.port

    # lifecycle

    def start(self) -> FakeGitHubServer:
        if self._started or self._closed:
            raise RuntimeError("a FakeGitHubServer serves once")
        self._started = True
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open (keep-alive) connections, join every thread (tests.fakes.loopback)."""
        if not self._closed:
            self._closed = True
            self._server.stop()

    def __enter__(self) -> FakeGitHubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        if exc_type is None:
            self.assert_no_problems()

    # what happened

    def read(self, look: Callable[[FakeGitHub], T]) -> T:
        """`look(fake)` with no request half-way through (copy what you keep: the fake goes on changing)."""
        with self.lock:
            return look(self.fake)

    @property
    def problems(self) -> list[str]:
        with self._state:
            return list(self._problems)

    def assert_no_problems(self) -> None:
        problems = self.problems
        if problems:
            raise AssertionError("the fake GitHub server went wrong:\n- " + "\n- ".join(problems))

    # called by the connection threads

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if not str(request.url).startswith(self.base_url + "/"):
            return self._failure(f"{request.method} {request.url} is outside {self.base_url}")
        path = str(request.url)[len(self.base_url) :].partition("?")[0]
        wait = max((seconds for pattern, seconds in dict(self.delay).items() if re.fullmatch(pattern, path)), default=0)
        if wait:
            time.sleep(min(wait, MAX_DELAY))
        try:
            with self.lock:
                return self.fake._handle(request)
        except Exception as exc:  # the fake's bug: reported at the end of the test, not lost in a thread
            return self._failure(f"FakeGitHub raised {exc!r} on {request.method} {request.url}")

    def _failure(self, problem: str) -> httpx.Response:
        self._problem(problem)
        return httpx.Response(500, json={"message": f"fake GitHub server: {problem}"})

    def _problem(self, problem: str) -> None:
        with self._state:
            self._problems.append(problem)


@contextlib.contextmanager
def serve_fake_github(**fake_options: Any) -> Iterator[FakeGitHubServer]:
    """A started FakeGitHubServer (its fake at `.fake`, its URL at `.base_url`); stopped and checked on exit."""
    with FakeGitHubServer(**fake_options) as server:
        yield server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as GitHub and githubkit's connection pool expect
    server: Loopback

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: FakeGitHub records every request

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        owner: FakeGitHubServer = self.server.owner
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            response = owner._failure(f"a chunked request body ({self.command} {self.path}): not supported here")
            self.close_connection = True
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            url = f"http://{HOST}:{owner.port}{self.path}"
            request = httpx.Request(self.command, url, headers=list(self.headers.items()), content=body)
            response = owner._answer(request)
        self._send(response)

    def _send(self, response: httpx.Response) -> None:
        content = response.content
        try:
            self.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)
        except OSError:
            self.close_connection = True  # the client gave up before the answer
