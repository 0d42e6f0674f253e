"""The service's job functions. Each is a :class:`~bot.jobs.worker.Task`; the PR review joins in its issue."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.chat_review import ChatRequest, review_source
from bot.jobs.worker import Task, TransientError
from bot.settings import Settings
from reviewer.engine import RULES_ONLY_NOTE

REVIEW_CODE = "review_code"
CHAT_KEY_PREFIX = "chat:"

RULES_SETTING_NOTE = "Rules only: REVIEWER=rules, so no LLM is used."
CREW_NOT_BUILT_NOTE = "Rules only: the LLM review (crew) is not part of this version yet; only the rules ran."


def mode_note(settings: Settings) -> str:
    """Said out loud in every chat summary: which reviewer ran and why."""
    if settings.reviewer == "rules":
        return RULES_SETTING_NOTE
    if not settings.llm_configured:
        return RULES_ONLY_NOTE
    return CREW_NOT_BUILT_NOTE


def service_tasks(settings: Settings) -> list[Task]:
    note = mode_note(settings)

    async def review_code(request: dict[str, Any]) -> dict[str, Any]:
        parsed = ChatRequest.model_validate(request)
        # The rules are CPU work: off the event loop, which in the embedded mode also serves HTTP.
        response = await asyncio.to_thread(review_source, parsed, mode_note=note)
        return response.model_dump(mode="json")

    return [Task(REVIEW_CODE, review_code, transient=(TransientError,))]
