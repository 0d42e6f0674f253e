"""`POST /api/github/webhooks`: verify, decide, enqueue, answer. Nothing here calls GitHub or the LLM.

Fail closed: without GITHUB_WEBHOOK_SECRET every delivery is refused (and /readyz says so). The signature is
checked over the raw body in constant time before the body is parsed. A delivery id seen in the last day
(GitHub's redelivery) is acknowledged and does nothing; the memory lives in the queue's backend, so every
replica shares it. Decisions come from :mod:`bot.github.events` (a small (event, action) router).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from bot.errors import BadRequest, ErrorBody, Unauthorized
from bot.github.events import Ignored, PayloadError, Pong, ReviewRequest, router
from bot.jobs import Jobs
from bot.jobs.deliveries import Deliveries
from bot.jobs.tasks import REVIEW_PULL_REQUEST
from bot.settings import Settings

log = logging.getLogger("bot.webhooks")

WEBHOOK_PATH = "/api/github/webhooks"
SIGNATURE_HEADER = "X-Hub-Signature-256"
NOT_CONFIGURED = (
    "Webhooks are refused: GITHUB_WEBHOOK_SECRET is not set. Set it to the webhook secret of the GitHub App."
)
MISSING_SIGNATURE = (
    f"{SIGNATURE_HEADER} is missing: give the GitHub App a webhook secret and set the same value as "
    "GITHUB_WEBHOOK_SECRET."
)
BAD_SIGNATURE = (
    f"{SIGNATURE_HEADER} does not match the body: verify that the webhook secret matches GITHUB_WEBHOOK_SECRET."
)
# GitHub caps webhook payloads at 25 MB (docs: "Webhook events and payloads"); a bigger body is not from it.
MAX_DELIVERY_BYTES = 25 * 1024 * 1024
AUTOMATIC = frozenset({"opened", "reopened", "synchronize", "ready_for_review"})


def webhook_status(settings: Settings) -> str:
    """For /readyz: whether deliveries are taken, and why not."""
    return "ok" if settings.github_webhook_secret is not None else NOT_CONFIGURED


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise Unauthorized unless `header` is the body's HMAC-SHA256 under `secret` (constant-time compare)."""
    if not header:
        raise Unauthorized(MISSING_SIGNATURE)
    if not hmac.compare_digest(signature(secret, body).encode(), header.strip().encode("latin-1", "replace")):
        raise Unauthorized(BAD_SIGNATURE)


def _header(request: Request[Any, Any, Any], name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise BadRequest(f"{name} is missing: not a GitHub webhook delivery")
    if len(value) > 200:
        raise BadRequest(f"{name} is longer than 200 characters")
    return value


def _payload(body: bytes, delivery: str, event: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("delivery %s (%s): the body is not JSON: %s", delivery, event, exc)
        raise BadRequest(f"Malformed JSON body: {exc}") from None
    if not isinstance(payload, dict):
        log.warning("delivery %s (%s): the body is JSON but not an object", delivery, event)
        raise BadRequest("The body must be a JSON object")
    return payload


def _answer(body: dict[str, Any], status: int = 202) -> Response[dict[str, Any]]:
    return Response(body, status_code=status, media_type=MediaType.JSON)


@post(
    WEBHOOK_PATH,
    status_code=202,
    summary="GitHub App webhook deliveries (signed by GitHub; not for other clients)",
    description=(
        '202 `{"queued", "status", "created"}` for a review, or `{"ignored": reason}` (also for a '
        "redelivery); 200 for `ping`."
    ),
    request_max_body_size=MAX_DELIVERY_BYTES,
    responses={
        code: ResponseSpec(ErrorBody, description=text, generate_examples=False)
        for code, text in {
            400: "bad_request: not JSON, not the payload its event promises, or GitHub's headers missing",
            401: "unauthorized: no or wrong X-Hub-Signature-256, or GITHUB_WEBHOOK_SECRET is not set",
            413: "payload_too_large: over GitHub's own 25 MB cap",
            503: "server_busy: MAX_CONCURRENT_JOBS are queued or running (the delivery is not remembered)",
        }.items()
    },
)
async def receive(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    settings: Settings = state.settings
    if settings.github_webhook_secret is None:
        raise Unauthorized(NOT_CONFIGURED)
    body = await request.body()
    verify(settings.github_webhook_secret.get_secret_value().encode(), body, request.headers.get(SIGNATURE_HEADER))
    event = _header(request, "X-GitHub-Event")
    delivery = _header(request, "X-GitHub-Delivery")
    media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise BadRequest(f"Content-Type must be application/json (set it in the GitHub App's webhook), not {media!r}")
    payload = _payload(body, delivery, event)
    try:
        decision = router.dispatch(event, payload)
    except PayloadError as exc:
        log.warning("delivery %s: %s", delivery, exc)
        raise BadRequest(str(exc)) from None
    if isinstance(decision, Pong):
        return _answer({"ok": True, "event": "ping"}, 200)
    if isinstance(decision, Ignored):
        log.info("delivery %s (%s): ignored, %s", delivery, event, decision.reason)
        return _answer({"ignored": decision.reason})
    return await _enqueue(state, decision, delivery, event)


async def _enqueue(state: State, request: ReviewRequest, delivery: str, event: str) -> Response[dict[str, Any]]:
    jobs: Jobs = state.jobs
    deliveries: Deliveries = state.deliveries
    if not await deliveries.first_time(delivery):
        log.info("delivery %s (%s): a redelivery, already taken", delivery, event)
        return _answer({"ignored": f"delivery {delivery} was already received"})
    try:
        submission = await jobs.submit(
            REVIEW_PULL_REQUEST,
            request.key,
            {**request.job_kwargs(), "delivery": delivery},
            supersede=request.pr_key if request.trigger in AUTOMATIC else None,
        )
    except BaseException:
        await deliveries.forget(delivery)  # not queued (e.g. ServerBusy): GitHub's redelivery may try again
        raise
    log.info(
        "delivery %s (%s): review %s %s",
        delivery,
        event,
        request.key,
        "queued" if submission.created else f"already {submission.job.state}",
    )
    return _answer({"queued": request.key, "status": submission.job.state, "created": submission.created})


ROUTES = [receive]
