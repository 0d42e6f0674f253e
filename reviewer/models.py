"""The review's vocabulary: severities, categories, findings and the review itself. Plain data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal


class Severity(StrEnum):
    BLOCKER = "blocker"
    MAJOR = "major"
    MINOR = "minor"
    NIT = "nit"

    @property
    def rank(self) -> int:
        """0 for blocker (most severe) to 3 for nit."""
        return _SEVERITY_ORDER.index(self)

    def at_least(self, threshold: Severity) -> bool:
        return self.rank <= threshold.rank


_SEVERITY_ORDER = (Severity.BLOCKER, Severity.MAJOR, Severity.MINOR, Severity.NIT)


class Category(StrEnum):
    CORRECTNESS = "correctness"
    CONCURRENCY = "concurrency"
    LIFECYCLE = "lifecycle"
    SECURITY = "security"
    PERFORMANCE = "performance"
    COMPOSE = "compose"
    BUILD = "build"
    STYLE = "style"


@dataclass(frozen=True, slots=True)
class Rule:
    """A deterministic check: stable id, title, severity, category and the one-paragraph why."""

    id: str
    title: str
    severity: Severity
    category: Category
    rationale: str

    def at(
        self,
        path: str,
        line: int,
        message: str,
        *,
        end_line: int | None = None,
        suggestion: str | None = None,
    ) -> Finding:
        """A finding of this rule at (path, line[..end_line])."""
        return Finding(
            rule_id=self.id,
            title=self.title,
            severity=self.severity,
            category=self.category,
            path=path,
            line=line,
            end_line=end_line if end_line is not None else line,
            message=message,
            rationale=self.rationale,
            suggestion=suggestion,
        )


# Where a finding may be shown: inline on the diff, or only in the review body (and why).
Placement = Literal["inline", "body"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem at a place in the new version of a file. Lines are 1-based, inclusive."""

    rule_id: str
    title: str
    severity: Severity
    category: Category
    path: str
    line: int
    end_line: int
    message: str
    rationale: str = ""
    # Replacement text for exactly lines line..end_line (without a trailing newline), when there is one.
    suggestion: str | None = None
    source: Literal["rules", "crew"] = "rules"
    placement: Placement = "body"
    placement_reason: str = ""

    @property
    def fingerprint(self) -> str:
        """Stable across re-reviews: rule, path and message, not the line number (lines move)."""
        digest = hashlib.sha256(f"{self.rule_id}\0{self.path}\0{self.message}".encode()).hexdigest()
        return digest[:16]

    def placed(self, placement: Placement, reason: str = "") -> Finding:
        return replace(self, placement=placement, placement_reason=reason)


@dataclass(frozen=True, slots=True)
class FileNote:
    """A file that was not reviewed (or only partly), and why: never a silent skip."""

    path: str
    reason: str


@dataclass(slots=True)
class Review:
    findings: list[Finding] = field(default_factory=list)
    notes: list[FileNote] = field(default_factory=list)
    # Findings beyond the comment cap, counted so the body can say how many were left out.
    omitted: int = 0
    files_reviewed: int = 0
    lines_reviewed: int = 0
    reviewer: Literal["rules", "crew"] = "rules"
    # Said out loud in every rendering: e.g. "rules only: OPENAI_API_KEY is not set".
    mode_note: str = ""
    # With the LLM: files, hunks, calls, tokens and cost in one line, at the end of every rendering.
    llm_summary: str = ""
    # The LLM could not review all of it (or any of it): the review is incomplete, never a clean pass.
    llm_incomplete: bool = False
    # The same usage as numbers (for the service's metrics): the model ("" when no LLM ran), calls and tokens the
    # API reported, the cost in US dollars from the price table (None when the model has no price).
    llm_model: str = ""
    llm_calls: int = 0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    llm_cost: float | None = None

    def counts(self) -> dict[Severity, int]:
        counts = dict.fromkeys(Severity, 0)
        for finding in self.findings:
            counts[finding.severity] += 1
        return counts

    def worst(self) -> Severity | None:
        return min((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def fails(self, threshold: Severity) -> bool:
        worst = self.worst()
        return worst is not None and worst.at_least(threshold)
