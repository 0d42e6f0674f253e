"""The unified-diff parser: `git diff` output and GitHub `patch` strings into FileDiff -> Hunk -> Line, and its queries.

Golden files: every ``tests/fixtures/diffs/*.diff`` is compared with the ``.json`` of the same name; create or refresh
those with ``python -m tests.unit.test_diff --write-golden`` (run from the project root), then review the result.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from reviewer.diff import FileDiff, Hunk, Line, files_by_path, parse_diff, parse_patch

ROOT = Path(__file__).resolve().parent.parent.parent
DIFFS = ROOT / "tests" / "fixtures" / "diffs"
GOLDEN_DIFFS = sorted(DIFFS.glob("*.diff"))
WRITE_GOLDEN = "python -m tests.unit.test_diff --write-golden"

KT = "app/src/main/java/com/example/MainActivity.kt"

# A modification with two hunks, as `git diff` prints it (empty context lines are a single space).
TWO_HUNKS = (
    b"diff --git a/app/src/main/java/com/example/MainActivity.kt b/app/src/main/java/com/example/MainActivity.kt\n"
    b"index 9c51109..ddd5d51 100644\n"
    b"--- a/app/src/main/java/com/example/MainActivity.kt\n"
    b"+++ b/app/src/main/java/com/example/MainActivity.kt\n"
    b"@@ -1,6 +1,7 @@\n"
    b" package com.example\n"
    b" \n"
    b" import android.os.Bundle\n"
    b"+import android.util.Log\n"
    b" import androidx.appcompat.app.AppCompatActivity\n"
    b" \n"
    b" class MainActivity : AppCompatActivity() {\n"
    b"@@ -19,8 +20,6 @@ class MainActivity : AppCompatActivity() {\n"
    b"     }\n"
    b" \n"
    b"     fun greet(name: String): String {\n"
    b'-        return "Hello, " + name\n'
    b'+        return "Hello, $name"\n'
    b"     }\n"
    b"-\n"
    b"-    private fun unused() = Unit\n"
    b" }\n"
)

TWO_HUNKS_LINES = [
    [
        Line("context", 1, 1, "package com.example"),
        Line("context", 2, 2, ""),
        Line("context", 3, 3, "import android.os.Bundle"),
        Line("added", None, 4, "import android.util.Log"),
        Line("context", 4, 5, "import androidx.appcompat.app.AppCompatActivity"),
        Line("context", 5, 6, ""),
        Line("context", 6, 7, "class MainActivity : AppCompatActivity() {"),
    ],
    [
        Line("context", 19, 20, "    }"),
        Line("context", 20, 21, ""),
        Line("context", 21, 22, "    fun greet(name: String): String {"),
        Line("removed", 22, None, '        return "Hello, " + name'),
        Line("added", None, 23, '        return "Hello, $name"'),
        Line("context", 23, 24, "    }"),
        Line("removed", 24, None, ""),
        Line("removed", 25, None, "    private fun unused() = Unit"),
        Line("context", 26, 25, "}"),
    ],
]

NEW_FILE = (
    b"diff --git a/app/src/main/java/com/example/Added.kt b/app/src/main/java/com/example/Added.kt\n"
    b"new file mode 100644\n"
    b"index 0000000..cbfef60\n"
    b"--- /dev/null\n"
    b"+++ b/app/src/main/java/com/example/Added.kt\n"
    b"@@ -0,0 +1,2 @@\n"
    b'+fun hello() = "hi"\n'
    b"+val x = 1\n"
)

DELETED_FILE = (
    b"diff --git a/app/src/main/java/com/example/Gone.kt b/app/src/main/java/com/example/Gone.kt\n"
    b"deleted file mode 100644\n"
    b"index b77b4eb..0000000\n"
    b"--- a/app/src/main/java/com/example/Gone.kt\n"
    b"+++ /dev/null\n"
    b"@@ -1,2 +0,0 @@\n"
    b"-val x = 1\n"
    b"-val y = 2\n"
)

RENAME_ONLY = (
    b"diff --git a/app/src/main/java/com/example/Old.kt b/app/src/main/java/com/example/New.kt\n"
    b"similarity index 100%\n"
    b"rename from app/src/main/java/com/example/Old.kt\n"
    b"rename to app/src/main/java/com/example/New.kt\n"
)

RENAME_WITH_HUNK = (
    b"diff --git a/core/src/main/kotlin/Repo.kt b/data/src/main/kotlin/Repository.kt\n"
    b"similarity index 86%\n"
    b"rename from core/src/main/kotlin/Repo.kt\n"
    b"rename to data/src/main/kotlin/Repository.kt\n"
    b"index 1e395f2..afa37bf 100644\n"
    b"--- a/core/src/main/kotlin/Repo.kt\n"
    b"+++ b/data/src/main/kotlin/Repository.kt\n"
    b"@@ -1,7 +1,7 @@\n"
    b" package com.example.data\n"
    b" \n"
    b" import kotlinx.coroutines.flow.Flow\n"
    b"-class Repo(private val api: Api) {\n"
    b"+class Repository(private val api: Api) {\n"
    b"     fun items(): Flow<Item> = api.items()\n"
    b" }\n"
    b" \n"
)

COPY = (
    b"diff --git a/app/src/main/res/values/strings.xml b/app/src/main/res/values-fr/strings.xml\n"
    b"similarity index 85%\n"
    b"copy from app/src/main/res/values/strings.xml\n"
    b"copy to app/src/main/res/values-fr/strings.xml\n"
    b"index 3a1f2c0..8b7d9e1 100644\n"
    b"--- a/app/src/main/res/values/strings.xml\n"
    b"+++ b/app/src/main/res/values-fr/strings.xml\n"
    b"@@ -1,4 +1,4 @@\n"
    b" <resources>\n"
    b'-    <string name="hello">Hello</string>\n'
    b'+    <string name="hello">Bonjour</string>\n'
    b'     <string name="app_name">Example</string>\n'
    b" </resources>\n"
)

BINARY_NEW = (
    b"diff --git a/app/src/main/res/drawable/x.png b/app/src/main/res/drawable/x.png\n"
    b"new file mode 100644\n"
    b"index 0000000..d9d6533\n"
    b"Binary files /dev/null and b/app/src/main/res/drawable/x.png differ\n"
)

GIT_BINARY_PATCH = (
    b"diff --git a/app/src/main/res/drawable/icon.png b/app/src/main/res/drawable/icon.png\n"
    b"index b77b4eb1d946f923f61785536da9ca5af6909f06..d9d65335f220869cabeaf561b1a881f3303fdaf3 100644\n"
    b"GIT binary patch\n"
    b"literal 11\n"
    b"ScmeAS@N?(olHy`uU;qFQMFFY+\n"
    b"\n"
    b"literal 4\n"
    b"Lcmb>6s^kIy0{#I8\n"
    b"\n"
)

MODE_ONLY = b"diff --git a/gradlew b/gradlew\nold mode 100644\nnew mode 100755\n"

# The old file ended without a newline; the new one adds a line after it.
NO_NEWLINE_REMOVED = (
    b"diff --git a/notes.txt b/notes.txt\n"
    b"index 1c943a9..d68dd40 100644\n"
    b"--- a/notes.txt\n"
    b"+++ b/notes.txt\n"
    b"@@ -1,3 +1,4 @@\n"
    b" a\n"
    b" b\n"
    b"-c\n"
    b"\\ No newline at end of file\n"
    b"+c\n"
    b"+d\n"
)

# The new file ends without a newline.
NO_NEWLINE_ADDED = (
    b"diff --git a/notes.txt b/notes.txt\n"
    b"index de98044..985cad8 100644\n"
    b"--- a/notes.txt\n"
    b"+++ b/notes.txt\n"
    b"@@ -1,3 +1,3 @@\n"
    b" a\n"
    b" b\n"
    b"-c\n"
    b"+C\n"
    b"\\ No newline at end of file\n"
)

# git's output for a file with CRLF line endings: the headers end in LF, the content lines in CRLF.
CRLF_CONTENT = (
    b"diff --git a/app/src/main/java/Win.java b/app/src/main/java/Win.java\n"
    b"index b5eff57..b614e59 100644\n"
    b"--- a/app/src/main/java/Win.java\n"
    b"+++ b/app/src/main/java/Win.java\n"
    b"@@ -1,3 +1,4 @@ class Win {\r\n"
    b" a\r\n"
    b"-b\r\n"
    b"+B\r\n"
    b" c\r\n"
    b"+d\r\n"
)

# A whole diff saved with CRLF (every line, headers included, ends in CRLF).
CRLF_EVERYWHERE = TWO_HUNKS.replace(b"\n", b"\r\n")


def lines_of(diff: FileDiff) -> list[list[Line]]:
    return [hunk.lines for hunk in diff.hunks]


def hunk_shape(hunk: Hunk) -> tuple[int, int, int, int, str]:
    return hunk.old_start, hunk.old_len, hunk.new_start, hunk.new_len, hunk.section_header


def only(data: str | bytes) -> FileDiff:
    files = parse_diff(data)
    assert len(files) == 1, [f.path for f in files]
    return files[0]


def two_hunks() -> FileDiff:
    return only(TWO_HUNKS)


# --- git diff: one file at a time -------------------------------------------------------------------------------------


def test_modification_with_two_hunks() -> None:
    diff = two_hunks()
    assert (diff.old_path, diff.new_path, diff.path) == (KT, KT, KT)
    assert diff.status == "modified"
    assert not diff.is_binary
    assert (diff.old_mode, diff.new_mode, diff.similarity) == (None, None, None)
    assert [hunk_shape(h) for h in diff.hunks] == [
        (1, 6, 1, 7, ""),
        (19, 8, 20, 6, "class MainActivity : AppCompatActivity() {"),
    ]
    assert lines_of(diff) == TWO_HUNKS_LINES
    assert not any(line.no_newline for line in diff.lines())
    assert [(h.old_end, h.new_end) for h in diff.hunks] == [(6, 7), (26, 25)]


def test_str_and_bytes_give_the_same_result() -> None:
    assert parse_diff(TWO_HUNKS.decode()) == parse_diff(TWO_HUNKS)


def test_new_file() -> None:
    diff = only(NEW_FILE)
    path = "app/src/main/java/com/example/Added.kt"
    assert (diff.old_path, diff.new_path, diff.path) == (None, path, path)
    assert diff.status == "added"
    assert (diff.old_mode, diff.new_mode) == (None, "100644")
    assert [hunk_shape(h) for h in diff.hunks] == [(0, 0, 1, 2, "")]
    assert lines_of(diff) == [[Line("added", None, 1, 'fun hello() = "hi"'), Line("added", None, 2, "val x = 1")]]
    assert diff.added_lines() == {1, 2}
    assert diff.diff_lines("LEFT") == set()


def test_deleted_file() -> None:
    diff = only(DELETED_FILE)
    path = "app/src/main/java/com/example/Gone.kt"
    assert (diff.old_path, diff.new_path, diff.path) == (path, None, path)
    assert diff.status == "removed"
    assert (diff.old_mode, diff.new_mode) == ("100644", None)
    assert [hunk_shape(h) for h in diff.hunks] == [(1, 2, 0, 0, "")]
    assert lines_of(diff) == [[Line("removed", 1, None, "val x = 1"), Line("removed", 2, None, "val y = 2")]]
    assert diff.added_lines() == set()
    assert diff.diff_lines("RIGHT") == set()
    assert diff.diff_lines("LEFT") == {1, 2}
    assert not diff.in_diff(1, "RIGHT")
    assert diff.in_diff(1, "LEFT")
    assert diff.new_side_text() == {}


def test_rename_with_similarity_and_no_hunks() -> None:
    diff = only(RENAME_ONLY)
    assert diff.old_path == "app/src/main/java/com/example/Old.kt"
    assert diff.new_path == diff.path == "app/src/main/java/com/example/New.kt"
    assert diff.status == "renamed"
    assert diff.similarity == 100
    assert diff.hunks == []
    assert not diff.is_binary
    assert (diff.old_mode, diff.new_mode) == (None, None)


def test_rename_with_hunks() -> None:
    diff = only(RENAME_WITH_HUNK)
    assert (diff.old_path, diff.new_path) == ("core/src/main/kotlin/Repo.kt", "data/src/main/kotlin/Repository.kt")
    assert diff.status == "renamed"
    assert diff.similarity == 86
    assert [hunk_shape(h) for h in diff.hunks] == [(1, 7, 1, 7, "")]
    assert [ln for ln in diff.lines() if ln.kind != "context"] == [
        Line("removed", 4, None, "class Repo(private val api: Api) {"),
        Line("added", None, 4, "class Repository(private val api: Api) {"),
    ]
    assert diff.hunks[0].lines[-1] == Line("context", 7, 7, "")


def test_copy() -> None:
    diff = only(COPY)
    assert diff.old_path == "app/src/main/res/values/strings.xml"
    assert diff.new_path == "app/src/main/res/values-fr/strings.xml"
    assert diff.status == "copied"
    assert diff.similarity == 85
    assert lines_of(diff) == [
        [
            Line("context", 1, 1, "<resources>"),
            Line("removed", 2, None, '    <string name="hello">Hello</string>'),
            Line("added", None, 2, '    <string name="hello">Bonjour</string>'),
            Line("context", 3, 3, '    <string name="app_name">Example</string>'),
            Line("context", 4, 4, "</resources>"),
        ]
    ]


def test_binary_files_differ() -> None:
    diff = only(BINARY_NEW)
    assert diff.is_binary
    assert diff.status == "added"
    assert (diff.old_path, diff.new_path) == (None, "app/src/main/res/drawable/x.png")
    assert (diff.old_mode, diff.new_mode) == (None, "100644")
    assert diff.hunks == []


def test_git_binary_patch_then_a_text_file() -> None:
    files = parse_diff(GIT_BINARY_PATCH + NEW_FILE)
    assert [f.path for f in files] == ["app/src/main/res/drawable/icon.png", "app/src/main/java/com/example/Added.kt"]
    binary, text = files
    assert binary.is_binary
    assert binary.status == "modified"
    assert binary.old_path == binary.new_path == "app/src/main/res/drawable/icon.png"
    assert binary.hunks == []
    assert not text.is_binary
    assert text.status == "added"
    assert text.added_lines() == {1, 2}


def test_mode_change_only() -> None:
    diff = only(MODE_ONLY)
    assert (diff.old_path, diff.new_path) == ("gradlew", "gradlew")
    assert diff.status == "modified"
    assert (diff.old_mode, diff.new_mode) == ("100644", "100755")
    assert diff.hunks == []
    assert not diff.is_binary


def test_no_newline_after_a_removed_line() -> None:
    diff = only(NO_NEWLINE_REMOVED)
    assert lines_of(diff) == [
        [
            Line("context", 1, 1, "a"),
            Line("context", 2, 2, "b"),
            Line("removed", 3, None, "c", no_newline=True),
            Line("added", None, 3, "c"),
            Line("added", None, 4, "d"),
        ]
    ]


def test_no_newline_after_an_added_line() -> None:
    diff = only(NO_NEWLINE_ADDED)
    assert lines_of(diff) == [
        [
            Line("context", 1, 1, "a"),
            Line("context", 2, 2, "b"),
            Line("removed", 3, None, "c"),
            Line("added", None, 3, "C", no_newline=True),
        ]
    ]


def test_no_newline_after_a_context_line_on_both_sides() -> None:
    diff = only(b"--- a/x.kt\n+++ b/x.kt\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n\\ No newline at end of file\n")
    assert lines_of(diff) == [
        [Line("removed", 1, None, "a"), Line("added", None, 1, "A"), Line("context", 2, 2, "b", no_newline=True)]
    ]


def test_crlf_content_lines() -> None:
    diff = only(CRLF_CONTENT)
    assert diff.path == "app/src/main/java/Win.java"
    assert [hunk_shape(h) for h in diff.hunks] == [(1, 3, 1, 4, "class Win {")]
    assert lines_of(diff) == [
        [
            Line("context", 1, 1, "a"),
            Line("removed", 2, None, "b"),
            Line("added", None, 2, "B"),
            Line("context", 3, 3, "c"),
            Line("added", None, 4, "d"),
        ]
    ]


def test_crlf_everywhere_parses_like_lf() -> None:
    diff = only(CRLF_EVERYWHERE)
    assert (diff.old_path, diff.new_path) == (KT, KT)
    assert [hunk_shape(h) for h in diff.hunks] == [hunk_shape(h) for h in two_hunks().hunks]
    assert lines_of(diff) == TWO_HUNKS_LINES
    assert not any("\r" in line.text for line in diff.lines())


def test_crlf_with_no_newline_marker() -> None:
    diff = only(NO_NEWLINE_ADDED.replace(b"\n", b"\r\n"))
    assert diff.hunks[0].lines[-1] == Line("added", None, 3, "C", no_newline=True)
    assert not any("\r" in line.text for line in diff.lines())


def test_a_lone_carriage_return_inside_a_line_is_content() -> None:
    diff = only("--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-a\rb\n+ab\n")
    assert lines_of(diff) == [[Line("removed", 1, None, "a\rb"), Line("added", None, 1, "ab")]]


def test_unicode_line_separators_do_not_split_lines() -> None:
    text = 'val s = "a\u2028b\x0cc\x1cd\x85e"'
    diff = only(f"--- a/S.kt\n+++ b/S.kt\n@@ -1 +1,2 @@\n x\n+{text}\n")
    assert lines_of(diff) == [[Line("context", 1, 1, "x"), Line("added", None, 2, text)]]


def test_non_utf8_bytes_are_replaced() -> None:
    data = (
        b"diff --git a/legacy/Latin1.java b/legacy/Latin1.java\n"
        b"index 1111111..2222222 100644\n"
        b"--- a/legacy/Latin1.java\n"
        b"+++ b/legacy/Latin1.java\n"
        b"@@ -1,2 +1,2 @@ // caf\xe9\n"
        b'-String s = "caf\xe9";\n'
        b'+String s = "caf\xc3\xa9";\n'
        b" \xff\xfe\n"
    )
    diff = only(data)
    assert diff.hunks[0].section_header == "// caf\ufffd"
    assert lines_of(diff) == [
        [
            Line("removed", 1, None, 'String s = "caf\ufffd";'),
            Line("added", None, 1, 'String s = "café";'),
            Line("context", 2, 2, "\ufffd\ufffd"),
        ]
    ]


@pytest.mark.parametrize(
    ("header", "shape"),
    [
        ("@@ -3 +3 @@", (3, 1, 3, 1, "")),
        ("@@ -3 +3,1 @@ fun a()", (3, 1, 3, 1, "fun a()")),
        ("@@ -3,1 +3 @@", (3, 1, 3, 1, "")),
    ],
)
def test_hunk_header_without_counts_means_one(header: str, shape: tuple[int, int, int, int, str]) -> None:
    diff = only(f"--- a/A.kt\n+++ b/A.kt\n{header}\n-old\n+new\n")
    assert [hunk_shape(h) for h in diff.hunks] == [shape]
    assert lines_of(diff) == [[Line("removed", 3, None, "old"), Line("added", None, 3, "new")]]


def test_hunk_header_from_zero() -> None:
    diff = only("--- a/A.kt\n+++ b/A.kt\n@@ -0,0 +1,2 @@\n+a\n+b\n")
    assert [hunk_shape(h) for h in diff.hunks] == [(0, 0, 1, 2, "")]
    assert diff.added_lines() == {1, 2}


def test_lines_that_look_like_file_headers_stay_in_the_hunk() -> None:
    # The file holds a patch: removing "-- a/Old.kt" prints "--- a/Old.kt", adding "++ b/New.kt" prints "+++ b/New.kt".
    data = (
        b"diff --git a/docs/example.patch b/docs/example.patch\n"
        b"index 1111111..2222222 100644\n"
        b"--- a/docs/example.patch\n"
        b"+++ b/docs/example.patch\n"
        b"@@ -1,5 +1,5 @@\n"
        b" Example:\n"
        b"--- a/Old.kt\n"
        b"+++ b/New.kt\n"
        b" @@ -1 +1 @@\n"
        b"--- SQL comment\n"
        b"+++ counter\n"
        b" end\n"
    )
    files = parse_diff(data)
    assert [(f.old_path, f.new_path) for f in files] == [("docs/example.patch", "docs/example.patch")]
    assert lines_of(files[0]) == [
        [
            Line("context", 1, 1, "Example:"),
            Line("removed", 2, None, "-- a/Old.kt"),
            Line("added", None, 2, "++ b/New.kt"),
            Line("context", 3, 3, "@@ -1 +1 @@"),
            Line("removed", 4, None, "-- SQL comment"),
            Line("added", None, 4, "++ counter"),
            Line("context", 5, 5, "end"),
        ]
    ]


def test_removed_header_lookalike_as_first_line_of_a_hunk() -> None:
    data = b"--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,2 @@\n--- comment\n+++ other\n x\n"
    diff = only(data)
    assert lines_of(diff) == [
        [Line("removed", 1, None, "-- comment"), Line("added", None, 1, "++ other"), Line("context", 2, 2, "x")]
    ]


def test_several_files_in_order() -> None:
    data = TWO_HUNKS + NEW_FILE + DELETED_FILE + RENAME_ONLY + MODE_ONLY + BINARY_NEW + COPY
    files = parse_diff(data)
    assert [(f.path, f.status) for f in files] == [
        (KT, "modified"),
        ("app/src/main/java/com/example/Added.kt", "added"),
        ("app/src/main/java/com/example/Gone.kt", "removed"),
        ("app/src/main/java/com/example/New.kt", "renamed"),
        ("gradlew", "modified"),
        ("app/src/main/res/drawable/x.png", "added"),
        ("app/src/main/res/values-fr/strings.xml", "copied"),
    ]
    assert [len(f.hunks) for f in files] == [2, 1, 1, 0, 0, 0, 1]
    assert files[0] == two_hunks()
    assert files[2] == only(DELETED_FILE)
    assert list(files_by_path(files)) == [f.path for f in files]
    assert files_by_path(files)["gradlew"] is files[4]


def test_plain_diff_u_output_with_timestamps() -> None:
    data = (
        "--- old/A.kt\t2024-05-01 10:00:00.000000000 +0200\n"
        "+++ new/A.kt\t2024-05-01 10:05:00.000000000 +0200\n"
        "@@ -1 +1 @@\n"
        "-a\n"
        "+b\n"
        "--- old/B.kt\t2024-05-01 10:00:00.000000000 +0200\n"
        "+++ new/B.kt\t2024-05-01 10:05:00.000000000 +0200\n"
        "@@ -1,2 +1 @@\n"
        " x\n"
        "-y\n"
    )
    files = parse_diff(data)
    assert [(f.old_path, f.new_path, f.status) for f in files] == [
        ("old/A.kt", "new/A.kt", "modified"),
        ("old/B.kt", "new/B.kt", "modified"),
    ]
    assert lines_of(files[1]) == [[Line("context", 1, 1, "x"), Line("removed", 2, None, "y")]]


def test_path_with_spaces_from_the_file_headers() -> None:
    # git ends ---/+++ lines with a tab when the path holds a space.
    data = (
        b"diff --git a/docs/my notes.md b/docs/my notes.md\n"
        b"index 1a9cc2b..bca70f3 100644\n"
        b"--- a/docs/my notes.md\t\n"
        b"+++ b/docs/my notes.md\t\n"
        b"@@ -1 +1 @@\n"
        b"-p\n"
        b"+q\n"
    )
    diff = only(data)
    assert (diff.old_path, diff.new_path) == ("docs/my notes.md", "docs/my notes.md")
    assert diff.added_lines() == {1}


@pytest.mark.parametrize(
    ("data", "old_path", "new_path"),
    [
        pytest.param(
            b"diff --git a/scripts/run tests.sh b/scripts/run tests.sh\nold mode 100644\nnew mode 100755\n",
            "scripts/run tests.sh",
            "scripts/run tests.sh",
            id="mode-change",
        ),
        pytest.param(
            b"diff --git a/docs/my image.png b/docs/my image.png\n"
            b"new file mode 100644\n"
            b"index 0000000..d9d6533\n"
            b"Binary files /dev/null and b/docs/my image.png differ\n",
            None,
            "docs/my image.png",
            id="binary",
        ),
        pytest.param(
            b"diff --git a/docs/empty file.txt b/docs/empty file.txt\nnew file mode 100644\nindex 0000000..e69de29\n",
            None,
            "docs/empty file.txt",
            id="empty-new-file",
        ),
    ],
)
def test_path_with_spaces_without_file_headers(data: bytes, old_path: str | None, new_path: str) -> None:
    # Only the `diff --git` line names these files; git writes both halves identically, so the split is unambiguous.
    diff = only(data)
    assert (diff.old_path, diff.new_path) == (old_path, new_path)


def test_quoted_path_with_octal_escapes_is_unquoted() -> None:
    # core.quotePath (on by default) makes git print non-ASCII names quoted, with octal escapes of the UTF-8 bytes.
    data = (
        b'diff --git "a/docs/caf\\303\\251.md" "b/docs/caf\\303\\251.md"\n'
        b"index 587be6b..975fbec 100644\n"
        b'--- "a/docs/caf\\303\\251.md"\n'
        b'+++ "b/docs/caf\\303\\251.md"\n'
        b"@@ -1 +1 @@\n"
        b"-x\n"
        b"+y\n"
    )
    diff = only(data)
    assert (diff.old_path, diff.new_path) == ("docs/café.md", "docs/café.md")


def test_to_json() -> None:
    assert only(NO_NEWLINE_ADDED).to_json() == {
        "old_path": "notes.txt",
        "new_path": "notes.txt",
        "status": "modified",
        "is_binary": False,
        "old_mode": None,
        "new_mode": None,
        "similarity": None,
        "hunks": [
            {
                "old_start": 1,
                "old_len": 3,
                "new_start": 1,
                "new_len": 3,
                "section_header": "",
                "lines": [
                    ["c", 1, 1, "a"],
                    ["c", 2, 2, "b"],
                    ["r", 3, None, "c"],
                    ["a", None, 3, "C", "no_newline"],
                ],
            }
        ],
    }
    assert json.loads(json.dumps(two_hunks().to_json())) == two_hunks().to_json()


# --- GitHub `patch` strings -------------------------------------------------------------------------------------------

GITHUB_PATCH = (
    "@@ -1,6 +1,7 @@\n"
    " package com.example\n"
    " \n"
    " import android.os.Bundle\n"
    "+import android.util.Log\n"
    " import androidx.appcompat.app.AppCompatActivity\n"
    " \n"
    " class MainActivity : AppCompatActivity() {\n"
    "@@ -19,8 +20,6 @@ class MainActivity : AppCompatActivity() {\n"
    "     }\n"
    " \n"
    "     fun greet(name: String): String {\n"
    '-        return "Hello, " + name\n'
    '+        return "Hello, $name"\n'
    "     }\n"
    "-\n"
    "-    private fun unused() = Unit\n"
    " }"  # GitHub's patch has no newline after its last line
)


def test_parse_patch_modified() -> None:
    diff = parse_patch(GITHUB_PATCH, path=KT)
    assert (diff.old_path, diff.new_path, diff.status) == (KT, KT, "modified")
    assert [hunk_shape(h) for h in diff.hunks] == [hunk_shape(h) for h in two_hunks().hunks]
    assert lines_of(diff) == TWO_HUNKS_LINES
    assert diff == two_hunks()


def test_parse_patch_accepts_bytes_and_crlf() -> None:
    assert parse_patch(GITHUB_PATCH.replace("\n", "\r\n").encode(), path=KT) == parse_patch(GITHUB_PATCH, path=KT)


@pytest.mark.parametrize(
    ("patch", "status", "previous_path", "paths", "lines"),
    [
        pytest.param(
            "@@ -0,0 +1,2 @@\n+a\n+b",
            "added",
            None,
            (None, "app/New.kt"),
            [Line("added", None, 1, "a"), Line("added", None, 2, "b")],
            id="added",
        ),
        pytest.param(
            "@@ -1,2 +0,0 @@\n-a\n-b",
            "removed",
            None,
            ("app/New.kt", None),
            [Line("removed", 1, None, "a"), Line("removed", 2, None, "b")],
            id="removed",
        ),
        pytest.param(
            "@@ -3,2 +3,2 @@ fun f() {\n x\n-y\n+z",
            "renamed",
            "app/Old.kt",
            ("app/Old.kt", "app/New.kt"),
            [Line("context", 3, 3, "x"), Line("removed", 4, None, "y"), Line("added", None, 4, "z")],
            id="renamed",
        ),
        pytest.param(
            "@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file",
            "modified",
            None,
            ("app/New.kt", "app/New.kt"),
            [Line("removed", 1, None, "a", no_newline=True), Line("added", None, 1, "b", no_newline=True)],
            id="modified-no-newline",
        ),
    ],
)
def test_parse_patch_statuses(
    patch: str,
    status: Any,
    previous_path: str | None,
    paths: tuple[str | None, str | None],
    lines: list[Line],
) -> None:
    diff = parse_patch(patch, path="app/New.kt", status=status, previous_path=previous_path)
    assert (diff.old_path, diff.new_path) == paths
    assert (diff.status, diff.path) == (status, "app/New.kt")
    assert not diff.is_binary
    assert list(diff.lines()) == lines


def test_parse_patch_renamed_without_hunks() -> None:
    diff = parse_patch("", path="app/New.kt", status="renamed", previous_path="app/Old.kt")
    assert (diff.old_path, diff.new_path, diff.status, diff.hunks) == ("app/Old.kt", "app/New.kt", "renamed", [])


@pytest.mark.parametrize("patch", ["", "not a patch", "Binary file", "\n\n"])
def test_parse_patch_without_hunks(patch: str) -> None:
    diff = parse_patch(patch, path="x.png")
    assert (diff.path, diff.hunks, diff.added_lines()) == ("x.png", [], set())


# --- queries ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "side", "expected"),
    [
        (4, "RIGHT", True),  # added
        (1, "RIGHT", True),  # context, first line of hunk 1
        (7, "RIGHT", True),  # context, last line of hunk 1
        (23, "RIGHT", True),  # added in hunk 2
        (25, "RIGHT", True),  # context "}" (old 26)
        (8, "RIGHT", False),  # between the hunks
        (19, "RIGHT", False),  # between the hunks (hunk 2 starts at new 20)
        (26, "RIGHT", False),  # after the last hunk (26 is only an old number)
        (0, "RIGHT", False),
        (22, "LEFT", True),  # removed
        (24, "LEFT", True),  # removed (empty line)
        (25, "LEFT", True),  # removed
        (26, "LEFT", True),  # context "}" on the old side
        (19, "LEFT", True),  # context, first line of hunk 2 on the old side
        (7, "LEFT", False),  # hunk 1 covers old 1..6 only
        (18, "LEFT", False),
        (27, "LEFT", False),
    ],
)
def test_in_diff(line: int, side: Any, expected: bool) -> None:
    assert two_hunks().in_diff(line, side) is expected


def test_in_diff_is_false_for_removed_only_numbers() -> None:
    diff = parse_patch(
        "@@ -10,5 +10,2 @@ fun main() {\n     val a = 1\n-    val b = 2\n-    val c = 3\n-    val d = 4\n }\n",
        path="Main.kt",
    )
    assert diff.diff_lines("RIGHT") == {10, 11}
    assert diff.diff_lines("LEFT") == {10, 11, 12, 13, 14}
    assert [diff.in_diff(n) for n in (10, 11, 12, 13, 14)] == [True, True, False, False, False]
    assert [diff.in_diff(n, "LEFT") for n in (10, 11, 12, 13, 14)] == [True, True, True, True, True]
    assert diff.added_lines() == set()


def test_hunk_for() -> None:
    diff = two_hunks()
    first, second = diff.hunks
    assert diff.hunk_for(1) is first
    assert diff.hunk_for(4) is first
    assert diff.hunk_for(20) is second
    assert diff.hunk_for(23) is second
    assert diff.hunk_for(10) is None
    assert diff.hunk_for(26) is None
    assert diff.hunk_for(25, "LEFT") is second
    assert diff.hunk_for(6, "LEFT") is first
    assert diff.hunk_for(7, "LEFT") is None


@pytest.mark.parametrize(
    ("start", "end", "side", "expected"),
    [
        (1, 7, "RIGHT", True),  # the whole first hunk
        (3, 5, "RIGHT", True),  # context .. added .. context
        (4, 4, "RIGHT", True),  # one line
        (20, 25, "RIGHT", True),  # the whole second hunk
        (22, 24, "RIGHT", True),  # across removed lines
        (5, 21, "RIGHT", False),  # across two hunks
        (7, 20, "RIGHT", False),  # last line of hunk 1 to first line of hunk 2
        (6, 9, "RIGHT", False),  # ends outside any hunk
        (9, 10, "RIGHT", False),  # both ends outside
        (24, 26, "RIGHT", False),  # 26 is past the hunk
        (5, 3, "RIGHT", False),  # start > end
        (25, 20, "RIGHT", False),  # start > end
        (22, 26, "LEFT", True),  # removed .. context on the old side
        (19, 25, "LEFT", True),
        (4, 19, "LEFT", False),  # across hunks
        (24, 22, "LEFT", False),  # start > end
        (7, 7, "LEFT", False),  # old 7 is not in hunk 1
    ],
)
def test_can_span(start: int, end: int, side: Any, expected: bool) -> None:
    assert two_hunks().can_span(start, end, side) is expected


def test_added_and_diff_lines() -> None:
    diff = two_hunks()
    assert diff.added_lines() == {4, 23}
    assert diff.diff_lines() == diff.diff_lines("RIGHT") == {1, 2, 3, 4, 5, 6, 7, 20, 21, 22, 23, 24, 25}
    assert diff.diff_lines("LEFT") == {1, 2, 3, 4, 5, 6, 19, 20, 21, 22, 23, 24, 25, 26}


def test_new_side_text() -> None:
    text = two_hunks().new_side_text()
    assert set(text) == two_hunks().diff_lines("RIGHT")
    assert text[4] == "import android.util.Log"
    assert text[23] == '        return "Hello, $name"'
    assert text[25] == "}"
    assert text[2] == ""


# --- garbage never raises ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "",
        b"",
        "\n\n\n",
        "hello world\nthis is not a diff\n",
        b"\x00\x01\x02\xff\xfe\xfd",
        "@@ -1 +1 @@\n-x\n+y\n",  # a hunk without any file header
        "--- only one header line\n",
        "+++ b/x\n--- a/x\n",  # headers in the wrong order
        "\\ No newline at end of file\n",
        "@@ -a,b +c,d @@\n",
        "index 123..456 100644\nsimilarity index 90%\n",
    ],
)
def test_garbage_gives_no_files(data: str | bytes) -> None:
    assert parse_diff(data) == []


def test_diff_git_line_without_paths() -> None:
    files = parse_diff("diff --git nonsense\n")
    assert [(f.old_path, f.new_path, f.path, f.hunks) for f in files] == [(None, None, "", [])]


def test_file_headers_without_hunks() -> None:
    files = parse_diff("--- a/x.kt\n+++ b/x.kt\n")
    assert [(f.old_path, f.new_path, f.status, f.hunks) for f in files] == [("x.kt", "x.kt", "modified", [])]


def test_truncated_hunk_keeps_what_it_has_and_the_next_file() -> None:
    data = (
        "diff --git a/x.kt b/x.kt\n"
        "--- a/x.kt\n"
        "+++ b/x.kt\n"
        "@@ -1,10 +1,10 @@ class X {\n"
        " a\n"
        "-b\n"
        "+B\n" + NEW_FILE.decode()
    )
    files = parse_diff(data)
    assert [f.path for f in files] == ["x.kt", "app/src/main/java/com/example/Added.kt"]
    truncated = files[0]
    assert [hunk_shape(h) for h in truncated.hunks] == [(1, 10, 1, 10, "class X {")]
    assert lines_of(truncated) == [
        [Line("context", 1, 1, "a"), Line("removed", 2, None, "b"), Line("added", None, 2, "B")]
    ]
    assert truncated.in_diff(2)
    assert not truncated.in_diff(5)
    assert files[1] == only(NEW_FILE)


def test_truncated_at_end_of_input() -> None:
    diff = only("--- a/x.kt\n+++ b/x.kt\n@@ -5,20 +5,21 @@\n x\n+y\n")
    assert lines_of(diff) == [[Line("context", 5, 5, "x"), Line("added", None, 6, "y")]]


def test_hunk_header_alone() -> None:
    diff = only("--- a/x.kt\n+++ b/x.kt\n@@ -1,2 +1,2 @@\n")
    assert [hunk_shape(h) for h in diff.hunks] == [(1, 2, 1, 2, "")]
    assert lines_of(diff) == [[]]


def test_lines_beyond_the_counts_are_not_part_of_the_hunk() -> None:
    diff = only("--- a/x.kt\n+++ b/x.kt\n@@ -1 +1 @@\n-a\n+b\n+c\n-d\n more\n")
    assert lines_of(diff) == [[Line("removed", 1, None, "a"), Line("added", None, 1, "b")]]


def check_invariants(files: list[FileDiff]) -> None:
    for diff in files:
        for hunk in diff.hunks:
            new_side = [ln for ln in hunk.lines if ln.kind != "removed"]
            old_side = [ln for ln in hunk.lines if ln.kind != "added"]
            assert len(new_side) <= hunk.new_len
            assert len(old_side) <= hunk.old_len
            assert [ln.new_no for ln in new_side] == list(range(hunk.new_start, hunk.new_start + len(new_side)))
            assert [ln.old_no for ln in old_side] == list(range(hunk.old_start, hunk.old_start + len(old_side)))
            for ln in hunk.lines:
                assert (ln.old_no is None) == (ln.kind == "added")
                assert (ln.new_no is None) == (ln.kind == "removed")
                assert "\n" not in ln.text


@pytest.mark.parametrize("seed", range(40))
def test_mangled_diffs_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    lines = (TWO_HUNKS + GIT_BINARY_PATCH + NO_NEWLINE_REMOVED + RENAME_WITH_HUNK + CRLF_CONTENT).split(b"\n")
    for _ in range(rng.randint(1, 8)):
        action = rng.choice(("drop", "duplicate", "swap", "truncate", "noise"))
        index = rng.randrange(len(lines))
        if action == "drop":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "swap":
            other = rng.randrange(len(lines))
            lines[index], lines[other] = lines[other], lines[index]
        elif action == "truncate":
            lines[index] = lines[index][: rng.randrange(len(lines[index]) + 1)]
        else:
            lines[index] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
        if not lines:
            lines = [b""]
    data = b"\n".join(lines)
    check_invariants(parse_diff(data))
    check_invariants([parse_patch(data, path="x.kt")])


def test_the_examples_hold_the_invariants() -> None:
    every = TWO_HUNKS + NEW_FILE + DELETED_FILE + RENAME_WITH_HUNK + COPY + NO_NEWLINE_REMOVED + CRLF_CONTENT
    check_invariants(parse_diff(every))


# --- golden files -----------------------------------------------------------------------------------------------------


def golden(data: bytes) -> list[dict[str, Any]]:
    return [diff.to_json() for diff in parse_diff(data)]


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def check_golden(diff_file: Path) -> None:
    expected_file = diff_file.with_suffix(".json")
    if not expected_file.is_file():
        pytest.fail(
            f"{shown(expected_file)} is missing: create it with `{WRITE_GOLDEN}` (run from the project root), "
            "then review it before committing",
            pytrace=False,
        )
    expected = json.loads(expected_file.read_text(encoding="utf-8"))
    assert golden(diff_file.read_bytes()) == expected, f"{shown(diff_file)} no longer parses to {shown(expected_file)}"


@pytest.mark.parametrize("diff_file", GOLDEN_DIFFS, ids=[path.name for path in GOLDEN_DIFFS])
def test_golden(diff_file: Path) -> None:
    check_golden(diff_file)


def test_golden_without_json_fails_and_says_how_to_create_it(tmp_path: Path) -> None:
    diff_file = tmp_path / "mode.diff"
    diff_file.write_bytes(MODE_ONLY)
    with pytest.raises(pytest.fail.Exception, match=r"mode\.json is missing: create it with `python -m tests\.unit\."):
        check_golden(diff_file)


def test_write_golden_then_check(tmp_path: Path) -> None:
    (tmp_path / "two.diff").write_bytes(TWO_HUNKS + NO_NEWLINE_ADDED)
    (tmp_path / "latin1.diff").write_bytes(b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-caf\xe9\n+caf\xc3\xa9\n")
    written = write_golden(sorted(tmp_path.glob("*.diff")))
    assert written == [tmp_path / "latin1.json", tmp_path / "two.json"]
    text = (tmp_path / "two.json").read_text(encoding="utf-8")
    assert text.endswith("}\n]\n")
    assert text.startswith('[\n  {\n    "old_path": "app/src/main/java/com/example/MainActivity.kt",\n')
    assert json.loads(text) == [only(TWO_HUNKS).to_json(), only(NO_NEWLINE_ADDED).to_json()]
    assert json.loads((tmp_path / "latin1.json").read_text(encoding="utf-8"))[0]["hunks"][0]["lines"] == [
        ["r", 1, None, "caf\ufffd"],
        ["a", None, 1, "café"],
    ]
    for diff_file in sorted(tmp_path.glob("*.diff")):
        check_golden(diff_file)
    (tmp_path / "two.diff").write_bytes(TWO_HUNKS)
    with pytest.raises(AssertionError, match="no longer parses to"):
        check_golden(tmp_path / "two.diff")


def test_main_writes_golden_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mode.diff").write_bytes(MODE_ONLY)
    monkeypatch.setattr(sys.modules[__name__], "DIFFS", tmp_path)
    assert main(["--write-golden"]) == 0
    assert json.loads((tmp_path / "mode.json").read_text(encoding="utf-8")) == [only(MODE_ONLY).to_json()]
    assert capsys.readouterr().out.endswith("1 golden file(s) written\n")


def write_golden(paths: list[Path]) -> list[Path]:
    written = []
    for diff_file in paths:
        expected_file = diff_file.with_suffix(".json")
        text = json.dumps(golden(diff_file.read_bytes()), indent=2, ensure_ascii=False) + "\n"
        expected_file.write_text(text, encoding="utf-8")
        written.append(expected_file)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.unit.test_diff", description=__doc__)
    parser.add_argument("--write-golden", action="store_true", help=f"write the .json of every *.diff in {DIFFS}")
    args = parser.parse_args(argv)
    if not args.write_golden:
        parser.print_help()
        return 2
    written = write_golden(sorted(DIFFS.glob("*.diff")))
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"{len(written)} golden file(s) written\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
