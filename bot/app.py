"""The Litestar application factory. Importing this module does no work; ``create_app`` wires everything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
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
from bot.api import chat, health, webhooks
from bot.api import metrics as metrics_route
from bot.context import accept_request_id, bound
from bot.errors import EXCEPTION_HANDLERS
from bot.jobs import Jobs, Task, build_worker
from bot.jobs.deliveries import Deliveries
from bot.jobs.tasks import service_tasks
from bot.jobs.worker import close_tasks, size_thread_pool
from bot.metrics import Metrics
from bot.readiness import Check, limiter_check
from bot.settings import Settings
from bot.throttle import Throttle, TrustedProxies, close_storage, create_storage

REQUEST_ID_HEADER = "x-request-id"
MAX_BODY_BYTES = 2 * 1024 * 1024
# Scraped every few seconds: their successful answers are access-logged at DEBUG only.
QUIET_PATHS = frozenset({metrics_route.METRICS_PATH})

access_log = logging.getLogger("bot.access")


class CompanionApp(Litestar):
    """Litestar plus one outer layer that every request passes, matched route or not (404, 405 too):
    it resolves the client address behind trusted proxies, accepts or creates the request id, binds it
    for the logs, returns it, and writes the access log."""

    proxies = TrustedProxies([])

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        if scope["type"] != ScopeType.HTTP:
            await super().__call__(scope, receive, send)
            return
        http_scope = cast("HTTPScope", scope)
        http_send = cast("Send", send)
        headers = dict(http_scope["headers"])
        self._resolve_client(http_scope, headers)
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
                quiet = http_scope["path"] in QUIET_PATHS and status < 400
                access_log.log(
                    logging.DEBUG if quiet else logging.INFO,
                    "%s %s %d %.1fms",
                    http_scope["method"],
                    http_scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                    extra={"client": (http_scope.get("client") or ("-",))[0]},
                )

    def _resolve_client(self, scope: HTTPScope, headers: dict[bytes, bytes]) -> None:
        """Like uvicorn's proxy headers, here so that every server (and the tests) agree on the client."""
        peer = scope.get("client") or ("-", 0)
        forwarded = b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-for")
        if not forwarded or not self.proxies.trusts(peer[0]):
            return
        scope["client"] = (self.proxies.client(peer[0], forwarded.decode("latin-1")), 0)
        proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto


def _readiness_checks(app: Litestar) -> dict[str, Check]:
    jobs: Jobs = app.state.jobs
    return {"queue": jobs.check, "rate_limit_storage": limiter_check(app.state.limiter_storage)}


def create_app(settings: Settings, *, tasks: list[Task] | None = None, metrics: Metrics | None = None) -> Litestar:
    """Build the web application for these settings. Connections are opened in the lifespan, not here.

    With the embedded queue (sqlite://) the workers run in this process; with Redis, this process only
    enqueues and ``python -m bot worker`` runs the jobs. `tasks` replaces the job functions (tests);
    `metrics`, the app's registry (tests that build `tasks` recording into it), else a new one (`GET /metrics`).
    """
    metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        storage = create_storage(settings.rate_limit_storage_uri)
        jobs = Jobs.from_settings(settings)
        await jobs.connect()
        app.state.limiter_storage = storage
        app.state.throttle = Throttle.create(storage, settings.rate_limit_per_minute)
        app.state.jobs = jobs
        app.state.deliveries = Deliveries(jobs)
        app.state.readiness_checks = _readiness_checks(app)
        worker = None
        if jobs.is_embedded:
            size_thread_pool(settings.worker_concurrency, settings.llm_concurrency)
            job_tasks = tasks or service_tasks(settings, jobs, storage=storage, metrics=metrics)
            worker = build_worker(
                jobs, job_tasks, concurrency=settings.worker_concurrency, embedded=True, metrics=metrics
            )
            app.state.worker = asyncio.create_task(worker.start(), name="embedded-worker")
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
                await app.state.worker
                await close_tasks(job_tasks)
            await jobs.close()
            await close_storage(storage)

    app = CompanionApp(
        route_handlers=[*health.ROUTES, *chat.ROUTES, *webhooks.ROUTES, *metrics_route.ROUTES],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings, "metrics": metrics}),
        openapi_config=OpenAPIConfig(
            title=NAME,
            version=app_version(),
            path="/schema",
            components=Components(
                security_schemes={
                    chat.SECURITY_SCHEME: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="One of the server's API_KEYS, when it has any; otherwise not required.",
                    )
                }
            ),
        ),
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
        debug=False,
    )
    app.proxies = TrustedProxies(settings.forwarded_allow_list)
    return app
