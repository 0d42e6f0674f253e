"""review_change(change, config) -> Review: the deterministic review of a set of changed files.

Runs the enabled rules on the new side of every reviewable file (each file parsed once), keeps the
findings the filter mode asks for, decides for each whether it can be posted inline on the diff or only in
the review body, removes duplicates, sorts and caps. Bad input never raises: a file that cannot be read or
parsed becomes a note in the review.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from reviewer.android.gradle import check_build_script, check_version_catalog
from reviewer.android.manifest import check_manifest
from reviewer.android.resources import check_resources
from reviewer.android.xml import XmlError
from reviewer.diff import FileDiff, Hunk, Line
from reviewer.files import MAX_FILE_BYTES, FileKind, RepoConfig, classify, is_test_source
from reviewer.kotlin import check_kotlin
from reviewer.models import FileNote, Finding, Review

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
