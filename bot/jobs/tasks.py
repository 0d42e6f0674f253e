"""The service's job functions. Each is a :class:`~bot.jobs.worker.Task`; the PR review joins in its issue."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.chat_review import ChatRequest, review_source, review_source_with_llm
from bot.jobs.cache import ChunkStore
from bot.jobs.queue import Jobs
from bot.jobs.worker import Task, TransientError
from bot.llm import RULES_SETTING_NOTE, crew_reviewer, llm_options, mode_note
from bot.settings import Settings
from reviewer.crew import CrewReviewer

__all__ = ["CHAT_KEY_PREFIX", "REVIEW_CODE", "REVIEW_PULL_REQUEST", "RULES_SETTING_NOTE", "service_tasks"]

REVIEW_CODE = "review_code"
REVIEW_PULL_REQUEST = "review_pull_request"
CHAT_KEY_PREFIX = "chat:"


def service_tasks(settings: Settings, jobs: Jobs | None = None, llm: CrewReviewer | None = None) -> list[Task]:
    """The job functions for these settings. `jobs` gives the LLM its chunk cache (the queue's backend);
    `llm`, a reviewer built (and warmed) by the caller, else one for these settings when an LLM is configured."""
    note = mode_note(settings)
    llm = llm or crew_reviewer(settings)
    options = llm_options(settings, ChunkStore(jobs, settings.llm_cache_ttl_seconds) if jobs is not None else None)

    async def review_code(request: dict[str, Any]) -> dict[str, Any]:
        parsed = ChatRequest.model_validate(request)
        if llm is None:
            # The rules are CPU work: off the event loop, which in the embedded mode also serves HTTP.
            response = await asyncio.to_thread(review_source, parsed, mode_note=note)
        else:
            response = await review_source_with_llm(parsed, llm, options)
        return response.model_dump(mode="json")

    return [Task(REVIEW_CODE, review_code, transient=(TransientError,))]
