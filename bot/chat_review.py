"""The IDE review: one file or snippet in, the chat API's response shape out (rules part; no I/O).

Used synchronously by ``POST /chat?fast=true`` and by the ``review_code`` job behind ``/chat`` and
``/chat/submit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reviewer.engine import Change, ChunkCache, LLMBudget, LLMReviewer, Price, review_change, whole_file_change
from reviewer.engine import review as engine_review
from reviewer.files import MAX_FILE_BYTES, RepoConfig, classify
from reviewer.models import Finding, Review, Severity

MAX_SOURCE_BYTES = MAX_FILE_BYTES
MAX_PATH_CHARS = 1024
MAX_ISSUES = 100

# `language` values and the file name each reviews as (when `file_path` does not say).
LANGUAGES = {
    "kotlin": "Snippet.kt",
    "kts": "script.kts",
    "gradle": "build.gradle",
    "gradle-kts": "build.gradle.kts",
    "version-catalog": "gradle/libs.versions.toml",
    "manifest": "src/main/AndroidManifest.xml",
    "xml": "src/main/res/values/snippet.xml",
    "java": "Snippet.java",
}
ALIASES = {
    "kt": "kotlin",
    "kotlin-script": "kts",
    "groovy": "gradle",
    "gradle.kts": "gradle-kts",
    "gradle_kts": "gradle-kts",
    "toml": "version-catalog",
    "androidmanifest": "manifest",
}
DEFAULT_LANGUAGE = "kotlin"


@dataclass(frozen=True, slots=True)
class LLMOptions:
    budget: LLMBudget
    price: Price | None
    cache: ChunkCache | None


FAST_NOTE = "Rules only (fast=true): the deterministic rules ran; no LLM is used on this route."


CHAT_CONFIG = RepoConfig(max_comments=MAX_ISSUES)


class UnsupportedInput(ValueError):
    """The request names a file or language this reviewer cannot read; the message says what it can."""


class ChatRequest(BaseModel):
    """`source_code` is the file or snippet to review; `code_snippet` narrows the findings to that part of it;
    `file_path` or `language` picks the rules (Kotlin by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_code: str = Field(min_length=1, description=f"At most {MAX_SOURCE_BYTES} bytes as UTF-8.")
    code_snippet: str | None = Field(default=None, description="A part of source_code to report on.")
    file_path: str | None = Field(default=None, max_length=MAX_PATH_CHARS, description="e.g. app/src/main/.../A.kt")
    language: str | None = Field(default=None, max_length=40, description=f"One of {', '.join(LANGUAGES)}.")

    @field_validator("source_code")
    @classmethod
    def _size(cls, value: str) -> str:
        if len(value.encode("utf-8", errors="surrogatepass")) > MAX_SOURCE_BYTES:
            raise ValueError(f"source_code is larger than the limit of {MAX_SOURCE_BYTES} bytes (UTF-8)")
        return value


class Issue(BaseModel):
    line: int
    end_line: int
    severity: Severity
    category: str
    rule: str
    message: str
    suggestion: str | None


class ChatResponse(BaseModel):
    summary: str
    issues: list[Issue]
    reviewer: Literal["rules", "crew"]


# A file the path rules do not place (a bare `strings.xml`, a generated `build/` source) is still read by its
# extension when the client names it explicitly.
EXTENSIONS = {
    ".kt": "kotlin",
    ".kts": "kts",
    ".gradle": "gradle",
    ".toml": "version-catalog",
    ".xml": "xml",
    ".java": "java",
}


def _language(name: str, source: str) -> str:
    language = ALIASES.get(name, name)
    if language == "xml" and "<manifest" in source[:4096]:
        return "manifest"
    return language


def review_path(request: ChatRequest) -> str:
    """The path the engine reviews the source as: the file's own when it is reviewable, else the language's."""
    if request.file_path and classify(request.file_path)[0] is not None:
        return request.file_path
    language = _language((request.language or "").strip().lower(), request.source_code)
    if language in LANGUAGES:
        return LANGUAGES[language]
    if request.file_path:
        name = request.file_path.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if name.endswith(".gradle.kts"):
            return LANGUAGES["gradle-kts"]
        by_extension = next((lang for ext, lang in EXTENSIONS.items() if name.endswith(ext)), None)
        if by_extension is not None:
            return LANGUAGES[_language(by_extension, request.source_code)]
        reason = classify(request.file_path)[1]
        raise UnsupportedInput(
            f"file_path {request.file_path!r} is not reviewed ({reason}); "
            f"send `language` as one of: {', '.join(LANGUAGES)}"
        )
    if request.language:
        raise UnsupportedInput(f"language {request.language!r} is not supported; use one of: {', '.join(LANGUAGES)}")
    return LANGUAGES[DEFAULT_LANGUAGE]


def snippet_lines(source: str, snippet: str) -> tuple[int, int]:
    """The 1-based line range of `snippet` in `source`: its first run of whole lines (indentation may differ),
    else its first occurrence inside lines (a selection that starts or ends mid-line)."""
    if not snippet.strip():
        raise UnsupportedInput("code_snippet is blank")
    wanted = [line.strip() for line in snippet.splitlines() if line.strip()]
    lines = [line.strip() for line in source.splitlines()]
    for start, line in enumerate(lines):
        if line != wanted[0]:
            continue
        matched, index = 0, start
        while index < len(lines) and matched < len(wanted):
            if lines[index]:
                if lines[index] != wanted[matched]:
                    break
                matched += 1
            index += 1
        if matched == len(wanted):
            return start + 1, index
    at = source.find(snippet.strip())
    if at >= 0:
        first = source.count("\n", 0, at) + 1
        return first, first + snippet.strip().count("\n")
    raise UnsupportedInput("code_snippet does not occur in source_code")


def _issue(finding: Finding) -> Issue:
    return Issue(
        line=finding.line,
        end_line=finding.end_line,
        severity=finding.severity,
        category=finding.category.value,
        rule=finding.rule_id,
        message=finding.message,
        suggestion=finding.suggestion,
    )


def summarize(review: Review, issues: list[Issue], path: str, narrowed: tuple[int, int] | None) -> str:
    where = f"{path}, lines {narrowed[0]}-{narrowed[1]}" if narrowed else path
    if issues:
        counts: dict[str, int] = {}
        for issue in issues:
            counts[issue.severity.value] = counts.get(issue.severity.value, 0) + 1
        by_severity = ", ".join(f"{counts[s.value]} {s.value}" for s in Severity if s.value in counts)
        head = f"{len(issues)} issue{'s' if len(issues) != 1 else ''} ({by_severity}) in {where}."
    else:
        head = f"No issues found in {where}."
    parts = [head, *(f"{note.reason}." for note in review.notes)]
    if review.omitted:
        parts.append(f"{review.omitted} more not shown.")
    parts += [review.mode_note, review.llm_summary]
    return " ".join(part for part in parts if part)


def _respond(request: ChatRequest, path: str, review: Review) -> ChatResponse:
    narrowed = snippet_lines(request.source_code, request.code_snippet) if request.code_snippet else None
    findings = review.findings
    if narrowed is not None:
        low, high = narrowed
        findings = [f for f in findings if f.end_line >= low and f.line <= high]
    issues = [_issue(finding) for finding in findings]
    return ChatResponse(summary=summarize(review, issues, path, narrowed), issues=issues, reviewer=review.reviewer)


def _change(request: ChatRequest) -> tuple[str, Change]:
    path = review_path(request)
    if request.code_snippet:
        snippet_lines(request.source_code, request.code_snippet)  # refuse a bad snippet before any work
    return path, whole_file_change(path, request.source_code.encode("utf-8", "replace"))


def review_source(request: ChatRequest, *, mode_note: str) -> ChatResponse:
    """Run the rules on the request's source; raise UnsupportedInput for a file or language it cannot read."""
    path, change = _change(request)
    return _respond(request, path, review_change(change, CHAT_CONFIG, mode_note=mode_note))


async def review_source_with_llm(
    request: ChatRequest, llm: LLMReviewer, options: LLMOptions, *, observe: Callable[[Review], None] | None = None
) -> ChatResponse:
    """The rules, then the crew (the worker's path when an LLM is configured). `observe` sees the review (its
    LLM usage, for the metrics)."""
    path, change = _change(request)
    review = await engine_review(
        change, CHAT_CONFIG, llm, cache=options.cache, budget=options.budget, price=options.price
    )
    if observe is not None:
        observe(review)
    return _respond(request, path, review)
