"""X-Request-ID: accepted or created, returned on every response, and on every log line of the request."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import captured_logs


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    with captured_logs() as stream:
        yield stream


def test_a_given_request_id_is_returned(client: TestClient[Litestar]) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "ide-plugin-42"})
    assert response.headers["x-request-id"] == "ide-plugin-42"


def test_a_request_id_is_created_when_missing_or_unsafe(client: TestClient[Litestar]) -> None:
    created = client.get("/healthz").headers["x-request-id"]
    replaced = client.get("/healthz", headers={"X-Request-ID": "has spaces; and=junk"}).headers["x-request-id"]
    for value in (created, replaced):
        assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert created != replaced


@pytest.mark.parametrize(("method", "path"), [("get", "/missing"), ("put", "/healthz"), ("post", "/echo")])
def test_error_responses_carry_the_request_id_too(client: TestClient[Litestar], method: str, path: str) -> None:
    response = client.request(method, path, headers={"X-Request-ID": "err-req"}, content=b"{")
    assert response.status_code >= 400
    assert response.headers["x-request-id"] == "err-req"


def test_the_access_log_line_has_the_request_id(client: TestClient[Litestar], log_stream: io.StringIO) -> None:
    client.post("/echo", json={"x": 1}, headers={"X-Request-ID": "logged-req"})
    records = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "bot.access"]
    assert access
    assert access[-1]["request_id"] == "logged-req"
    assert "POST /echo 200" in str(access[-1]["msg"])
