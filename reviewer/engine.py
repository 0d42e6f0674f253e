"""review_change(change, config) -> Review: the deterministic review of a set of changed files.

Runs the enabled rules on the new side of every reviewable file (each file parsed once), keeps the
findings the filter mode asks for, decides for each whether it can be posted inline on the diff or only in
the review body, removes duplicates, sorts and caps. Bad input never raises: a file that cannot be read or
parsed becomes a note in the review.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from reviewer.android.gradle import check_build_script, check_version_catalog
from reviewer.android.manifest import check_manifest
from reviewer.android.resources import check_resources
from reviewer.android.xml import XmlError
from reviewer.budget import Chunk, Plan, cache_key, file_sections
from reviewer.budget import plan as budget_plan
from reviewer.crew import ChunkInput, LLMFailed, Usage, gather_limited, prompt_overhead
from reviewer.diff import FileDiff, Hunk, Line
from reviewer.files import MAX_FILE_BYTES, FileKind, RepoConfig, classify, is_test_source
from reviewer.kotlin import check_kotlin
from reviewer.models import FileNote, Finding, Review
from reviewer.proposals import Proposal, to_finding

# Findings kept in one review at most (inline or in the body); the rest are counted, not listed.
MAX_FINDINGS = 200

RULES_ONLY_NOTE = "Rules only: no LLM is configured, so this review has the deterministic rules' findings only."


@dataclass(slots=True)
class ChangedFile:
    diff: FileDiff
    # The whole new version of the file, when the caller has it; else the rules see the diff's lines only.
    new_source: bytes | None = None


@dataclass(slots=True)
class Change:
    files: list[ChangedFile] = field(default_factory=list)
    # The repository has gradle/libs.versions.toml (the caller knows its tree; the diff may not show it).
    has_version_catalog: bool = False


def source_from_hunks(diff: FileDiff) -> bytes:
    """The new side as far as the diff shows it, each line at its own number (gaps left blank).

    Each hunk is made parseable on its own: a line of closing braces that closes a block opened before the
    hunk is blanked, and blocks the hunk leaves open are closed on the blank line after it.
    """
    known = diff.new_side_text()
    if not known:
        return b""
    lines = dict(known)
    for hunk in diff.hunks:
        numbers = [ln.new_no for ln in hunk.lines if ln.kind != "removed" and ln.new_no is not None]
        depth = 0
        for number in numbers:
            text = lines[number]
            opened, closed = text.count("{"), text.count("}")
            if depth + opened - closed < 0 and not text.strip().strip("})]; "):
                lines[number] = ""  # closes something the hunk never opened
                continue
            depth = max(depth + opened - closed, 0)
        if depth and numbers:
            after = numbers[-1] + 1
            if after in lines:
                lines[numbers[-1]] += " " + "}" * depth
            else:
                lines[after] = "}" * depth
    last = max(lines)
    return "\n".join(lines.get(number, "") for number in range(1, last + 1)).encode() + b"\n"


def whole_file_change(path: str, source: bytes) -> Change:
    """A change that adds `source` as a new file: reviewing it reviews every line (CLI --file, /chat)."""
    text = source.decode("utf-8", errors="replace")
    lines = text.splitlines() or [""]
    hunk = Hunk(0, 0, 1, len(lines), "", [Line("added", None, n, t) for n, t in enumerate(lines, start=1)])
    return Change([ChangedFile(FileDiff(None, path, "added", hunks=[hunk]), source)])


def _check(kind: FileKind, path: str, source: bytes, change: Change, disabled: frozenset[str]) -> Iterator[Finding]:
    if kind in (FileKind.KOTLIN, FileKind.KOTLIN_SCRIPT):
        yield from check_kotlin(path, source, is_test=is_test_source(path), disabled=disabled)
    elif kind in (FileKind.GRADLE_GROOVY, FileKind.GRADLE_KTS):
        text = source.decode("utf-8", errors="replace")
        yield from check_build_script(path, text, has_version_catalog=change.has_version_catalog)
    elif kind == FileKind.VERSION_CATALOG:
        yield from check_version_catalog(path, source.decode("utf-8", errors="replace"))
    elif kind == FileKind.MANIFEST:
        yield from check_manifest(path, source)
    elif kind == FileKind.RESOURCE_XML:
        yield from check_resources(path, source)
    # Java and ProGuard files are reviewable (the LLM reads them) but have no deterministic rules yet.


def _keep(finding: Finding, diff: FileDiff, config: RepoConfig, added: set[int], shown: set[int]) -> bool:
    if not finding.severity.at_least(config.min_severity):
        return False
    span = set(range(finding.line, finding.end_line + 1))
    if config.filter == "added":
        return bool(span & added)
    if config.filter == "diff_context":
        return bool(span & shown)
    return True


def _place(finding: Finding, diff: FileDiff) -> Finding:
    """Inline when the whole range is in one hunk; else on its first line that is; else in the body."""
    if diff.can_span(finding.line, finding.end_line):
        return finding.placed("inline")
    for line in range(finding.line, finding.end_line + 1):
        if diff.in_diff(line):
            anchored = replace(finding, line=line, end_line=line, suggestion=None)
            return anchored.placed("inline", "anchored to the first line of its range that the diff shows")
    return finding.placed("body", "its lines are not part of the diff")


def review_change(change: Change, config: RepoConfig | None = None, *, mode_note: str = RULES_ONLY_NOTE) -> Review:
    config = config or RepoConfig()
    disabled = frozenset(config.rules.disable)
    review = Review(mode_note=mode_note)
    found: list[Finding] = []
    for changed in change.files:
        diff = changed.diff
        path = diff.path
        if diff.status == "removed" or diff.new_path is None:
            continue
        if diff.is_binary:
            review.notes.append(FileNote(path, "binary file"))
            continue
        kind, reason = classify(path)
        if kind is None:
            review.notes.append(FileNote(path, reason))
            continue
        if not config.wants(path):
            review.notes.append(FileNote(path, "excluded by `paths` in .github/ai-review.yml"))
            continue
        source = changed.new_source
        if source is None:
            source = source_from_hunks(diff)
            if diff.status != "added":
                review.notes.append(FileNote(path, "reviewed from the diff's lines only (no full file)"))
        if len(source) > MAX_FILE_BYTES:
            review.notes.append(FileNote(path, f"larger than {MAX_FILE_BYTES // 1024} KiB: not reviewed"))
            continue
        try:
            file_findings = [f for f in _check(kind, path, source, change, disabled) if f.rule_id not in disabled]
        except XmlError as exc:
            review.notes.append(FileNote(path, f"could not be parsed: {exc}"))
            continue
        except Exception as exc:
            review.notes.append(FileNote(path, f"rules failed on this file ({type(exc).__name__}: {exc})"))
            continue
        review.files_reviewed += 1
        review.lines_reviewed += len(source.splitlines())
        added, shown = diff.added_lines(), diff.diff_lines()
        found.extend(_place(f, diff) for f in file_findings if _keep(f, diff, config, added, shown))
    review.findings, review.omitted = _dedupe_sort_cap(found, config)
    return review


def _dedupe_sort_cap(findings: Iterable[Finding], config: RepoConfig) -> tuple[list[Finding], int]:
    unique: dict[tuple[str, str, int, int], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.rule_id, finding.path, finding.line, finding.end_line), finding)
    ordered = sorted(unique.values(), key=lambda f: (f.severity.rank, f.path, f.line, f.rule_id))
    kept = ordered[:MAX_FINDINGS]
    inline = 0
    capped: list[Finding] = []
    for finding in kept:
        inline += finding.placement == "inline"
        over = finding.placement == "inline" and inline > config.max_comments
        capped.append(
            finding.placed("body", f"over the limit of {config.max_comments} inline comments") if over else finding
        )
    return capped, len(ordered) - len(kept)


# The LLM half: rules first, then the crew on budgeted chunks, every proposal anchored by its quote.


class LLMDeadline(Exception):
    """The LLM part of a review ran out of time (LLMBudget.deadline)."""


class ChunkCache(Protocol):
    """Verified proposals per chunk key, in the job store's backend (a re-review of a chunk costs nothing)."""

    async def get(self, key: str) -> list[dict[str, Any]] | None: ...

    async def put(self, key: str, value: list[dict[str, Any]]) -> None: ...


class LLMReviewer(Protocol):
    @property
    def model(self) -> str: ...

    async def review(self, item: ChunkInput) -> tuple[list[Proposal], Usage]: ...


@dataclass(frozen=True, slots=True)
class LLMBudget:
    call_tokens: int = 8000  # prompt tokens one call may carry
    review_tokens: int = 60_000  # prompt tokens one review may spend
    concurrency: int = 2  # chunks reviewed at once
    deadline: float | None = None  # seconds the whole LLM part may take; chunks not done by then are named


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    prompt: float
    completion: float

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.prompt + usage.completion_tokens * self.completion) / 1_000_000


def _lines_of(changed: ChangedFile) -> list[str]:
    if changed.new_source is not None:
        return changed.new_source.decode("utf-8", "replace").splitlines()
    shown = changed.diff.new_side_text()
    lines = [""] * (max(shown, default=0))
    for number, text in shown.items():
        lines[number - 1] = text
    return lines


def _llm_files(change: Change, config: RepoConfig) -> list[ChangedFile]:
    keep = []
    for changed in change.files:
        diff = changed.diff
        if diff.status == "removed" or diff.new_path is None or diff.is_binary or not diff.hunks:
            continue
        if classify(diff.path)[0] is None or not config.wants(diff.path):
            continue
        if changed.new_source is not None and len(changed.new_source) > MAX_FILE_BYTES:
            continue
        keep.append(changed)
    return keep


def _overlaps(crew: Finding, rules: Iterable[Finding]) -> bool:
    return any(
        r.path == crew.path and r.category == crew.category and r.line <= crew.end_line and crew.line <= r.end_line
        for r in rules
    )


def usage_line(model: str, *, files: int, hunks: int, cached: int, usage: Usage, price: Price | None) -> str:
    cost = f"${price.cost(usage):.4f}" if price is not None else "cost unknown (no price for this model)"
    return (
        f"LLM ({model}): {files} file(s), {hunks} hunk(s), {usage.calls} call(s), {cached} file(s) from cache; "
        f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion tokens; {cost}."
    )


def _anchor_all(
    chunks: list[Chunk],
    results: list[Any],
    *,
    by_path: dict[str, ChangedFile],
    lines: dict[str, list[str]],
    config: RepoConfig,
    rule_findings: list[Finding],
    notes: list[FileNote],
) -> tuple[list[Finding], list[str], int]:
    """Each chunk's proposals anchored and filtered: (findings, one reason per failed chunk, proposals dropped)."""
    found: list[Finding] = []
    failures: list[str] = []
    dropped = 0
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            error = result.__cause__ if isinstance(result, LLMFailed) and result.__cause__ is not None else result
            text = str(error).strip()
            reason = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
            failures.append(reason)
            notes += [FileNote(path, f"not reviewed by the LLM ({reason})") for path in chunk.paths]
            continue
        for proposal in result:
            changed = by_path.get(proposal.path)
            finding = to_finding(proposal, lines[proposal.path], changed.diff)[0] if changed is not None else None
            if changed is None or finding is None:
                dropped += 1
                continue
            diff = changed.diff
            if _keep(finding, diff, config, diff.added_lines(), diff.diff_lines()) and not _overlaps(
                finding, rule_findings
            ):
                found.append(_place(finding, diff))
    return found, failures, dropped


async def _remember(cache: ChunkCache, plan: Plan, results: list[Any], file_key: Callable[[str], str]) -> None:
    """Cache each fully reviewed file's verified proposals under its own key (not a file that was cut short
    by the budget or whose call failed: its findings are incomplete)."""
    partial = {name.rsplit(":", 1)[0] for name, _ in plan.skipped}
    failed: set[str] = set()
    found: dict[str, list[Proposal]] = {}
    for chunk, result in zip(plan.chunks, results, strict=True):
        if isinstance(result, BaseException):
            failed.update(chunk.paths)
            continue
        for path in chunk.paths:
            found.setdefault(path, []).extend(p for p in result if p.path == path)
    for path, proposals in found.items():
        if path not in failed and path not in partial:
            await cache.put(file_key(path), [p.model_dump(mode="json") for p in proposals])


async def review(
    change: Change,
    config: RepoConfig | None = None,
    llm: LLMReviewer | None = None,
    *,
    cache: ChunkCache | None = None,
    budget: LLMBudget = LLMBudget(),
    price: Price | None = None,
    mode_note: str = RULES_ONLY_NOTE,
) -> Review:
    """The whole review: the rules, then (when `llm` is given) the crew. Never raises for the LLM's sake: if it
    cannot be used, the rules' review is returned with a note saying the LLM part failed and why."""
    config = config or RepoConfig()
    rules = await asyncio.to_thread(review_change, change, config, mode_note=mode_note)
    if llm is None:
        return rules
    files = _llm_files(change, config)
    by_path = {changed.diff.path: changed for changed in files}
    rendered = {c.diff.path: file_sections(c.diff, c.new_source) for c in files}
    lines = {path: _lines_of(changed) for path, changed in by_path.items()}

    def file_key(path: str) -> str:
        # Per file, so that a push touching one file re-sends only that file even when files share a call.
        context: dict[str, object] = {
            "instructions": config.instructions,
            "rules": sorted(f.fingerprint for f in rules.findings if f.path == path),
        }
        return cache_key(llm.model, Chunk(rendered[path]), context)

    from_cache: dict[str, list[Proposal]] = {}
    if cache is not None:
        for path, sections in rendered.items():
            if sections and (hit := await cache.get(file_key(path))) is not None:
                from_cache[path] = [Proposal.model_validate(p) for p in hit]
    plan = budget_plan(
        [(c.diff, c.new_source) for c in files if c.diff.path not in from_cache],
        call_budget=budget.call_tokens,
        review_budget=budget.review_tokens,
        overhead=prompt_overhead(),
        rendered=rendered,
    )
    skipped_names = [name for name, _ in plan.skipped]
    usage = Usage()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget.deadline if budget.deadline is not None else None

    async def one(chunk: Chunk) -> list[Proposal]:
        try:
            async with asyncio.timeout_at(deadline):
                return await reviewed(chunk)
        except TimeoutError:
            raise LLMDeadline(f"the LLM part took longer than its {budget.deadline:g} s") from None

    async def reviewed(chunk: Chunk) -> list[Proposal]:
        rule_findings = [f for f in rules.findings if f.path in chunk.paths]
        item = ChunkInput(chunk, rule_findings, config.instructions, skipped_names, {p: lines[p] for p in chunk.paths})
        try:
            proposals, spent = await llm.review(item)
        except LLMFailed as exc:
            usage.add(exc.usage)  # the calls answered before the failure are billed too
            raise
        usage.add(spent)
        return proposals

    results = await gather_limited(budget.concurrency, *(one(chunk) for chunk in plan.chunks))
    if cache is not None:
        await _remember(cache, plan, results, file_key)
    cached_chunks = [Chunk(rendered[path]) for path in from_cache]
    notes = [FileNote(name, f"not reviewed by the LLM: {why}") for name, why in plan.skipped]
    crew_findings, failures, dropped = _anchor_all(
        [*plan.chunks, *cached_chunks],
        [*results, *from_cache.values()],
        by_path=by_path,
        lines=lines,
        config=config,
        rule_findings=rules.findings,
        notes=notes,
    )
    merged, omitted = _dedupe_sort_cap([*rules.findings, *crew_findings], config)
    sent_paths = {path for chunk in plan.chunks for path in chunk.paths} | set(from_cache)
    hunks = sum(len(chunk.sections) for chunk in [*plan.chunks, *cached_chunks])
    cached = len(from_cache)
    result_review = replace(
        rules,
        findings=merged,
        omitted=rules.omitted + omitted,
        notes=[*rules.notes, *notes],
        reviewer="crew",
        mode_note="",
        llm_incomplete=bool(failures),
        llm_summary=usage_line(llm.model, files=len(sent_paths), hunks=hunks, cached=cached, usage=usage, price=price),
        llm_model=llm.model,
        llm_calls=usage.calls,
        llm_prompt_tokens=usage.prompt_tokens,
        llm_completion_tokens=usage.completion_tokens,
        llm_cost=price.cost(usage) if price is not None else None,
    )
    if dropped:
        result_review.notes.append(
            FileNote("(LLM)", f"{dropped} finding(s) dropped: their quoted line is not in the file")
        )
    if failures and len(failures) == len(plan.chunks) and not from_cache:
        result_review.mode_note = (
            f"The LLM part of this review failed ({failures[0]}); only the rules' findings are shown. "
            "This is not a clean pass."
        )
    elif failures:
        result_review.mode_note = (
            f"The LLM could not review {len(failures)} of {len(plan.chunks)} part(s) of this change; see the notes."
        )
    return result_review
