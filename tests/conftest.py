"""Shared fixtures: isolated settings, the app under test, Redis when the run has it."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from bot.app import create_app
from bot.logs import configure_logging
from bot.settings import Settings

pytest_plugins = ("tests.fakes.openai_server",)  # the `fake_openai` fixture

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

SettingsFactory = Callable[..., Settings]


@contextmanager
def captured_logs(level: str = "INFO", log_format: str = "json", secrets: Iterable[str] = ()) -> Iterator[io.StringIO]:
    """The service's logging (bot.logs.configure_logging) into a string; the root logger restored after."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    configure_logging(level, log_format, secrets, stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("uvicorn.access").disabled = False


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the developer's or CI's environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def make_settings(clean_env: None, tmp_path: Path) -> SettingsFactory:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"queue_url": f"sqlite:///{tmp_path}/jobs.sqlite3"}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return factory


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def redis_url() -> str:
    """The Redis for tests marked `redis`. Skips without one, unless REQUIRE_REDIS=1 (CI), which fails."""
    import redis  # noqa: PLC0415

    url = os.environ.get("REDIS_URL", "")
    required = os.environ.get("REQUIRE_REDIS") == "1"
    problem = "REDIS_URL is not set" if not url else ""
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except (redis.RedisError, OSError) as exc:
            problem = f"Redis at {url} does not answer: {exc}"
    if problem:
        if required:
            pytest.fail(f"REQUIRE_REDIS=1 but {problem}")
        pytest.skip(problem)
    return url


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A queue URL of each backend: the same contract runs against the embedded SQLite file and Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.sqlite3"
    url: str = request.getfixturevalue("redis_url")
    return url
