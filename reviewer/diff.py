"""Unified diffs parsed once into typed objects: FileDiff -> Hunk -> Line, with old and new line numbers.

Reads `git diff` output (renames, copies, new/deleted files, mode changes, binary files) and GitHub's
per-file ``patch`` strings (hunks only). Never raises on odd input: bytes that are not UTF-8 are replaced,
CRLF is tolerated, a hunk header without counts means a count of 1.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

LineKind = Literal["added", "removed", "context"]
FileStatus = Literal["added", "modified", "removed", "renamed", "copied"]
Side = Literal["RIGHT", "LEFT"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_DIFF_GIT = re.compile(r'^diff --git ("[^"]*"|\S+) ("[^"]*"|\S+)$')
_NO_NEWLINE = "\\ No newline at end of file"


@dataclass(frozen=True, slots=True)
class Line:
    kind: LineKind
    old_no: int | None
    new_no: int | None
    text: str
    # True when the line is followed by "\ No newline at end of file".
    no_newline: bool = False


@dataclass(slots=True)
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    section_header: str
    lines: list[Line] = field(default_factory=list)

    @property
    def new_end(self) -> int:
        return self.new_start + max(self.new_len, 1) - 1

    @property
    def old_end(self) -> int:
        return self.old_start + max(self.old_len, 1) - 1

    def holds(self, line: int, side: Side = "RIGHT") -> bool:
        """True when the line (new side for RIGHT, old for LEFT) is one of this hunk's lines."""
        if side == "RIGHT":
            return any(item.new_no == line for item in self.lines if item.kind != "removed")
        return any(item.old_no == line for item in self.lines if item.kind != "added")


@dataclass(slots=True)
class FileDiff:
    old_path: str | None
    new_path: str | None
    status: FileStatus = "modified"
    is_binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)
    old_mode: str | None = None
    new_mode: str | None = None
    similarity: int | None = None

    @property
    def path(self) -> str:
        """The path a reviewer talks about: the new one, or the old one for a deleted file."""
        return self.new_path or self.old_path or ""

    def lines(self) -> Iterator[Line]:
        for hunk in self.hunks:
            yield from hunk.lines

    def added_lines(self) -> set[int]:
        return {line.new_no for line in self.lines() if line.kind == "added" and line.new_no is not None}

    def diff_lines(self, side: Side = "RIGHT") -> set[int]:
        """Every line number of that side that appears in a hunk (added or context for RIGHT)."""
        if side == "RIGHT":
            return {ln.new_no for ln in self.lines() if ln.kind != "removed" and ln.new_no is not None}
        return {ln.old_no for ln in self.lines() if ln.kind != "added" and ln.old_no is not None}

    def hunk_for(self, line: int, side: Side = "RIGHT") -> Hunk | None:
        for hunk in self.hunks:
            if hunk.holds(line, side):
                return hunk
        return None

    def in_diff(self, line: int, side: Side = "RIGHT") -> bool:
        """May a review comment be placed on this line? (GitHub accepts only lines shown in the diff.)"""
        return self.hunk_for(line, side) is not None

    def can_span(self, start_line: int, line: int, side: Side = "RIGHT") -> bool:
        """May (start_line .. line) be one multi-line comment: both ends in the same hunk, on one side."""
        if start_line > line:
            return False
        hunk = self.hunk_for(start_line, side)
        return hunk is not None and hunk.holds(line, side)

    def new_side_text(self) -> dict[int, str]:
        """New-side line number -> text for every line the diff shows (added and context)."""
        return {ln.new_no: ln.text for ln in self.lines() if ln.kind != "removed" and ln.new_no is not None}

    def to_json(self) -> dict[str, Any]:
        return {
            "old_path": self.old_path,
            "new_path": self.new_path,
            "status": self.status,
            "is_binary": self.is_binary,
            "old_mode": self.old_mode,
            "new_mode": self.new_mode,
            "similarity": self.similarity,
            "hunks": [
                {
                    "old_start": h.old_start,
                    "old_len": h.old_len,
                    "new_start": h.new_start,
                    "new_len": h.new_len,
                    "section_header": h.section_header,
                    "lines": [
                        [ln.kind[0], ln.old_no, ln.new_no, ln.text] + (["no_newline"] if ln.no_newline else [])
                        for ln in h.lines
                    ],
                }
                for h in self.hunks
            ],
        }


def _text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def _unquote(path: str) -> str:
    """git quotes paths with special characters: "caf\\303\\251.md" -> café.md."""
    path = path.strip()
    if len(path) >= 2 and path.startswith('"') and path.endswith('"'):
        raw = path[1:-1].encode("latin-1", errors="backslashreplace")
        return codecs.escape_decode(raw)[0].decode("utf-8", errors="replace")
    return path


def _strip_prefix(path: str) -> str | None:
    path = _unquote(path)
    if path == "/dev/null":
        return None
    if path[:2] in ("a/", "b/"):
        return path[2:]
    return path


def _split_lines(text: str) -> list[str]:
    # Split on \n only: a \r inside a line is content (CRLF files keep their \r out of the text below).
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


class _HunkReader:
    """Consumes hunk lines; stops at the first line that cannot belong to the current hunk."""

    def __init__(self, header: re.Match[str]) -> None:
        old_start, old_len, new_start, new_len, section = header.groups()
        self.hunk = Hunk(
            old_start=int(old_start),
            old_len=int(old_len) if old_len is not None else 1,
            new_start=int(new_start),
            new_len=int(new_len) if new_len is not None else 1,
            section_header=section.strip(),
        )
        self.old_no = self.hunk.old_start
        self.new_no = self.hunk.new_start
        self.old_left = self.hunk.old_len
        self.new_left = self.hunk.new_len

    @property
    def complete(self) -> bool:
        return self.old_left <= 0 and self.new_left <= 0

    def feed(self, raw: str) -> bool:
        """Take one line; False when it is not part of this hunk."""
        if raw.startswith("\\"):
            if self.hunk.lines:
                last = self.hunk.lines[-1]
                self.hunk.lines[-1] = Line(last.kind, last.old_no, last.new_no, last.text, no_newline=True)
            return True
        if self.complete:
            return False
        marker, text = (raw[:1], raw[1:]) if raw else (" ", "")
        if marker == "+" and self.new_left > 0:
            self.hunk.lines.append(Line("added", None, self.new_no, text))
            self.new_no += 1
            self.new_left -= 1
        elif marker == "-" and self.old_left > 0:
            self.hunk.lines.append(Line("removed", self.old_no, None, text))
            self.old_no += 1
            self.old_left -= 1
        elif marker == " " and self.old_left > 0 and self.new_left > 0:
            self.hunk.lines.append(Line("context", self.old_no, self.new_no, text))
            self.old_no += 1
            self.new_no += 1
            self.old_left -= 1
            self.new_left -= 1
        else:
            return False
        return True


def _read_hunks(lines: list[str], start: int) -> tuple[list[Hunk], int]:
    """Read consecutive hunks from lines[start:]; return them and the index of the first line not read."""
    hunks: list[Hunk] = []
    index = start
    while index < len(lines):
        header = _HUNK.match(lines[index])
        if header is None:
            break
        reader = _HunkReader(header)
        index += 1
        while index < len(lines) and not _HUNK.match(lines[index]) and reader.feed(lines[index]):
            index += 1
        hunks.append(reader.hunk)
    return hunks, index


def parse_patch(
    patch: str | bytes,
    *,
    path: str,
    status: FileStatus = "modified",
    previous_path: str | None = None,
) -> FileDiff:
    """One file's hunks, as GitHub's API gives them in ``files[].patch`` (no ``diff --git`` header)."""
    lines = _split_lines(_text(patch))
    start = next((i for i, line in enumerate(lines) if _HUNK.match(line)), len(lines))
    hunks, _ = _read_hunks(lines, start)
    old_path = None if status == "added" else (previous_path or path)
    new_path = None if status == "removed" else path
    return FileDiff(old_path=old_path, new_path=new_path, status=status, hunks=hunks)


def parse_diff(diff: str | bytes) -> list[FileDiff]:
    """Every file of a `git diff` (or plain `diff -u`) output, in order."""
    lines = _split_lines(_text(diff))
    files: list[FileDiff] = []
    index = 0
    current: FileDiff | None = None
    while index < len(lines):
        line = lines[index]
        if line.startswith("diff --git "):
            current = _start_git_file(line)
            files.append(current)
            index += 1
            index = _read_extended_headers(lines, index, current)
            continue
        if line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            old = _strip_prefix(line[4:].split("\t")[0])
            new = _strip_prefix(lines[index + 1][4:].split("\t")[0])
            if current is None or current.hunks:
                current = FileDiff(old_path=old, new_path=new)
                files.append(current)
            current.old_path, current.new_path = old, new
            if old is None:
                current.status = "added"
            elif new is None:
                current.status = "removed"
            index += 2
            continue
        if _HUNK.match(line) and current is not None:
            hunks, index = _read_hunks(lines, index)
            current.hunks.extend(hunks)
            continue
        index += 1
    return files


def _start_git_file(line: str) -> FileDiff:
    rest = line.removeprefix("diff --git ")
    # Unquoted paths may contain spaces; when old and new are the same path, the split is in the middle.
    half = (len(rest) - 1) // 2
    if rest.startswith("a/") and rest[half : half + 3] == " b/" and rest[2:half] == rest[half + 3 :]:
        return FileDiff(old_path=rest[2:half], new_path=rest[half + 3 :])
    match = _DIFF_GIT.match(line)
    if match is None:
        return FileDiff(old_path=None, new_path=None)
    return FileDiff(old_path=_strip_prefix(match.group(1)), new_path=_strip_prefix(match.group(2)))


def _read_extended_headers(lines: list[str], index: int, current: FileDiff) -> int:
    """git's extended header lines between `diff --git` and the first `---`/`@@`/next file."""
    while index < len(lines):
        line = lines[index]
        if line.startswith(("diff --git ", "@@ ", "--- ")):
            break
        if line.startswith("new file mode "):
            current.status, current.old_path = "added", None
            current.new_mode = line.removeprefix("new file mode ").strip()
        elif line.startswith("deleted file mode "):
            current.status, current.new_path = "removed", None
            current.old_mode = line.removeprefix("deleted file mode ").strip()
        elif line.startswith("old mode "):
            current.old_mode = line.removeprefix("old mode ").strip()
        elif line.startswith("new mode "):
            current.new_mode = line.removeprefix("new mode ").strip()
        elif line.startswith(("rename from ", "copy from ")):
            current.old_path = _unquote(line.split(" from ", 1)[1])
            current.status = "renamed" if line.startswith("rename") else "copied"
        elif line.startswith(("rename to ", "copy to ")):
            current.new_path = _unquote(line.split(" to ", 1)[1])
        elif line.startswith(("similarity index ", "dissimilarity index ")):
            digits = "".join(ch for ch in line.split("index ", 1)[1] if ch.isdigit())
            current.similarity = int(digits) if digits else None
        elif line.startswith("Binary files ") or line == "GIT binary patch":
            current.is_binary = True
        index += 1
    return index


def files_by_path(diffs: Iterable[FileDiff]) -> dict[str, FileDiff]:
    return {diff.path: diff for diff in diffs}
