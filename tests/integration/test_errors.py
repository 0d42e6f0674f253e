"""Every error, ours or Litestar's or unexpected, answers in the one documented shape."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import TestClient

from bot import errors
from bot.app import MAX_BODY_BYTES, create_app
from tests.conftest import SettingsFactory

SECRET = "whsec-do-not-leak-0123456789"


class Review(msgspec.Struct):
    source_code: str
    line: int


def _raiser(error: errors.AppError) -> Any:
    @get(f"/raise/{error.error_type}", sync_to_thread=False)
    def handler() -> None:
        raise error

    return handler


RAISED = [
    errors.BadRequest("bad thing"),
    errors.Unauthorized(),
    errors.NotFound(),
    errors.JobNotFound(),
    errors.MethodNotAllowed(),
    errors.PayloadTooLarge(),
    errors.InvalidInput("source_code: longer than 100000 characters"),
    errors.RateLimitExceeded(retry_after=41.2),
    errors.InternalError(),
    errors.CodeAnalysisError("parser crashed on line 3"),
    errors.ServerBusy(retry_after=5),
]


@post("/typed", status_code=200, sync_to_thread=False)
def typed(data: JSONBody[Review]) -> dict[str, int]:
    return {"line": data.line}


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError(f"database password is {SECRET}")


@pytest.fixture
def error_client(make_settings: SettingsFactory) -> Any:
    app = create_app(make_settings(github_webhook_secret=SECRET))
    for error in RAISED:
        app.register(_raiser(error))
    app.register(typed)
    app.register(boom)
    with TestClient(app=app, raise_server_exceptions=False) as client:
        yield client


def assert_shape(body: dict[str, Any], error_type: str) -> None:
    assert set(body) == {"error", "detail"}
    assert set(body["error"]) <= {"type", "message", "retry_after"}
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["detail"] == body["error"]["message"]


@pytest.mark.parametrize("error", RAISED, ids=lambda e: e.error_type)
def test_each_error_type_has_its_status_and_shape(error_client: TestClient[Litestar], error: errors.AppError) -> None:
    response = error_client.get(f"/raise/{error.error_type}")
    assert response.status_code == error.status_code
    body = response.json()
    assert_shape(body, error.error_type)
    assert body["error"]["message"] == error.message
    if error.retry_after is not None:
        assert body["error"]["retry_after"] == int(-(-error.retry_after // 1))
        assert response.headers["retry-after"] == str(body["error"]["retry_after"])
    else:
        assert "retry_after" not in body["error"]


def test_design_types_are_all_covered() -> None:
    documented = {
        "rate_limit_exceeded": 429,
        "server_busy": 503,
        "invalid_input": 422,
        "job_not_found": 404,
        "code_analysis_error": 500,
        "unauthorized": 401,
        "bad_request": 400,
        "not_found": 404,
        "internal_error": 500,
    }
    ours = {error.error_type: error.status_code for error in RAISED}
    assert documented.items() <= ours.items()


def test_unknown_route_is_404_not_found(error_client: TestClient[Litestar]) -> None:
    response = error_client.get("/no/such/route")
    assert response.status_code == 404
    assert_shape(response.json(), "not_found")


def test_wrong_method_is_405(error_client: TestClient[Litestar]) -> None:
    response = error_client.delete("/healthz")
    assert response.status_code == 405
    assert_shape(response.json(), "method_not_allowed")


def test_validation_error_is_422_naming_the_field(error_client: TestClient[Litestar]) -> None:
    response = error_client.post("/typed", json={"source_code": "val x = 1", "line": "three"})
    assert response.status_code == 422
    body = response.json()
    assert_shape(body, "invalid_input")
    assert "line" in body["error"]["message"]


def test_missing_field_is_422_naming_the_field(error_client: TestClient[Litestar]) -> None:
    response = error_client.post("/typed", json={"line": 3})
    assert response.status_code == 422
    assert "source_code" in response.json()["error"]["message"]


def test_malformed_json_is_400_bad_request(error_client: TestClient[Litestar]) -> None:
    response = error_client.post(
        "/typed", content=b'{"source_code": "x", ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_shape(response.json(), "bad_request")


def test_body_over_the_cap_is_413(error_client: TestClient[Litestar]) -> None:
    response = error_client.post("/echo", content=b"[" + b"1," * MAX_BODY_BYTES + b"1]")
    assert response.status_code == 413
    assert_shape(response.json(), "payload_too_large")


def test_unexpected_error_is_500_without_traceback_or_secret(
    error_client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.errors"):
        response = error_client.get("/boom", headers={"X-Request-ID": "req-500-check"})
    assert response.status_code == 500
    body = response.json()
    assert_shape(body, "internal_error")
    assert "req-500-check" in body["error"]["message"]
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    # The cause is in the operator's log, tied to the request id.
    records = [r for r in caplog.records if r.name == "bot.errors"]
    assert records
    assert records[0].exc_info is not None
