"""What the LLM proposes (the crew's structured output) and how a proposal becomes a Finding.

The models are strict-schema friendly (every field required, no extra keys) because CrewAI's
``output_pydantic`` sends them as an OpenAI strict JSON schema. Nothing here imports CrewAI.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from reviewer.anchor import NO_CHANGE, applies_cleanly, diff_block, locate
from reviewer.diff import FileDiff
from reviewer.models import Category, Finding, Severity

CREW_RULE_ID = "crew"
MAX_TITLE = 120
MAX_BODY = 2000


class Proposal(BaseModel):
    """One finding proposed by the LLM: `quote` is the exact text of the line (or lines) it is about."""

    model_config = ConfigDict(extra="forbid")

    path: str
    line: int = Field(ge=1)
    end_line: int = Field(ge=1)
    quote: str
    severity: Severity
    category: Category
    title: str
    body: str
    suggestion: str | None = Field(description="replacement code for exactly lines line..end_line, or null")
    confidence: float = Field(ge=0, le=1)


class Proposals(BaseModel):
    model_config = ConfigDict(extra="forbid")

    findings: list[Proposal]


class Verdict(BaseModel):
    """The lead's word on one proposal it keeps: `id` is the proposal's number in the lead's prompt. Where the
    proposal is (path, lines, quote) and its suggestion are not the lead's to change, so it never repeats them."""

    model_config = ConfigDict(extra="forbid")

    id: int
    severity: Severity
    title: str | None = Field(description="a better title, or null to keep the proposal's")
    body: str | None = Field(description="a better body, or null to keep the proposal's")
    confidence: float = Field(ge=0, le=1)


class Verdicts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: list[Verdict]


def apply_verdicts(proposals: Sequence[Proposal], verdicts: Verdicts) -> list[Proposal]:
    """The proposals the lead kept, in its order, with its severity, confidence and any rewording; a verdict
    on a number it was not shown, or a second one on the same proposal, is ignored."""
    kept: dict[int, Proposal] = {}
    for verdict in verdicts.keep:
        if 1 <= verdict.id <= len(proposals) and verdict.id not in kept:
            update: dict[str, object] = {"severity": verdict.severity, "confidence": verdict.confidence}
            if verdict.title and verdict.title.strip():
                update["title"] = verdict.title
            if verdict.body and verdict.body.strip():
                update["body"] = verdict.body
            kept[verdict.id] = proposals[verdict.id - 1].model_copy(update=update)
    return list(kept.values())


# `@name` in prose (not inside `code`): GitHub would notify that user or team. Emails and `x@y` are not mentions.
_MENTION = re.compile(r"(?<![\w`@/.])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:/[A-Za-z0-9_.-]+)?)\b")
_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.DOTALL)


def neutralise_mentions(text: str) -> str:
    """The LLM's prose with every `@mention` put in a code span, so a review never pings anyone (code spans and
    fenced blocks are left as they are: `@Composable` in code stays code)."""
    parts = _CODE.split(text)
    return "".join(part if index % 2 else _MENTION.sub(r"`@\1`", part) for index, part in enumerate(parts))


def to_finding(proposal: Proposal, lines: Sequence[str], diff: FileDiff) -> tuple[Finding | None, str]:
    """Anchor a proposal in the new file; (None, why) when its quote is not there."""
    anchor = locate(proposal.quote, lines, proposal.line)
    if anchor is None:
        return None, f"{proposal.path}:{proposal.line}: the quoted line is not in the file"
    message = neutralise_mentions(proposal.body.strip()[:MAX_BODY])
    suggestion = None
    if proposal.suggestion is not None:
        same_span = proposal.end_line - proposal.line == anchor.end_line - anchor.line
        ok, why = applies_cleanly(proposal.path, lines, anchor, proposal.suggestion, diff)
        if ok and same_span:
            suggestion = proposal.suggestion
        elif why != NO_CHANGE:
            message += "\n\n" + diff_block(lines, anchor, proposal.suggestion)
    finding = Finding(
        rule_id=CREW_RULE_ID,
        title=neutralise_mentions(proposal.title.strip()[:MAX_TITLE]) or "Review finding",
        severity=proposal.severity,
        category=proposal.category,
        path=proposal.path,
        line=anchor.line,
        end_line=anchor.end_line,
        message=message,
        suggestion=suggestion,
        source="crew",
    )
    return finding, ""
