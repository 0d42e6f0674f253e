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

from tree_sitter import Node

from reviewer.diff import FileDiff, Hunk
from reviewer.files import FileKind, classify, is_test_source
from reviewer.kotlin.source import parse

PROMPT_VERSION = "2026-11-26.10"
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


def _column(line: str, *, end: bool = False) -> int:
    """Byte column of the line's first (or last) non-blank character: tree-sitter points are in bytes."""
    text = line.rstrip() if end else line[: len(line) - len(line.lstrip())]
    return max(len(text.encode()) - (1 if end else 0), 0)


def _declaration_span(root: Node, lines: Sequence[str], first: int, last: int) -> tuple[int, int] | None:
    """The smallest declaration (1-based lines) around the code of new-side lines first..last, if small enough."""
    start = (first - 1, _column(lines[first - 1]))
    stop = (last - 1, _column(lines[last - 1], end=True))
    node: Node | None = root.descendant_for_point_range(start, stop)
    while node is not None:
        if node.type in DECLARATIONS:
            low, high = node.start_point[0] + 1, node.end_point[0] + 1
            return (low, high) if high - low + 1 <= MAX_CONTEXT_LINES else None
        node = node.parent
    return None


def render_hunk(
    path: str,
    hunk: Hunk,
    new_lines: Sequence[str] | None,
    source: bytes | None,
    *,
    root: Node | None = None,
    added_elsewhere: frozenset[int] = frozenset(),
    shown: frozenset[int] = frozenset(),
) -> Section | None:
    """The hunk with new-side numbers, grown to its enclosing declaration when the whole new file is known
    (lines outside every hunk are the same in base and head; added lines of other hunks keep their `+`).
    The growth stops at lines another section of the file shows (`shown`): no line is sent twice.
    None for a deletion-only hunk: there is nothing new to review."""
    added = [line.new_no for line in hunk.lines if line.kind == "added" and line.new_no is not None]
    if not added:
        return None
    first, last = hunk.new_start, max(hunk.new_end, hunk.new_start)
    before: list[str] = []
    after: list[str] = []
    if new_lines is not None and source is not None and path.endswith((".kt", ".kts")):
        tree = root if root is not None else parse(source).root_node
        span = _declaration_span(tree, new_lines, min(added), max(added))
        if span is not None:

            def numbered(n: int) -> str:
                return f"{n:5} {'+' if n in added_elsewhere else ' '} {new_lines[n - 1]}"

            low = first
            while low - 1 >= max(span[0], 1) and low - 1 not in shown:
                low -= 1
            high = last
            while high + 1 <= min(span[1], len(new_lines)) and high + 1 not in shown:
                high += 1
            before = [numbered(n) for n in range(low, first)]
            after = [numbered(n) for n in range(last + 1, high + 1)]
            first, last = low, high
    body = []
    for line in hunk.lines:
        if line.kind == "removed":
            body.append(f"{'':5} - {line.text}")
        else:
            body.append(f"{line.new_no:5} {'+' if line.kind == 'added' else ' '} {line.text}")
    text = "\n".join([f"--- {path} (lines {first}-{last})", *before, *body, *after])
    return Section(path, first, last, text, estimate_tokens(text))


def file_sections(diff: FileDiff, source: bytes | None) -> list[Section]:
    """Every hunk of one file, the file parsed once; no line shown by two sections."""
    new_lines = source.decode("utf-8", "replace").splitlines() if source is not None else None
    root = parse(source).root_node if source is not None and diff.path.endswith((".kt", ".kts")) else None
    added = frozenset(diff.added_lines())
    hunk_lines = {n for hunk in diff.hunks for n in range(hunk.new_start, max(hunk.new_end, hunk.new_start) + 1)}
    sections: list[Section] = []
    shown: set[int] = set()
    for hunk in diff.hunks:
        own = set(range(hunk.new_start, max(hunk.new_end, hunk.new_start) + 1))
        section = render_hunk(
            diff.path,
            hunk,
            new_lines,
            source,
            root=root,
            added_elsewhere=added,
            shown=frozenset((shown | hunk_lines) - own),
        )
        if section is not None:
            sections.append(section)
            shown |= set(range(section.first, section.last + 1))
    return sections


def plan(
    files: Iterable[tuple[FileDiff, bytes | None]],
    *,
    call_budget: int,
    review_budget: int,
    overhead: int,
    rendered: dict[str, list[Section]] | None = None,
) -> Plan:
    """Split the reviewable files into calls of at most `call_budget` prompt tokens (`overhead` being the fixed
    part of every prompt), at most `review_budget` in all, most important files first."""
    result = Plan()
    room = call_budget - overhead
    ordered = sorted(files, key=lambda item: priority(item[0].path, item[0]))
    current = Chunk()
    spent = 0
    for diff, source in ordered:
        sections = (
            rendered[diff.path] if rendered is not None and diff.path in rendered else file_sections(diff, source)
        )
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
