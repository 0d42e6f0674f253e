"""The LLM reviewer for these settings: which one (if any), its budgets, price and cache. Worker side only;
building it imports nothing heavy (CrewAI is imported at the first chunk, see reviewer.crew)."""

from __future__ import annotations

from bot.chat_review import LLMOptions
from bot.settings import Settings
from reviewer.crew import CrewReviewer, LLMConfig
from reviewer.engine import RULES_ONLY_NOTE, ChunkCache, LLMBudget, Price

LLM_SHARE_OF_JOB_TIME = 0.8
RULES_SETTING_NOTE = "Rules only: REVIEWER=rules, so no LLM is used."


def mode_note(settings: Settings) -> str:
    """Why a review is rules only (empty when the LLM reviews too): said out loud in every summary."""
    if settings.reviewer == "rules":
        return RULES_SETTING_NOTE
    if not settings.llm_configured:
        return RULES_ONLY_NOTE
    return ""


def crew_reviewer(settings: Settings) -> CrewReviewer | None:
    if mode_note(settings) or settings.openai_api_key is None:
        return None
    return CrewReviewer(
        LLMConfig(
            model=settings.model,
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
    )


def llm_options(settings: Settings, cache: ChunkCache | None) -> LLMOptions:
    prices = settings.price_table()
    price = Price(*prices[settings.model]) if settings.model in prices else None
    budget = LLMBudget(
        call_tokens=settings.llm_call_budget_tokens,
        review_tokens=settings.llm_review_budget_tokens,
        concurrency=settings.llm_concurrency,
        # Leave the job time to publish the rules' findings when the LLM is slow.
        deadline=settings.job_timeout_seconds * LLM_SHARE_OF_JOB_TIME,
    )
    return LLMOptions(budget=budget, price=price, cache=cache)
