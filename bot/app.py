"""The Litestar application factory. Importing this module does no work; ``create_app`` wires everything."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.types import (
    HTTPScope,
    LifeSpanReceive,
    LifeSpanScope,
    LifeSpanSend,
    Message,
    Receive,
    Scope,
    Send,
)

from bot import NAME, app_version
from bot.api import health
from bot.context import accept_request_id, bound
from bot.errors import EXCEPTION_HANDLERS
from bot.readiness import Check, limiter_check, redis_check, sqlite_check
from bot.settings import Settings
from bot.throttle import close_storage, create_storage

REQUEST_ID_HEADER = "x-request-id"
MAX_BODY_BYTES = 2 * 1024 * 1024

access_log = logging.getLogger("bot.access")


class CompanionApp(Litestar):
    """Litestar plus one outer layer that every request passes, matched route or not (404, 405 too):
    it accepts or creates the request id, binds it for the logs, returns it, and writes the access log."""

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        if scope["type"] != ScopeType.HTTP:
            await super().__call__(scope, receive, send)
            return
        http_scope = cast("HTTPScope", scope)
        http_send = cast("Send", send)
        headers = dict(http_scope["headers"])
        raw = headers.get(REQUEST_ID_HEADER.encode())
        request_id = accept_request_id(raw.decode("latin-1") if raw else None)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER.encode()),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await http_send(message)

        with bound(request_id=request_id):
            try:
                await super().__call__(scope, receive, send_with_id)
            finally:
                access_log.info(
                    "%s %s %d %.1fms",
                    http_scope["method"],
                    http_scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                    extra={"client": (http_scope.get("client") or ("-",))[0]},
                )


def _readiness_checks(settings: Settings, app: Litestar) -> dict[str, Check]:
    queue = redis_check(settings.queue_url) if settings.queue_is_redis else sqlite_check(settings.sqlite_path)
    return {"queue": queue, "rate_limit_storage": limiter_check(app.state.limiter_storage)}


def create_app(settings: Settings) -> Litestar:
    """Build the web application for these settings. Connections are opened in the lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.limiter_storage = create_storage(settings.rate_limit_storage_uri)
        app.state.readiness_checks = _readiness_checks(settings, app)
        try:
            yield
        finally:
            await close_storage(app.state.limiter_storage)

    return CompanionApp(
        route_handlers=[*health.ROUTES],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(title=NAME, version=app_version(), path="/schema"),
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
        debug=False,
    )
