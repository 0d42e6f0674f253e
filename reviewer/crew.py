"""The LLM reviewer: CrewAI with two agents, an Android reviewer that proposes and a review lead that verifies.

Each chunk (see :mod:`reviewer.budget`) goes to the reviewer; only when it proposes something does the lead
see the proposals, each with a few lines of the diff around its quote, and the rule findings of those files.
Running the two agents as two kickoffs (rather than one two-task crew) saves the lead's call when there is
nothing to verify and keeps the chunk out of the lead's prompt: a team pays for every token.

CrewAI is imported only here, lazily, in the worker (`import crewai` takes ~3 s and ~2,400 modules); its
telemetry, tracing and version checks are switched off before the import (it would otherwise call home).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from reviewer.budget import Chunk, estimate_tokens
from reviewer.models import Finding
from reviewer.proposals import Proposal, Proposals, Verdicts, apply_verdicts

if TYPE_CHECKING:
    import httpx

# Set (unless the operator set them) before `import crewai`: no telemetry, tracing or version checks.
CREWAI_OFFLINE = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
}
Answer = TypeVar("Answer", bound=BaseModel)
EXCERPT_LINES = 2  # lines of context around each proposal's quote for the lead

REVIEWER_ROLE = "Senior Android reviewer"
REVIEWER_GOAL = (
    "Find real defects rules cannot: logic errors, races, coroutine and Flow misuse, Compose state bugs, lifecycle "
    "leaks, misuse of Room, Hilt or Gradle, security holes. No style or trivia."
)
REVIEWER_BACKSTORY = "You comment only on what you would block."
LEAD_ROLE = "Review lead"
LEAD_GOAL = "Verify proposed review findings."
LEAD_BACKSTORY = "A false or petty comment costs more than a missed nit."

REVIEW_TASK = """Review the changed code. Rows are NUMBER MARK TEXT: NUMBER is the new file's line; MARK + is added,
- removed (no number), blank context. Report only problems in added lines or code they break, each with path;
line..end_line; quote (the exact text of those lines, no number or mark); severity (blocker: crash, data loss,
leaked secret; major: real bug; minor: likely problem; nit: rarely); category; title; body (problem and fix, 2-4
sentences); suggestion (replacement for exactly those lines, same indentation) or null; confidence 0-1.
{rules}{instructions}{skipped}
CHANGED CODE:
{code}"""

LEAD_TASK = """Check each proposed finding against its code (> marks its lines). Keep only those that are right, new
(no rule finding covers them) and worth a senior reviewer's comment, not wrong, speculative, duplicate or style
ones, nor ones with wrong suggested code. For each kept: id; severity; title and body improved, or null to keep
them; confidence 0-1 that a senior reviewer would agree.
{rules}
PROPOSED:
{proposals}"""

REVIEW_RULES = "Already reported by rules (do not repeat):"
LEAD_RULES = "\nRULE FINDINGS:"
EXPECTED = "JSON per the response schema."


@dataclass(frozen=True, slots=True)
class AgentSpec:
    role: str
    goal: str
    backstory: str


REVIEWER = AgentSpec(REVIEWER_ROLE, REVIEWER_GOAL, REVIEWER_BACKSTORY)
LEAD = AgentSpec(LEAD_ROLE, LEAD_GOAL, LEAD_BACKSTORY)


@dataclass(frozen=True, slots=True)
class LLMConfig:
    model: str
    api_key: str
    base_url: str | None = None
    timeout: float = 60.0  # seconds per HTTP request
    max_retries: int = 3  # the OpenAI SDK's retries on 429/5xx/timeouts, honouring retry-after


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls


class LLMFailed(Exception):
    """A chunk's review failed (the cause is chained); `usage` is what the calls the API answered cost."""

    def __init__(self, usage: Usage) -> None:
        super().__init__("the LLM review of a chunk failed")
        self.usage = usage


# The usage of the chunk being reviewed in this context (CrewAI's threads copy the context of the kickoff).
_CURRENT_USAGE: ContextVar[Usage | None] = ContextVar("llm_usage", default=None)


class UsageMeter:
    """Counts the `usage` of every completion the API answers into the current chunk's Usage, as CrewAI's
    transport interceptor (one per pooled LLM; the chunk is found through a context variable).

    CrewAI's own count (`CrewOutput.token_usage`) leaves out the answers that failed the schema and is lost
    when a kickoff raises; the API bills them all. Registered as a CrewAI `BaseInterceptor` by load_crewai.
    """

    def _count(self, response: httpx.Response) -> None:
        usage = _CURRENT_USAGE.get()
        try:
            reported = json.loads(response.content).get("usage") or {}
            prompt, completion = int(reported.get("prompt_tokens") or 0), int(reported.get("completion_tokens") or 0)
        except (ValueError, TypeError, AttributeError):
            return  # not a completion: nothing to count
        if usage is not None:
            usage.add(Usage(prompt, completion, 1))

    @staticmethod
    def _answered(response: httpx.Response) -> bool:
        return response.is_success and response.headers.get("content-type", "").startswith("application/json")

    def on_outbound(self, message: httpx.Request) -> httpx.Request:
        # CrewAI gives each LLM its own httpx client and never closes it: let no connection outlive its answer.
        message.headers["Connection"] = "close"
        return message

    def on_inbound(self, message: httpx.Response) -> httpx.Response:
        if self._answered(message):
            message.read()
            self._count(message)
        return message

    async def aon_outbound(self, message: httpx.Request) -> httpx.Request:
        return self.on_outbound(message)

    async def aon_inbound(self, message: httpx.Response) -> httpx.Response:
        if self._answered(message):
            await message.aread()
            self._count(message)
        return message


@dataclass(slots=True)
class ChunkInput:
    """Everything one chunk's review needs besides the code."""

    chunk: Chunk
    rule_findings: Sequence[Finding] = ()
    instructions: str = ""
    skipped_paths: Sequence[str] = ()
    new_lines: dict[str, list[str]] = field(default_factory=dict)  # path -> the new file's lines, for excerpts


def _rules_text(findings: Sequence[Finding], heading: str) -> str:
    """The rule findings under `heading`, grouped by file (a path is said once: paths are long and cost tokens);
    nothing at all when there are none."""
    if not findings:
        return ""
    lines = [heading]
    for path in dict.fromkeys(f.path for f in findings):
        lines.append(path)
        lines += [f"  {f.line} [{f.rule_id}] {f.message}" for f in findings if f.path == path]
    return "\n".join(lines) + "\n"


def review_prompt(item: ChunkInput) -> str:
    instructions = f"Repository instructions:\n{item.instructions.strip()}\n" if item.instructions else ""
    skipped = (
        "Not shown (budget), do not guess about: " + ", ".join(item.skipped_paths) + "\n" if item.skipped_paths else ""
    )
    return REVIEW_TASK.format(
        rules=_rules_text(item.rule_findings, REVIEW_RULES),
        instructions=instructions,
        skipped=skipped,
        code=item.chunk.text(),
    )


def _excerpt(proposal: Proposal, lines: list[str] | None) -> str:
    """A few lines of the new file around the proposal, its own lines marked `>`."""
    if not lines:
        return ""
    low = max(1, proposal.line - EXCERPT_LINES)
    high = min(len(lines), proposal.end_line + EXCERPT_LINES)
    return "\n".join(
        f"{'>' if proposal.line <= n <= proposal.end_line else ' '}{n:4} {lines[n - 1]}" for n in range(low, high + 1)
    )


def lead_prompt(item: ChunkInput, proposals: Sequence[Proposal]) -> str:
    """Each proposal, numbered, under its file: where, severity, category, title, body, suggested code and the
    code around it. Not its quote (the excerpt marks its lines) and no JSON: the lead answers by number."""
    files: list[str] = []
    numbered = list(enumerate(proposals, start=1))
    for path in dict.fromkeys(p.path for p in proposals):
        blocks: list[str] = []
        for number, p in numbered:
            if p.path != path:
                continue
            where = f"{p.line}" if p.end_line == p.line else f"{p.line}-{p.end_line}"
            block = [f"#{number} line {where} {p.severity.value} {p.category.value}: {p.title.strip()}", p.body.strip()]
            if p.suggestion is not None:
                block += ["Suggested code:", p.suggestion.rstrip()]
            block.append(_excerpt(p, item.new_lines.get(path)))
            blocks.append("\n".join(block))
        files.append(f"FILE {path}\n" + "\n\n".join(blocks))
    paths = {p.path for p in proposals}
    rules = [f for f in item.rule_findings if f.path in paths]
    return LEAD_TASK.format(rules=_rules_text(rules, LEAD_RULES), proposals="\n\n".join(files))


def prompt_overhead() -> int:
    """Tokens every reviewer call carries besides the code (role, task text, the response_format schema)."""
    schema = json.dumps(Proposals.model_json_schema())
    static = REVIEWER_ROLE + REVIEWER_GOAL + REVIEWER_BACKSTORY + REVIEW_TASK + EXPECTED + schema
    return estimate_tokens(static) + 150  # CrewAI's own framing


class _NoTaskLog:
    """Stands in for CrewAI's kickoff log (`latest_kickoff_task_outputs.db` under XDG_DATA_HOME), which would
    keep every prompt, and so the reviewed code, on disk for `crewai replay`, a command this service never runs."""

    def update(self, task_index: int, log: dict[str, Any]) -> None:
        pass

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass

    def reset(self) -> None:
        pass

    def load(self) -> list[dict[str, Any]]:
        return []


_crewai: ModuleType | None = None


def load_crewai() -> ModuleType:
    """Import CrewAI once, offline and quiet (about 3 s): from a worker thread (see CrewReviewer._crew) or at
    the start of a `python -m bot worker`, never by the web process's own requests."""
    global _crewai  # noqa: PLW0603 - one import per process
    if _crewai is None:
        for name, value in CREWAI_OFFLINE.items():
            os.environ.setdefault(name, value)
        importlib.import_module("openai.resources")  # the first kickoff otherwise pays for it (~0.5 s)
        _crewai = importlib.import_module("crewai")
        importlib.import_module("crewai.llms.hooks.base").BaseInterceptor.register(UsageMeter)
    return _crewai


@dataclass(slots=True)
class _Slot:
    """One LLM object and the agents built on it, lent to one kickoff at a time. CrewAI keeps an agent's
    executor and updates it for the next task (it resets its state on every run): reusing the agent saves the
    executor's construction, a new pydantic state class each time (about 20 ms of CPU a kickoff)."""

    llm: Any
    agents: dict[str, Any] = field(default_factory=dict)


class CrewReviewer:
    """Runs one chunk through the two agents; returns the lead's verified proposals and the tokens used."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self._idle: list[_Slot] = []  # not in use: built once, lent to one kickoff at a time

    @property
    def model(self) -> str:
        return self.config.model

    def _llm(self) -> Any:
        crewai = load_crewai()
        return crewai.LLM(
            model=f"openai/{self.config.model}",
            base_url=self.config.base_url or "https://api.openai.com/v1",
            api_key=self.config.api_key,
            temperature=0.0,
            timeout=self.config.timeout,
            max_retries=self.config.max_retries,
            interceptor=UsageMeter(),
        )

    async def warm(self, count: int) -> None:
        """Import CrewAI and build `count` LLM objects ahead (a worker at start), so that the first burst of
        reviews does not build them all at once."""
        await asyncio.to_thread(load_crewai)
        while len(self._idle) < count:
            self._idle.append(_Slot(await asyncio.to_thread(self._llm)))

    async def _borrow(self) -> _Slot:
        """An idle slot, or a new one (about 35 ms: two OpenAI clients and their TLS set-up, in a thread)."""
        return self._idle.pop() if self._idle else _Slot(await asyncio.to_thread(self._llm))

    def _crew(self, spec: AgentSpec, description: str, answer: type[BaseModel], slot: _Slot) -> Any:
        """The slot's agent for this role (built at its first task), one task, one crew."""
        crewai = load_crewai()
        agent = slot.agents.get(spec.role)
        if agent is None:
            agent = slot.agents[spec.role] = crewai.Agent(
                role=spec.role,
                goal=spec.goal,
                backstory=spec.backstory,
                llm=slot.llm,
                allow_delegation=False,
                max_iter=1,
                max_retry_limit=1,  # one repair attempt when the output fails the schema
                cache=False,
                respect_context_window=False,
                verbose=False,
            )
        # The repair attempts are counted on the agent for its lifetime (CrewAI 1.15, Agent._times_executed, never
        # reset): every kickoff starts with its one repair attempt.
        agent._times_executed = 0
        task = crewai.Task(
            description=description,
            expected_output=EXPECTED,
            agent=agent,
            output_pydantic=answer,
            # The provider's native structured output (strict json_schema as response_format). Without it
            # CrewAI also pastes the indented schema into every prompt: about 800 tokens a call for nothing.
            response_model=answer,
        )
        crew = crewai.Crew(agents=[agent], tasks=[task], verbose=False, memory=False, cache=False, tracing=False)
        crew._task_output_handler = _NoTaskLog()
        return crew

    async def _ask(self, agent: AgentSpec, description: str, answer: type[Answer]) -> Answer:
        from crewai.events.listeners.tracing.utils import set_suppress_tracing_messages  # noqa: PLC0415
        from crewai.events.utils.console_formatter import set_suppress_console_output  # noqa: PLC0415

        slot = await self._borrow()
        crew = await asyncio.to_thread(self._crew, agent, description, answer, slot)
        # Context variables: set in the task that awaits the kickoff (its threads copy this context).
        set_suppress_console_output(True)
        set_suppress_tracing_messages(True)
        output = await crew.akickoff()
        # Back to the pool only after a clean finish: a cancelled kickoff may still use it in its thread.
        # (CrewAI's per-LLM lifetime counters grow with reuse; the usage counted here comes from UsageMeter.)
        self._idle.append(slot)
        result = output.pydantic
        if not isinstance(result, answer):
            raise ValueError(f"the {agent.role.lower()} returned no structured answer")
        return result

    async def review(self, item: ChunkInput) -> tuple[list[Proposal], Usage]:
        """The lead's verified proposals and what every answered call cost; LLMFailed (with that cost) if the
        chunk could not be reviewed."""
        usage = Usage()
        _CURRENT_USAGE.set(usage)  # this chunk's own task: the value goes with it
        if _crewai is None:
            await asyncio.to_thread(load_crewai)
        try:
            proposed = await self._ask(REVIEWER, review_prompt(item), Proposals)
            if not proposed.findings:
                return [], usage
            verdicts = await self._ask(LEAD, lead_prompt(item, proposed.findings), Verdicts)
        except Exception as exc:
            raise LLMFailed(usage) from exc
        return apply_verdicts(proposed.findings, verdicts), usage


async def gather_limited(limit: int, *jobs: Any) -> list[Any]:
    """Run coroutines with at most `limit` at once, results in order, exceptions returned (not raised)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
