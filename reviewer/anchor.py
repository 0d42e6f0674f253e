"""Anchoring LLM findings: the quoted text decides the line, never the model's line number alone.

A model's line numbers drift; the exact text of the line it talks about (`quote`) does not. Each proposal
is re-located in the new file near the reported line: exact text first, then ignoring whitespace, then a
fuzzy match with a high cutoff. A proposal whose quote is nowhere is dropped (a comment on a wrong line is
worse than none). A suggestion survives only when it replaces exactly the anchored lines inside one hunk
and, for Kotlin, the result still parses; otherwise it is shown as a plain ``diff`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from reviewer.diff import FileDiff
from reviewer.kotlin.source import has_error

NO_CHANGE = "it changes nothing"
FUZZY_CUTOFF = 0.9
FUZZY_WINDOW = 60  # lines either side of the reported line the fuzzy pass looks at
MIN_PARTIAL_QUOTE = 12  # a one-line quote this long (without spaces) may be part of a line

Match = Literal["exact", "whitespace", "partial", "fuzzy"]
# Only these anchor a one-click suggestion: a partial quote does not cover the line a suggestion replaces,
# and a fuzzy one may carry the model's misquote into the code.
SUGGESTIBLE: frozenset[Match] = frozenset({"exact", "whitespace"})


@dataclass(frozen=True, slots=True)
class Anchor:
    line: int
    end_line: int
    match: Match


def _squash(text: str) -> str:
    return "".join(text.split())


def _exact(line: str, quote: str) -> bool:
    return line.strip() == quote.strip()


def _whitespace(line: str, quote: str) -> bool:
    return _squash(line) == _squash(quote)


def _partial(line: str, quote: str) -> bool:
    squashed = _squash(quote)
    return len(squashed) >= MIN_PARTIAL_QUOTE and squashed in _squash(line)


def _fuzzy(line: str, quote: str) -> bool:
    a, b = _squash(line), _squash(quote)
    if len(b) < MIN_PARTIAL_QUOTE:
        # One edit in a short quote already scores 0.9: short lines must match exactly (up to spacing).
        return a == b
    return bool(a) and SequenceMatcher(None, a, b, autojunk=False).ratio() >= FUZZY_CUTOFF


def _match_at(lines: Sequence[str], start: int, quote: list[str], same: Callable[[str, str], bool]) -> int | None:
    """The last line (0-based) of `quote` matched from `start` over consecutive non-blank lines, or None."""
    index, matched = start, 0
    while index < len(lines) and matched < len(quote):
        if lines[index].strip():
            if not same(lines[index], quote[matched]):
                return None
            matched += 1
        elif matched == 0:
            return None
        index += 1
    return index - 1 if matched == len(quote) else None


def locate(quote: str, lines: Sequence[str], reported: int) -> Anchor | None:
    """Where `quote` (one or more lines) stands in `lines`, the candidate closest to the 1-based `reported`
    line winning; None when it is not there."""
    wanted = [line for line in quote.splitlines() if line.strip()]
    if not wanted or not lines:
        return None
    reported = min(max(reported, 1), len(lines))
    everywhere = sorted(range(len(lines)), key=lambda i: (abs(i + 1 - reported), i))
    nearby = [i for i in everywhere if abs(i + 1 - reported) <= FUZZY_WINDOW]
    passes: list[tuple[Match, Callable[[str, str], bool], list[int]]] = [
        ("exact", _exact, everywhere),
        ("whitespace", _whitespace, everywhere),
    ]
    if len(wanted) == 1:
        passes.append(("partial", _partial, everywhere))
    passes.append(("fuzzy", _fuzzy, nearby))
    for match, same, starts in passes:
        for start in starts:
            end = _match_at(lines, start, wanted, same)
            if end is not None:
                return Anchor(start + 1, end + 1, match)
    return None


def applies_cleanly(
    path: str, lines: Sequence[str], anchor: Anchor, suggestion: str, diff: FileDiff
) -> tuple[bool, str]:
    """May `suggestion` replace lines anchor.line..anchor.end_line as a GitHub suggestion? (ok, reason)"""
    if anchor.match not in SUGGESTIBLE:
        return False, f"the quote matched only {'part of the line' if anchor.match == 'partial' else 'loosely'}"
    if not diff.can_span(anchor.line, anchor.end_line):
        return False, "its lines are not all inside one hunk of the diff"
    old = [lines[i - 1] for i in range(anchor.line, anchor.end_line + 1)]
    if suggestion.splitlines() == old:
        return False, NO_CHANGE
    if path.endswith((".kt", ".kts")):
        before = "\n".join(lines).encode()
        after = "\n".join([*lines[: anchor.line - 1], *suggestion.splitlines(), *lines[anchor.end_line :]]).encode()
        if has_error(after) and not has_error(before):
            return False, "the file would no longer parse as Kotlin"
    return True, ""


def diff_block(lines: Sequence[str], anchor: Anchor, suggestion: str) -> str:
    """A plain unified-style block for a change that cannot be a one-click suggestion."""
    old = [f"-{lines[i - 1]}" for i in range(anchor.line, anchor.end_line + 1)]
    new = [f"+{line}" for line in suggestion.splitlines()]
    return "\n".join(["```diff", *old, *new, "```"])
