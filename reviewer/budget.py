"""Token budgets for the LLM: offline estimates, what to send first, how to split a large PR, cache keys.

Nothing is silently cut: every file or hunk left out is named with the reason (`Plan.skipped`), and the
review body lists them. Estimates need no download (tiktoken fetches its encodings at run time and fails
offline): code is counted as BPE tokenizers roughly split it, words in pieces of four characters and every
other symbol on its own, which lands within about 15% of cl100k/o200k on Kotlin.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reviewer.diff import FileDiff, Hunk
from reviewer.files import FileKind, classify, is_test_source
from reviewer.kotlin.source import parse

PROMPT_VERSION = "2026-11-26.1"
MAX_CONTEXT_LINES = 80  # a hunk grows to its enclosing declaration only up to this many lines
DECLARATIONS = frozenset({"function_declaration", "class_declaration", "object_declaration", "secondary_constructor"})

_TOKEN = re.compile(r"[A-Za-z0-9_]+|\S")


def estimate_tokens(text: str) -> int:
    """Tokens of `text` as an OpenAI BPE tokenizer would count them, give or take about 15%."""
    count = 0
    for match in _TOKEN.finditer(text):
        piece = match.group()
        count += math.ceil(len(piece) / 4) if piece[0].isalnum() or piece[0] == "_" else 1
    return count + text.count("\n")


@dataclass(frozen=True, slots=True)
class Section:
    """One hunk as the model sees it: new-side line numbers on the left, removed lines marked `-`."""

    path: str
    first: int  # new-side lines shown, inclusive
    last: int
    text: str
    tokens: int


@dataclass(slots=True)
class Chunk:
    """What one LLM call reviews."""

    sections: list[Section] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(section.tokens for section in self.sections)

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(section.path for section in self.sections))

    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


@dataclass(slots=True)
class Plan:
    chunks: list[Chunk] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why it was not sent)

    @property
    def tokens(self) -> int:
        return sum(chunk.tokens for chunk in self.chunks)


def priority(path: str, diff: FileDiff) -> tuple[int, int, str]:
    """Most important first: production Kotlin/Java, then build and manifest files, resources, tests."""
    kind, _ = classify(path)
    if is_test_source(path):
        rank = 3
    elif kind in (FileKind.KOTLIN, FileKind.KOTLIN_SCRIPT, FileKind.JAVA):
        rank = 0
    elif kind in (FileKind.GRADLE_GROOVY, FileKind.GRADLE_KTS, FileKind.VERSION_CATALOG, FileKind.MANIFEST):
        rank = 1
    else:
        rank = 2
    return rank, -len(diff.added_lines()), path


def _declaration_span(source: bytes, first: int, last: int) -> tuple[int, int] | None:
    """The smallest declaration (1-based lines) around new-side lines first..last, if it is small enough."""
    node = parse(source).root_node.descendant_for_point_range((first - 1, 0), (last - 1, 0))
    while node is not None:
        if node.type in DECLARATIONS:
            start, end = node.start_point[0] + 1, node.end_point[0] + 1
            return (start, end) if end - start + 1 <= MAX_CONTEXT_LINES else None
        node = node.parent
    return None


def render_hunk(path: str, hunk: Hunk, new_lines: Sequence[str] | None, source: bytes | None) -> Section | None:
    """The hunk with new-side numbers, grown to its enclosing declaration when the whole new file is known
    (lines outside a hunk are the same in base and head, so the extension shows nothing that changed).
    None for a deletion-only hunk: there is nothing new to review."""
    added = [line.new_no for line in hunk.lines if line.kind == "added" and line.new_no is not None]
    if not added:
        return None
    first, last = hunk.new_start, max(hunk.new_end, hunk.new_start)
    before: list[str] = []
    after: list[str] = []
    if new_lines is not None and source is not None and path.endswith((".kt", ".kts")):
        span = _declaration_span(source, min(added), max(added))
        if span is not None:
            before = [f"{n:5}   {new_lines[n - 1]}" for n in range(span[0], first) if 0 < n <= len(new_lines)]
            after = [f"{n:5}   {new_lines[n - 1]}" for n in range(last + 1, span[1] + 1) if 0 < n <= len(new_lines)]
            first, last = min(first, span[0]), max(last, span[1])
    body = []
    for line in hunk.lines:
        if line.kind == "removed":
            body.append(f"{'':5} - {line.text}")
        else:
            body.append(f"{line.new_no:5} {'+' if line.kind == 'added' else ' '} {line.text}")
    text = "\n".join([f"--- {path} (lines {first}-{last})", *before, *body, *after])
    return Section(path, first, last, text, estimate_tokens(text))


def plan(
    files: Iterable[tuple[FileDiff, bytes | None]],
    *,
    call_budget: int,
    review_budget: int,
    overhead: int,
) -> Plan:
    """Split the reviewable files into calls of at most `call_budget` prompt tokens (`overhead` being the fixed
    part of every prompt), at most `review_budget` in all, most important files first."""
    result = Plan()
    room = call_budget - overhead
    ordered = sorted(files, key=lambda item: priority(item[0].path, item[0]))
    current = Chunk()
    spent = 0
    for diff, source in ordered:
        new_lines = source.decode("utf-8", "replace").splitlines() if source is not None else None
        sections = [s for s in (render_hunk(diff.path, h, new_lines, source) for h in diff.hunks) if s is not None]
        if not sections:
            result.skipped.append((diff.path, "deletions only"))
            continue
        for section in sections:
            if section.tokens > room:
                result.skipped.append(
                    (
                        f"{diff.path}:{section.first}-{section.last}",
                        f"hunk larger than one call ({section.tokens} tokens)",
                    )
                )
                continue
            if spent + overhead * (len(result.chunks) + 1) + section.tokens > review_budget:
                result.skipped.append((f"{diff.path}:{section.first}-{section.last}", "over the review's token budget"))
                continue
            if current.tokens + section.tokens > room:
                result.chunks.append(current)
                current = Chunk()
            current.sections.append(section)
            spent += section.tokens
    if current.sections:
        result.chunks.append(current)
    return result


def cache_key(model: str, chunk: Chunk, context: dict[str, object]) -> str:
    """Same model, prompt version, chunk text and review settings: same findings (a cache hit costs nothing)."""
    payload = json.dumps(
        {"model": model, "prompt": PROMPT_VERSION, "chunk": chunk.text(), "context": context},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
