"""The web tier on AWS Lambda, behind an API Gateway HTTP API (payload format 2.0), through Mangum.

Function handler: ``handler.handler`` (this file at the root of ``dist/lambda.zip``, built by
``deploy/lambda/package.sh``). Runtime python3.12, x86_64, timeout above 30 s (API Gateway's own limit).

Importing this module reads no setting and opens nothing (it imports Litestar and the service, never CrewAI).
The first invocation of a container reads the settings, refuses the ones a Lambda cannot honour
(:class:`LambdaConfigError`, naming each variable), builds ``create_app(settings)`` and runs its lifespan
startup (the queue client, the rate-limit storage) once. Warm invocations reuse all of it.

Why not ``Mangum(app, lifespan="auto")``: Mangum enters *and exits* the ASGI lifespan around every single
invocation, so each request would build and tear down the Redis clients of the queue and of the limiter (a new
TCP, TLS and AUTH handshake per webhook). Here Mangum runs with ``lifespan="off"`` and the app's lifespan is held
open for the life of the container, in one long-lived task on the container's one event loop (Litestar's
lifespan holds an anyio task group, which must be entered and exited by the same task). Lambda freezes that task
between invocations and never resumes it at the end (no SIGTERM reaches a function without extensions): Redis
connections dropped while frozen are reopened by redis-py's retry on the next command.

Environment, besides the service's own (README, "Configuration"):

- ``QUEUE_URL=redis://...`` (required). The embedded SQLite queue keeps jobs on local disk and runs the
  workers inside the web process: a Lambda has no durable disk and is frozen between requests. Run
  ``python -m bot worker`` elsewhere (a container service) against the same Redis.
- ``RATE_LIMIT_STORAGE_URI=redis://...`` (required): ``memory://`` would count in each container, reset on
  every cold start, and let N containers allow N times RATE_LIMIT_PER_MINUTE.
- ``FORWARDED_ALLOW_IPS``: leave it unset. Mangum gives the app API Gateway's
  ``requestContext.http.sourceIp`` (the caller's address, which the caller cannot choose) as the ASGI client;
  the default (127.0.0.1) trusts no X-Forwarded-For, so rate limits key on that address. ``*`` is refused: it
  would let every caller pick its own identity with X-Forwarded-For. Only behind a proxy that calls API Gateway
  (CloudFront) list that proxy's networks.
- ``CHAT_TIMEOUT_SECONDS`` at most 25: API Gateway ends a request at 30 s with its own body; below that,
  ``POST /chat`` answers 202 with a job id to poll instead.
- ``API_GATEWAY_BASE_PATH`` (default ``/``): the prefix to strip from paths, for a named stage (``/prod``) or a
  custom domain's API mapping; the ``$default`` stage needs none.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from litestar import Litestar
from mangum import Mangum
from mangum.types import ASGI, LambdaContext, LambdaEvent
from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.app import create_app
from bot.logs import configure_logging
from bot.settings import ConfigError, Settings, load_settings

# API Gateway's integration timeout is 30 s; leave room for the response to get back through it.
MAX_CHAT_TIMEOUT_SECONDS = 25.0
REDIS_SCHEMES = ("redis", "rediss")


class LambdaConfigError(ConfigError):
    """The settings are valid for the service but not for Lambda; the message names each variable."""


class LambdaSettings(BaseSettings):
    """The adapter's own setting (the service's are :class:`bot.settings.Settings`)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True, env_ignore_empty=True
    )

    api_gateway_base_path: str = "/"

    @field_validator("api_gateway_base_path")
    @classmethod
    def _base_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with / (e.g. /prod for a stage named prod)")
        return value.rstrip("/") or "/"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower().removeprefix("async+") if "://" in url else ""


def lambda_problems(settings: Settings) -> list[str]:
    """What in these (valid) settings cannot work on Lambda, one line per variable."""
    problems = []
    if not settings.queue_is_redis:
        problems.append(
            f"QUEUE_URL: must be redis:// or rediss:// on AWS Lambda, not {_scheme(settings.queue_url)}://. "
            "The embedded SQLite queue keeps jobs on local disk and runs the workers inside the web process; "
            "a Lambda has no durable disk and is frozen between requests, so jobs would be lost and never run. "
            "Point QUEUE_URL at Redis and run `python -m bot worker` elsewhere against it."
        )
    if _scheme(settings.rate_limit_storage_uri) not in REDIS_SCHEMES:
        problems.append(
            f"RATE_LIMIT_STORAGE_URI: must be redis:// or rediss:// on AWS Lambda, not "
            f"{_scheme(settings.rate_limit_storage_uri)}://. An in-memory limit counts in one container only: it "
            "starts over on every cold start and N containers allow N times the limit. Use the queue's Redis."
        )
    if "*" in settings.forwarded_allow_list:
        problems.append(
            "FORWARDED_ALLOW_IPS: * is refused on AWS Lambda: any caller could choose its address (and its rate "
            "limit) with X-Forwarded-For. API Gateway already gives the caller's address (requestContext.http."
            "sourceIp): leave FORWARDED_ALLOW_IPS unset, or list only the proxies in front of API Gateway."
        )
    if settings.chat_timeout_seconds > MAX_CHAT_TIMEOUT_SECONDS:
        problems.append(
            f"CHAT_TIMEOUT_SECONDS: at most {MAX_CHAT_TIMEOUT_SECONDS:g} on AWS Lambda, not "
            f"{settings.chat_timeout_seconds:g}: API Gateway ends every request after 30 s with its own 503 body."
        )
    return problems


def lambda_settings() -> tuple[Settings, LambdaSettings]:
    """The service's settings and the adapter's, from the environment; ConfigError names each bad variable."""
    settings = load_settings()
    try:
        adapter = LambdaSettings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, error['loc'])).upper()}: {str(error['msg']).removeprefix('Value error, ')}"
            for error in exc.errors()
        ]
    else:
        problems = lambda_problems(settings)
    if problems:
        raise LambdaConfigError("invalid configuration for AWS Lambda:\n  " + "\n  ".join(problems))
    return settings, adapter


class LambdaService:
    """What one container keeps between invocations: its event loop, the app with its lifespan entered, and
    the Mangum adapter (``lifespan="off"``: the lifespan is ours, entered once)."""

    def __init__(self, settings: Settings, adapter: LambdaSettings) -> None:
        self.app: Litestar = create_app(settings)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs each request on the current loop
        try:
            # Litestar's scope and message types are TypedDicts, Mangum's plain mappings: the same ASGI 3 app.
            asgi = cast("ASGI", self.app)
            self.mangum = Mangum(asgi, lifespan="off", api_gateway_base_path=adapter.api_gateway_base_path)
            self._stop = asyncio.Event()
            started: asyncio.Future[None] = self.loop.create_future()
            self._lifespan = self.loop.create_task(self._hold_lifespan(started), name="lambda-lifespan")
            self.loop.run_until_complete(started)
        except BaseException:
            self.loop.close()
            asyncio.set_event_loop(None)
            raise

    async def _hold_lifespan(self, started: asyncio.Future[None]) -> None:
        """Enter the app's lifespan, stay in it until :meth:`close`; a startup error goes to `started`."""
        try:
            async with self.app.lifespan():
                started.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if started.done():
                raise
            # Litestar's lifespan holds an anyio task group: a startup error comes wrapped in an exception group.
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            started.set_exception(exc)

    def __call__(self, event: LambdaEvent, context: LambdaContext) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)  # the loop the Redis clients belong to, whatever ran in between
        return self.mangum(event, context)

    def close(self) -> None:
        """Run the lifespan shutdown (close the Redis clients) and the loop. Lambda never calls this; tests do."""
        asyncio.set_event_loop(self.loop)
        try:
            self._stop.set()
            self.loop.run_until_complete(self._lifespan)
        finally:
            self.loop.close()
            asyncio.set_event_loop(None)


@functools.cache
def service() -> LambdaService:
    """The container's service, built on its first invocation (a failed build is retried by the next one)."""
    settings, adapter = lambda_settings()
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    return LambdaService(settings, adapter)


def handler(event: LambdaEvent, context: LambdaContext) -> dict[str, Any]:
    """The Lambda entry point: one API Gateway (HTTP API, payload 2.0) request in, its response out."""
    return service()(event, context)


def shutdown() -> None:
    """Close the container's service, if it was built, and forget it (tests; a local run)."""
    if service.cache_info().currsize:
        try:
            service().close()
        finally:
            service.cache_clear()
