"""`POST /api/github/webhooks`: verify, decide, enqueue, answer. Nothing here calls GitHub or the LLM.

Fail closed: without GITHUB_WEBHOOK_SECRET every delivery is refused (and /readyz says so). The signature is
checked over the raw body in constant time before the body is parsed. A delivery id seen in the last day
(GitHub's redelivery) is acknowledged and does nothing; the memory lives in the queue's backend, so every
replica shares it. Decisions come from :mod:`bot.github.events` (a small (event, action) router).

Every delivery is counted (`companion_webhook_deliveries_total{event, outcome}`), and every log line about it
carries its delivery id, event, and (once the payload is read) installation, `owner/repo` and PR number.
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

from bot.context import bound
from bot.errors import BadRequest, ErrorBody, Unauthorized
from bot.github.events import Ignored, PayloadError, Pong, ReviewRequest, router
from bot.jobs import Jobs
from bot.jobs.deliveries import Deliveries
from bot.jobs.tasks import REVIEW_PULL_REQUEST
from bot.metrics import Metrics, webhook_failure
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


def delivery_log_fields(payload: dict[str, Any]) -> dict[str, str]:
    """The log fields a payload gives: installation id, `owner/repo`, pull request number (what is there)."""
    fields: dict[str, str] = {}
    installation, repository = payload.get("installation"), payload.get("repository")
    if isinstance(installation, dict) and isinstance(installation.get("id"), int):
        fields["installation"] = str(installation["id"])
    if isinstance(repository, dict) and isinstance(repository.get("full_name"), str):
        fields["repo"] = repository["full_name"][:200]
    pull, issue = payload.get("pull_request"), payload.get("issue")
    if isinstance(pull, dict) and isinstance(pull.get("number"), int):
        fields["pr"] = str(pull["number"])
    elif isinstance(issue, dict) and "pull_request" in issue and isinstance(issue.get("number"), int):
        fields["pr"] = str(issue["number"])
    return fields


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
    metrics: Metrics = state.metrics
    event = request.headers.get("X-GitHub-Event", "")
    try:
        outcome, response = await _receive(request, state)
    except Exception as exc:
        metrics.webhook(event, webhook_failure(exc))
        raise
    metrics.webhook(event, outcome)
    return response


async def _receive(request: Request[Any, Any, Any], state: State) -> tuple[str, Response[dict[str, Any]]]:
    """(outcome, answer): `ping`, `ignored`, `duplicate` (a redelivery), `queued`, `already_queued`."""
    settings: Settings = state.settings
    if settings.github_webhook_secret is None:
        raise Unauthorized(NOT_CONFIGURED)
    body = await request.body()
    verify(settings.github_webhook_secret.get_secret_value().encode(), body, request.headers.get(SIGNATURE_HEADER))
    event = _header(request, "X-GitHub-Event")
    delivery = _header(request, "X-GitHub-Delivery")
    with bound(delivery=delivery, event=event):
        media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise BadRequest(
                f"Content-Type must be application/json (set it in the GitHub App's webhook), not {media!r}"
            )
        payload = _payload(body, delivery, event)
        with bound(**delivery_log_fields(payload)):
            try:
                decision = router.dispatch(event, payload)
            except PayloadError as exc:
                log.warning("delivery %s: %s", delivery, exc)
                raise BadRequest(str(exc)) from None
            if isinstance(decision, Pong):
                return "ping", _answer({"ok": True, "event": "ping"}, 200)
            if isinstance(decision, Ignored):
                log.info("delivery %s (%s): ignored, %s", delivery, event, decision.reason)
                return "ignored", _answer({"ignored": decision.reason})
            return await _enqueue(state, decision, delivery, event)


async def _enqueue(
    state: State, request: ReviewRequest, delivery: str, event: str
) -> tuple[str, Response[dict[str, Any]]]:
    jobs: Jobs = state.jobs
    deliveries: Deliveries = state.deliveries
    if not await deliveries.first_time(delivery):
        log.info("delivery %s (%s): a redelivery, already taken", delivery, event)
        return "duplicate", _answer({"ignored": f"delivery {delivery} was already received"})
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
    answer = _answer({"queued": request.key, "status": submission.job.state, "created": submission.created})
    return ("queued" if submission.created else "already_queued"), answer


ROUTES = [receive]
