"""Health and smoke-test routes: /, /test, /echo, /healthz, /readyz. Never rate limited."""

from __future__ import annotations

import json
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import State

from bot import NAME, app_version
from bot.api.webhooks import webhook_status
from bot.errors import BadRequest, error_body
from bot.readiness import run_checks


@get("/", summary="Welcome: the service's name and version")
async def welcome() -> dict[str, str]:
    return {"name": NAME, "version": app_version(), "docs": "/schema"}


@post("/test", status_code=200, summary="Smoke test: always ok")
async def smoke_test() -> dict[str, str]:
    return {"status": "ok"}


@post("/echo", status_code=200, summary="Echo the JSON body back (400 if it is not JSON)")
async def echo(request: Request[Any, Any, Any]) -> Response[bytes]:
    raw = await request.body()
    try:
        json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"Body is not valid JSON: {exc}") from None
    return Response(raw, media_type=MediaType.JSON)


@get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: the queue and the rate-limit storage answer (503 until they do)")
async def readyz(state: State) -> Response[dict[str, Any]]:
    checks = await run_checks(state.readiness_checks)
    failing = {name: result for name, result in checks.items() if result != "ok"}
    # Said, not failed: without a webhook secret the IDE API still works; the GitHub routes refuse.
    checks["github_webhooks"] = webhook_status(state.settings)
    if not failing:
        return Response({"status": "ready", "checks": checks}, media_type=MediaType.JSON)
    message = "Not ready: " + "; ".join(f"{name}: {reason}" for name, reason in failing.items())
    body = {"status": "not_ready", "checks": checks, **error_body("not_ready", message)}
    return Response(body, status_code=503, media_type=MediaType.JSON)


ROUTES = [welcome, smoke_test, echo, healthz, readyz]
