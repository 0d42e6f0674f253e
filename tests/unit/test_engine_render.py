"""The engine (filter modes, placement, caps, notes, never raising) and the renderers (markdown, SARIF)."""

from __future__ import annotations

import json
import random
import textwrap

import jsonschema
import pytest

from reviewer.diff import parse_diff
from reviewer.engine import MAX_FINDINGS, Change, ChangedFile, review_change, whole_file_change
from reviewer.files import MAX_FILE_BYTES, parse_repo_config
from reviewer.models import Severity
from reviewer.render import (
    FINGERPRINT_MARKER,
    MAX_BODY_CHARS,
    comment_body,
    review_body,
    to_json,
    to_sarif,
    to_text,
    truncate,
)
from tests.conftest import FIXTURES

NEW_SOURCE = textwrap.dedent(
    """\
    package com.example.sync

    class SyncRepository(private val api: SyncApi) {
        fun legacy() {
            val cached = api.cache!!.size
        }

        fun refresh() {
            GlobalScope.launch {
                api.sync()
            }
        }
    }
    """
).encode()

# Lines 8-12 (refresh) were added; legacy() with its `!!` is old code outside the hunk.
PATH = "app/src/main/java/com/example/sync/SyncRepository.kt"
DIFF = "\n".join(
    [
        f"diff --git a/{PATH} b/{PATH}",
        "index 1111111..2222222 100644",
        f"--- a/{PATH}",
        f"+++ b/{PATH}",
        "@@ -6,3 +6,9 @@ class SyncRepository(private val api: SyncApi) {",
        "         }",
        " ",
        "+    fun refresh() {",
        "+        GlobalScope.launch {",
        "+            api.sync()",
        "+        }",
        "+    }",
        "+",
        " }",
        "",
    ]
)


def change(source: bytes | None = NEW_SOURCE) -> Change:
    return Change([ChangedFile(d, source) for d in parse_diff(DIFF)])


def test_added_filter_keeps_only_findings_on_added_lines() -> None:
    review = review_change(change())
    assert [(f.rule_id, f.line, f.placement) for f in review.findings] == [("global-scope", 9, "inline")]
    assert review.files_reviewed == 1


def test_file_filter_keeps_everything_and_places_old_code_in_the_body() -> None:
    config, error = parse_repo_config("filter: file")
    assert error is None
    review = review_change(change(), config)
    placed = {(f.rule_id, f.placement) for f in review.findings}
    assert placed == {("global-scope", "inline"), ("not-null-assertion", "body")}
    body = review_body(review)
    assert "Findings outside the diff's lines" in body
    assert "SyncRepository.kt:5" in body


def test_min_severity_and_disabled_rules() -> None:
    config, _ = parse_repo_config("filter: file\nmin_severity: major\n")
    assert [f.rule_id for f in review_change(change(), config).findings] == ["global-scope"]
    config, _ = parse_repo_config("rules:\n  disable: global-scope\n")
    assert review_change(change(), config).findings == []


def test_without_the_full_file_the_diff_lines_are_reviewed_and_it_says_so() -> None:
    review = review_change(change(source=None))
    assert [f.rule_id for f in review.findings] == ["global-scope"]
    assert review.notes[0].reason == "reviewed from the diff's lines only (no full file)"


def test_inline_cap_moves_the_rest_to_the_body() -> None:
    lines = "\n".join(f"fun f{i}(x: String?) = x!!.length" for i in range(5))
    config, _ = parse_repo_config("max_comments: 2")
    review = review_change(whole_file_change("app/src/main/java/A.kt", lines.encode()), config)
    assert [f.placement for f in review.findings] == ["inline", "inline", "body", "body", "body"]
    assert review.findings[2].placement_reason == "over the limit of 2 inline comments"


def test_findings_are_sorted_by_severity_and_capped() -> None:
    code = "\n".join(["fun a() = GlobalScope.launch { }"] + [f"fun f{i}(x: String?) = x!!" for i in range(250)])
    review = review_change(whole_file_change("app/src/main/java/A.kt", code.encode()))
    assert review.findings[0].rule_id == "global-scope"
    assert len(review.findings) == MAX_FINDINGS
    assert review.omitted == 251 - MAX_FINDINGS
    assert f"{review.omitted} more finding(s)" in review_body(review)


def test_skipped_files_are_noted_with_reasons() -> None:
    diff = textwrap.dedent(
        """\
        diff --git a/app/build/generated/R.kt b/app/build/generated/R.kt
        --- a/app/build/generated/R.kt
        +++ b/app/build/generated/R.kt
        @@ -1 +1 @@
        -a
        +b
        diff --git a/docs/logo.png b/docs/logo.png
        Binary files a/docs/logo.png and b/docs/logo.png differ
        diff --git a/app/src/main/AndroidManifest.xml b/app/src/main/AndroidManifest.xml
        --- a/app/src/main/AndroidManifest.xml
        +++ b/app/src/main/AndroidManifest.xml
        @@ -1 +1 @@
        -<manifest>
        +<manifest><application>
        """
    )
    review = review_change(Change([ChangedFile(d) for d in parse_diff(diff)]))
    reasons = {note.path: note.reason for note in review.notes}
    assert reasons["app/build/generated/R.kt"] == "generated or build output (build/)"
    assert reasons["docs/logo.png"] == "binary file"
    assert reasons["app/src/main/AndroidManifest.xml"].startswith("could not be parsed: not well-formed XML")
    assert review.findings == []


def test_large_files_are_noted_not_parsed() -> None:
    big = b"// filler\n" * (MAX_FILE_BYTES // 10 + 1)
    review = review_change(whole_file_change("app/src/main/java/Big.kt", big))
    assert review.notes[0].reason == f"larger than {MAX_FILE_BYTES // 1024} KiB: not reviewed"


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    junk = bytes(rng.randrange(256) for _ in range(2000))
    for path in ("A.kt", "build.gradle.kts", "gradle/libs.versions.toml", "src/main/AndroidManifest.xml"):
        review_change(whole_file_change(path, junk))
    review_change(Change([ChangedFile(d) for d in parse_diff(junk)]))


def test_comment_body_has_rule_suggestion_and_hidden_fingerprint() -> None:
    code = "suspend fun poll() {\n    Thread.sleep(500)\n}\n"
    finding = review_change(whole_file_change("app/src/main/java/P.kt", code.encode())).findings[0]
    body = comment_body(finding)
    assert "`thread-sleep-in-coroutine`" in body
    assert "**major**" in body
    assert "```suggestion\n    delay(500)\n```" in body
    assert f"<!-- {FINGERPRINT_MARKER}{finding.fingerprint} -->" in body


def test_suggestion_is_dropped_when_the_comment_is_re_anchored() -> None:
    # A two-line finding whose first line is outside the diff is anchored to its second line: the suggestion,
    # written for both lines, would replace the wrong text, so it is not offered.
    code = "@Composable\nfun C() {\n    val s = PendingIntent.getActivity(\n        c, 0, i, 0)\n}\n"
    diff = "--- a/A.kt\n+++ b/A.kt\n@@ -4,1 +4,1 @@\n-        c, 0, i, 1)\n+        c, 0, i, 0)\n"
    review = review_change(Change([ChangedFile(d, code.encode()) for d in parse_diff(diff)]))
    finding = review.findings[0]
    assert (finding.line, finding.end_line, finding.placement, finding.suggestion) == (4, 4, "inline", None)
    assert "```suggestion" not in comment_body(finding)


def test_body_truncation_fits_github_limit() -> None:
    assert len(truncate("x" * 100_000)) <= MAX_BODY_CHARS
    assert truncate("short") == "short"


def test_rules_only_is_said_out_loud() -> None:
    review = review_change(change())
    assert "Rules only" in review_body(review)
    assert "Rules only" in to_text(review)
    assert to_json(review)["mode_note"].startswith("Rules only")


def test_json_output_shape() -> None:
    data = to_json(review_change(change()))
    assert data["summary"] == {"blocker": 0, "major": 1, "minor": 0, "nit": 0}
    assert data["findings"][0]["rule"] == "global-scope"
    assert {"line", "end_line", "severity", "category", "message", "suggestion", "fingerprint"} <= set(
        data["findings"][0]
    )


def _sarif_validator() -> jsonschema.Draft202012Validator:
    # The OASIS schema file, verbatim (see tests/fixtures/sarif/SOURCE.md). Its `language` pattern is not a
    # valid Python regex (upstream bug), so the schema is used to validate documents without check_schema.
    schema = json.loads((FIXTURES / "sarif" / "sarif-schema-2.1.0.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def test_sarif_is_valid_against_the_2_1_0_schema() -> None:
    code = "suspend fun poll(x: String?) {\n    Thread.sleep(500)\n    println(x!!)\n}\n"
    review = review_change(whole_file_change("app/src/main/java/P.kt", code.encode()))
    sarif = to_sarif(review)
    errors = sorted(_sarif_validator().iter_errors(sarif), key=str)
    assert errors == []
    run = sarif["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {
        "thread-sleep-in-coroutine",
        "not-null-assertion",
        "print-in-production",
    }
    result = next(r for r in run["results"] if r["ruleId"] == "thread-sleep-in-coroutine")
    assert result["level"] == "error"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 2
    assert result["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"] == "    delay(500)\n"


def test_the_sarif_validator_rejects_a_broken_document() -> None:
    broken = {"version": "2.1.0", "runs": [{"results": [{"message": {}}]}]}
    assert list(_sarif_validator().iter_errors(broken))


def test_fail_threshold() -> None:
    review = review_change(change())
    assert review.fails(Severity.MAJOR)
    assert not review.fails(Severity.BLOCKER)
