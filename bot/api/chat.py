"""REST API for IDE clients: review a file or snippet now (`/chat`), or as a job to poll (`/chat/submit`).

Every route here passes :func:`chat_guard` first: API key (when API_KEYS is set), then the per-client
rate limit. Routes stay thin: the review is :mod:`bot.chat_review`, the queue is :mod:`bot.jobs`.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, MediaType, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import BaseModel

from bot.chat_review import (
    FAST_NOTE,
    ChatRequest,
    ChatResponse,
    UnsupportedInput,
    review_path,
    review_source,
    snippet_lines,
)
from bot.errors import CodeAnalysisError, ErrorBody, InvalidInput, JobNotFound, RateLimitExceeded, Unauthorized
from bot.jobs import Jobs, JobState, JobView
from bot.jobs.tasks import CHAT_KEY_PREFIX, REVIEW_CODE
from bot.metrics import Metrics
from bot.settings import Settings
from bot.throttle import Throttle, key_identity

SECURITY_SCHEME = "ApiKey"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_CLEANUP_TTL = 3600


class JobCreated(BaseModel):
    job_id: str


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Removed(BaseModel):
    removed: int


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    described = {
        400: "bad_request: the request is malformed (e.g. the body is not valid JSON)",
        401: "unauthorized: API_KEYS is set and the request has no valid `Authorization: Bearer <key>`",
        404: "job_not_found: no job with that id (never created, or removed after its TTL)",
        413: "payload_too_large: the request body is over the server's cap",
        422: "invalid_input: a field is missing or wrong (the message names it and any limit)",
        429: "rate_limit_exceeded: too many requests from this client; see retry_after / Retry-After",
        500: "code_analysis_error: the review failed (the message says why), or internal_error",
        503: "server_busy: MAX_CONCURRENT_JOBS are queued or running; see retry_after / Retry-After",
    }
    # 400 too: Litestar documents its own ValidationException body (not ours) for any route with parameters.
    always = (400, 401, 429)
    return {
        code: ResponseSpec(ErrorBody, description=described[code], generate_examples=False)
        for code in sorted({*codes, *always})
    }


async def chat_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """API key (constant-time, every key compared), then the moving-window limit for this client (a refusal
    is counted in `companion_rate_limited_total{limit="review"|"poll"}`)."""
    kind = str(handler.opt.get("rate", "review"))
    try:
        await _guard(connection, kind)
    except RateLimitExceeded:
        metrics: Metrics = connection.app.state.metrics
        metrics.rejected(kind)
        raise


async def _guard(connection: ASGIConnection[Any, Any, Any, Any], kind: str) -> None:
    settings: Settings = connection.app.state.settings
    throttle: Throttle = connection.app.state.throttle
    client = connection.client.host if connection.client else "-"
    if not settings.api_keys:
        await throttle.hit(kind, f"ip:{client}")
        return
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    given = given.strip()
    matched = None
    for key in settings.api_keys:
        secret = key.get_secret_value()
        if hmac.compare_digest(given.encode(), secret.encode()) and scheme.lower() == "bearer":
            matched = secret
    if matched is None:
        # Failed attempts count against the caller's address, so guessing keys is throttled too.
        await throttle.hit(kind, f"ip:{client}")
        raise Unauthorized(
            "Missing or invalid API key: send `Authorization: Bearer <key>` with one of the keys in API_KEYS",
            headers={"WWW-Authenticate": 'Bearer realm="ai-dev-companion"'},
        )
    await throttle.hit(kind, key_identity(matched))


def _check(request: ChatRequest) -> None:
    """Refuse what the reviewer cannot read before any work is queued (422 naming the problem)."""
    try:
        review_path(request)
        if request.code_snippet is not None:
            snippet_lines(request.source_code, request.code_snippet)
    except UnsupportedInput as exc:
        raise InvalidInput(f"Invalid input: {exc}") from None


def _status(job_id: str, job: JobView) -> JobStatus:
    return JobStatus(
        job_id=job_id,
        status=job.state,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _key(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise JobNotFound(f"No job with id {job_id!r}")
    return CHAT_KEY_PREFIX + job_id


async def _job(jobs: Jobs, job_id: str) -> JobView:
    job = await jobs.get(_key(job_id))
    if job is None:
        raise JobNotFound(f"No job with id {job_id!r} (unknown, or removed after its result TTL)")
    return job


def _finished(job_id: str, job: JobView) -> Response[Any]:
    """200 with the review when done; the job's own error as 500 code_analysis_error otherwise."""
    if job.state == JobState.DONE:
        return Response(job.result, status_code=200, media_type=MediaType.JSON)
    if job.state == JobState.CANCELLED:
        raise CodeAnalysisError(f"Job {job_id} was cancelled: {job.error}")
    raise CodeAnalysisError(f"Job {job_id} failed: {job.error}")


def _pending(job_id: str, job: JobView) -> Response[Any]:
    return Response(
        _status(job_id, job), status_code=202, headers={"Location": f"/chat/result/{job_id}"}, media_type=MediaType.JSON
    )


async def _submit(jobs: Jobs, request: ChatRequest) -> str:
    job_id = uuid.uuid4().hex
    await jobs.submit(REVIEW_CODE, CHAT_KEY_PREFIX + job_id, {"request": request.model_dump()})
    return job_id


class ChatController(Controller):
    path = "/chat"
    guards = [chat_guard]  # noqa: RUF012 - Litestar's class attributes
    tags = ["chat"]  # noqa: RUF012
    # Required only when API_KEYS is set (then 401 without it).
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        opt={"rate": "review"},
        summary="Review a file or snippet and wait for the result",
        description=(
            "`fast=true`: the deterministic rules only, answered in milliseconds, never an LLM. "
            "Otherwise the full review (the crew when an LLM is configured, else the rules) runs as a job and "
            "this waits up to CHAT_TIMEOUT_SECONDS; if it is still running then, the answer is 202 with the "
            "job's status and a Location to poll, so no work is lost."
        ),
        responses={
            202: ResponseSpec(JobStatus, description="still running: poll the Location"),
            **_errors(400, 413, 422, 500, 503),
        },
    )
    async def chat(
        self,
        state: State,
        data: JSONBody[ChatRequest],
        fast: Annotated[bool, QueryParameter(description="rules only, synchronous, no LLM")] = False,
    ) -> Response[ChatResponse]:
        _check(data)
        if fast:
            response = await asyncio.to_thread(review_source, data, mode_note=FAST_NOTE)
            return Response(response, status_code=200)
        settings: Settings = state.settings
        jobs: Jobs = state.jobs
        job_id = await _submit(jobs, data)
        job = await jobs.wait(CHAT_KEY_PREFIX + job_id, settings.chat_timeout_seconds)
        if job is None:
            raise JobNotFound(f"Job {job_id} disappeared before it finished")
        return _finished(job_id, job) if job.finished else _pending(job_id, job)

    @post(
        "/submit",
        status_code=202,
        opt={"rate": "review"},
        summary="Queue a review; poll /chat/status/{job_id} and /chat/result/{job_id}",
        responses=_errors(400, 413, 422, 503),
    )
    async def submit(self, state: State, data: JSONBody[ChatRequest]) -> Response[JobCreated]:
        _check(data)
        job_id = await _submit(state.jobs, data)
        return Response(JobCreated(job_id=job_id), status_code=202, headers={"Location": f"/chat/status/{job_id}"})

    @get(
        "/status/{job_id:str}",
        opt={"rate": "poll"},
        summary="A job's state: queued, running, done, error or cancelled",
        responses=_errors(404),
    )
    async def status(self, state: State, job_id: FromPath[str]) -> JobStatus:
        return _status(job_id, await _job(state.jobs, job_id))

    @get(
        "/result/{job_id:str}",
        opt={"rate": "poll"},
        summary="A job's review (200), or its status while queued or running (202)",
        responses={202: ResponseSpec(JobStatus, description="not finished yet"), **_errors(404, 500)},
    )
    async def result(self, state: State, job_id: FromPath[str]) -> Response[ChatResponse]:
        job = await _job(state.jobs, job_id)
        return _finished(job_id, job) if job.finished else _pending(job_id, job)

    @delete(
        "/jobs/cleanup",
        status_code=200,
        opt={"rate": "poll"},
        summary="Remove finished chat jobs that finished more than `ttl` seconds ago",
        responses=_errors(422),
    )
    async def cleanup(
        self,
        state: State,
        ttl: Annotated[int, QueryParameter(ge=0, le=10 * 365 * 86400, description="seconds")] = DEFAULT_CLEANUP_TTL,
    ) -> Removed:
        return Removed(removed=await state.jobs.cleanup(CHAT_KEY_PREFIX, ttl))


ROUTES = [ChatController]
