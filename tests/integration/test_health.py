"""The health and smoke routes, through the real app."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from bot import NAME, app_version
from bot.api.webhooks import NOT_CONFIGURED
from bot.app import create_app
from bot.jobs.queue import QueueUnavailable
from tests.conftest import SettingsFactory


def test_welcome(client: TestClient[Litestar]) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {"name": NAME, "version": app_version(), "docs": "/schema"}
    assert app_version() == "0.1.0"


def test_smoke_test(client: TestClient[Litestar]) -> None:
    response = client.post("/test")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("body", [{"a": [1, 2, {"b": None}]}, [1, "two"], "text", 3.5, False])
def test_echo_returns_the_json_it_received(client: TestClient[Litestar], body: object) -> None:
    response = client.post("/echo", json=body)
    assert response.status_code == 200
    assert response.json() == body


@pytest.mark.parametrize("raw", [b'{"a": ', b"not json", b"", b"\xff\xfe"])
def test_echo_refuses_a_body_that_is_not_json(client: TestClient[Litestar], raw: bytes) -> None:
    response = client.post("/echo", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "bad_request"
    assert body["error"]["message"].startswith("Body is not valid JSON")
    assert body["detail"] == body["error"]["message"]


def test_healthz(client: TestClient[Litestar]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_when_everything_answers(client: TestClient[Litestar]) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = {"queue": "ok", "rate_limit_storage": "ok", "github_webhooks": NOT_CONFIGURED}  # said, not failed
    assert response.json() == {"status": "ready", "checks": checks}


def test_readyz_is_503_until_the_limiter_storage_answers(make_settings: SettingsFactory) -> None:
    # A port nothing listens on: the storage cannot answer.
    app = create_app(make_settings(rate_limit_storage_uri="redis://127.0.0.1:1/0"))
    with TestClient(app=app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["queue"] == "ok"
    assert "RATE_LIMIT_STORAGE_URI" in body["checks"]["rate_limit_storage"]
    assert body["error"]["type"] == "not_ready"
    assert "rate_limit_storage" in body["detail"]


def test_the_app_does_not_start_when_the_sqlite_queue_cannot_open(
    make_settings: SettingsFactory, tmp_path: object
) -> None:
    # The embedded queue is the service's own storage: without it nothing works, so the start fails loudly.
    blocker = f"{tmp_path}/file-not-dir"
    with open(blocker, "w") as handle:
        handle.write("x")
    app = create_app(make_settings(queue_url=f"sqlite:///{blocker}/jobs.sqlite3"))
    expected = pytest.RaisesExc(QueueUnavailable, match=r"QUEUE_URL: the queue at SQLite .*file-not-dir")
    with pytest.RaisesGroup(expected, flatten_subgroups=True), TestClient(app=app):
        pass


def test_readyz_is_503_when_the_redis_queue_is_down(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(queue_url="redis://127.0.0.1:1/0"))
    with TestClient(app=app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["queue"].startswith("Redis queue does not answer: ConnectionError")


@pytest.mark.redis
def test_readyz_with_redis_for_queue_and_limits(make_settings: SettingsFactory, redis_url: str) -> None:
    app = create_app(make_settings(queue_url=redis_url, rate_limit_storage_uri=redis_url))
    with TestClient(app=app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    checks = {"queue": "ok", "rate_limit_storage": "ok", "github_webhooks": NOT_CONFIGURED}
    assert response.json()["checks"] == checks


def test_openapi_schema_lists_the_routes(client: TestClient[Litestar]) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert {"/", "/test", "/echo", "/healthz", "/readyz"} <= set(schema["paths"])


def test_create_app_does_no_io(make_settings: SettingsFactory, tmp_path: object) -> None:
    # Building the app opens nothing: an unreachable Redis only matters once the app starts serving.
    create_app(make_settings(queue_url="redis://127.0.0.1:1/0", rate_limit_storage_uri="redis://127.0.0.1:1/0"))
