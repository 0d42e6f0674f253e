"""The service's job functions. Each is a :class:`~bot.jobs.worker.Task`; the PR review joins in its issue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from limits.aio.storage import Storage

from bot.chat_review import ChatRequest, review_source, review_source_with_llm
from bot.github.client import GitHubApp, GitHubUnavailable
from bot.jobs.cache import ChunkStore
from bot.jobs.pull_review import PullReviewer
from bot.jobs.queue import Jobs
from bot.jobs.worker import Task, TransientError
from bot.llm import RULES_SETTING_NOTE, crew_reviewer, llm_options, mode_note
from bot.metrics import Metrics
from bot.settings import Settings
from bot.throttle import InstallationThrottle, create_storage
from reviewer.crew import CrewReviewer

__all__ = ["CHAT_KEY_PREFIX", "REVIEW_CODE", "REVIEW_PULL_REQUEST", "RULES_SETTING_NOTE", "service_tasks"]

REVIEW_CODE = "review_code"
REVIEW_PULL_REQUEST = "review_pull_request"
CHAT_KEY_PREFIX = "chat:"


def service_tasks(
    settings: Settings,
    jobs: Jobs | None = None,
    llm: CrewReviewer | None = None,
    *,
    storage: Storage | None = None,
    github: Callable[[], GitHubApp] | None = None,
    metrics: Metrics | None = None,
) -> list[Task]:
    """The job functions for these settings. `jobs` gives the LLM its chunk cache (the queue's backend);
    `llm`, a reviewer built (and warmed) by the caller, else one for these settings when an LLM is configured;
    `storage`, the `limits` storage of the installation throttle (RATE_LIMIT_STORAGE_URI: the caller's, so it
    is shared and closed by its owner; a private in-memory one when None); `github`, how to build the App
    client (tests give it a transport); `metrics`, where the jobs record (the worker's or the app's registry; a
    private one when None). Call `close_tasks` at shutdown."""
    metrics = metrics or Metrics()
    note = mode_note(settings)
    llm = llm or crew_reviewer(settings)
    options = llm_options(settings, ChunkStore(jobs, settings.llm_cache_ttl_seconds) if jobs is not None else None)
    pulls = PullReviewer(
        github_factory=github or (lambda: GitHubApp(settings, metrics=metrics)),
        throttle=InstallationThrottle.create(storage or create_storage("memory://"), settings.installation_rate_limit),
        llm=llm,
        options=options if llm is not None else None,
        mode_note=note,
        metrics=metrics,
    )

    async def review_code(request: dict[str, Any]) -> dict[str, Any]:
        parsed = ChatRequest.model_validate(request)
        if llm is None:
            # The rules are CPU work: off the event loop, which in the embedded mode also serves HTTP.
            response = await asyncio.to_thread(review_source, parsed, mode_note=note)
        else:
            response = await review_source_with_llm(parsed, llm, options, observe=metrics.llm_review)
        return response.model_dump(mode="json")

    return [
        Task(REVIEW_CODE, review_code, transient=(TransientError,)),
        Task(
            REVIEW_PULL_REQUEST,
            pulls.run,
            transient=(TransientError, GitHubUnavailable),
            close=pulls.aclose,
            log_fields=pull_log_fields,
        ),
    ]


def pull_log_fields(kwargs: dict[str, Any]) -> dict[str, str]:
    """What every log line of a pull-request review carries: the delivery that queued it (also sent to GitHub as
    X-Request-ID), the installation, `owner/repo` and the PR number."""
    fields = {
        "delivery": kwargs.get("delivery"),
        "installation": kwargs.get("installation_id"),
        "repo": f"{kwargs.get('owner')}/{kwargs.get('repo')}" if kwargs.get("owner") else None,
        "pr": kwargs.get("number"),
    }
    return {name: str(value) for name, value in fields.items() if value is not None}
