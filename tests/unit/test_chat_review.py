"""The IDE review behind /chat, without HTTP: which rules a request gets, where a snippet sits, the summary."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.chat_review import (
    DEFAULT_LANGUAGE,
    FAST_NOTE,
    LANGUAGES,
    MAX_SOURCE_BYTES,
    ChatRequest,
    Issue,
    UnsupportedInput,
    review_path,
    review_source,
    snippet_lines,
    summarize,
)
from reviewer.models import FileNote, Review, Severity
from tests.conftest import FIXTURES

SMELLS = FIXTURES / "kotlin" / "smells"
ANDROID = FIXTURES / "android"
# Real findings (tests/unit/test_real_fixtures.py pins the rules): pending-intent-mutability on line 184,
# not-null-assertion on lines 231, 426, 481 and 516.
MUSIC_SERVICE = SMELLS / "pending_intent_flags__googlesamples__android-UniversalMusicPlayer__MusicService.kt"
PLAYER_VIEW_MODEL = SMELLS / "not_null_assertion__android__compose-samples__PlayerViewModel.kt"
MANIFEST = ANDROID / "smells" / "allow_backup__android__nowinandroid__app__AndroidManifest.xml"
BUILD_GRADLE = ANDROID / "smells" / "minify_disabled_release__android__sunflower__app__build.gradle"
CATALOG = ANDROID / "corpus" / "android__nowinandroid__libs.versions.toml"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def lines_of(path: Path, first: int, last: int) -> str:
    """Lines first..last (1-based, inclusive) of a fixture, as an IDE selection would send them."""
    return "\n".join(text(path).splitlines()[first - 1 : last])


def request(source: str = "val x = 1\n", **fields: str | None) -> ChatRequest:
    return ChatRequest(source_code=source, **fields)


# review_path: which rules a request gets


def test_default_is_kotlin() -> None:
    assert DEFAULT_LANGUAGE == "kotlin"
    assert review_path(request()) == LANGUAGES["kotlin"] == "Snippet.kt"


@pytest.mark.parametrize(
    "file_path",
    [
        "app/src/main/java/com/example/Player.kt",
        "app/build.gradle",
        "app/build.gradle.kts",
        "settings.gradle.kts",
        "gradle/libs.versions.toml",
        "app/src/main/AndroidManifest.xml",
        "app/src/main/res/values/strings.xml",
        "app/src/main/java/com/example/Legacy.java",
    ],
)
def test_a_reviewable_file_path_is_used_as_is(file_path: str) -> None:
    # The language is ignored when the path already says what the file is.
    assert review_path(request(file_path=file_path, language="java")) == file_path


@pytest.mark.parametrize(("language", "expected"), list(LANGUAGES.items()))
def test_each_language_has_a_path_of_its_kind(language: str, expected: str) -> None:
    source = "<resources/>\n" if language == "xml" else "x\n"
    assert review_path(request(source, language=language)) == expected


@pytest.mark.parametrize(
    ("language", "canonical"),
    [
        ("kt", "kotlin"),
        ("Kotlin", "kotlin"),
        ("  KOTLIN ", "kotlin"),
        ("kotlin-script", "kts"),
        ("groovy", "gradle"),
        ("gradle.kts", "gradle-kts"),
        ("gradle_kts", "gradle-kts"),
        ("toml", "version-catalog"),
        ("AndroidManifest", "manifest"),
    ],
)
def test_language_aliases_and_case(language: str, canonical: str) -> None:
    assert review_path(request(language=language)) == LANGUAGES[canonical]


def test_xml_that_is_a_manifest_is_reviewed_as_the_manifest() -> None:
    assert review_path(request(text(MANIFEST), language="xml")) == LANGUAGES["manifest"]
    assert (
        review_path(request(text(ANDROID / "corpus" / "android__sunflower__strings.xml"), language="xml"))
        == (LANGUAGES["xml"])
    )


def test_a_path_that_is_not_reviewed_falls_back_to_the_language() -> None:
    assert review_path(request(file_path="notes/README.md", language="gradle")) == LANGUAGES["gradle"]


def test_unknown_language_names_every_supported_one() -> None:
    with pytest.raises(UnsupportedInput, match="'cobol' is not supported") as caught:
        review_path(request(language="cobol"))
    for language in LANGUAGES:
        assert language in str(caught.value)


@pytest.mark.parametrize(
    ("file_path", "reason"),
    [
        ("README.md", "not a Kotlin, Java, Gradle, manifest, resource or ProGuard file"),
        ("app/build/outputs/mapping.txt", "generated or build output"),
    ],
)
def test_a_path_that_is_not_reviewed_without_a_language_is_refused(file_path: str, reason: str) -> None:
    with pytest.raises(UnsupportedInput) as caught:
        review_path(request(file_path=file_path))
    message = str(caught.value)
    assert repr(file_path) in message
    assert reason in message
    assert all(language in message for language in LANGUAGES)


@pytest.mark.parametrize(
    ("file_path", "source", "language"),
    [
        # The path rules do not place these, but the client named the file: its extension decides.
        ("app/build/generated/source/R.kt", "class R", "kotlin"),
        ("libs.versions.toml", "[versions]", "version-catalog"),
        ("strings.xml", "<resources/>", "xml"),
        ("AndroidManifest.in.xml", "<manifest package='a'/>", "manifest"),
        ("app/build/tmp/build.gradle.kts", "plugins { }", "gradle-kts"),
        ("C:\\work\\app\\build\\tmp\\Foo.java", "class Foo {}", "java"),
    ],
)
def test_an_explicit_file_outside_the_path_rules_is_read_by_its_extension(
    file_path: str, source: str, language: str
) -> None:
    assert review_path(request(source, file_path=file_path)) == LANGUAGES[language]


def test_whole_lines_win_over_a_match_inside_an_earlier_line() -> None:
    source = "val max = 10\nval y = 2\nx = 1\n"
    assert snippet_lines(source, "x = 1") == (3, 3)
    assert snippet_lines(source, "ax = 1") == (1, 1)  # no whole line: inside the first


@pytest.mark.parametrize("blank", ["", None])
def test_empty_path_and_language_mean_the_default(blank: str | None) -> None:
    assert review_path(request(file_path=blank, language=blank)) == LANGUAGES[DEFAULT_LANGUAGE]


# The request model's limits


def test_source_code_limit_counts_utf8_bytes() -> None:
    assert ChatRequest(source_code="a" * MAX_SOURCE_BYTES).source_code
    with pytest.raises(ValidationError, match=f"larger than the limit of {MAX_SOURCE_BYTES} bytes"):
        ChatRequest(source_code="a" * (MAX_SOURCE_BYTES + 1))
    # Fewer characters than the limit, more bytes: the limit is in bytes.
    with pytest.raises(ValidationError, match=str(MAX_SOURCE_BYTES)):
        ChatRequest(source_code="ä" * (MAX_SOURCE_BYTES // 2 + 1))


@pytest.mark.parametrize(
    "fields",
    [{"source_code": ""}, {}, {"source_code": "x", "extra": "field"}, {"source_code": 3}],
    ids=["empty", "missing", "extra", "not-a-string"],
)
def test_request_model_refuses_bad_fields(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatRequest.model_validate(fields)


# snippet_lines: where the snippet sits


SOURCE = textwrap.dedent(
    """\
    class Player {
        fun play() {
            val track = queue.first()
            start(track!!)
        }

        fun stop() {
            start(null)
        }
    }
    """
)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("class Player {", (1, 1)),
        ("        val track = queue.first()\n        start(track!!)", (3, 4)),
        ("        val track = queue.first()\n        start(track!!)\n", (3, 4)),
        ("    }\n}\n", (9, 10)),
        ("start(null)", (8, 8)),
        ("fun stop()", (7, 7)),
    ],
)
def test_exact_snippet(snippet: str, expected: tuple[int, int]) -> None:
    assert snippet_lines(SOURCE, snippet) == expected


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        # A selection that starts at the end of the line above carries that line's newline.
        ("\n        val track = queue.first()\n        start(track!!)", (3, 4)),
        ("\n\nfun stop() {", (7, 7)),
        ("\n    fun stop() {\n        start(null)", (7, 8)),
        ("\n\n    fun stop() {", (7, 7)),
        ("  \n    fun stop() {\n        start(null)\n", (7, 8)),
    ],
)
def test_leading_newlines_do_not_shift_the_range(snippet: str, expected: tuple[int, int]) -> None:
    assert snippet_lines(SOURCE, snippet) == expected


def test_first_occurrence_wins() -> None:
    assert snippet_lines("a()\nb()\na()\n", "a()") == (1, 1)


def test_indentation_does_not_matter() -> None:
    dedented = "val track = queue.first()\nstart(track!!)"
    assert snippet_lines(SOURCE, dedented) == (3, 4)
    reindented = "\t\tfun stop() {\n\t\t\tstart(null)\n\t\t}"
    assert snippet_lines(SOURCE, reindented) == (7, 9)


def test_blank_lines_inside_the_snippet_are_not_compared() -> None:
    # The source has one blank line between the two functions; the snippet none (or two).
    assert snippet_lines(SOURCE, "}\nfun stop() {") == (5, 7)
    assert snippet_lines(SOURCE, "  }\n\n\n  fun stop() {") == (5, 7)


def test_windows_line_endings_in_the_source() -> None:
    assert snippet_lines(SOURCE.replace("\n", "\r\n"), "val track = queue.first()\nstart(track!!)") == (3, 4)


def test_real_snippet_with_other_indentation() -> None:
    source = text(MUSIC_SERVICE)
    selection = lines_of(MUSIC_SERVICE, 229, 233)
    assert snippet_lines(source, selection) == (229, 233)
    assert snippet_lines(source, textwrap.dedent(selection)) == (229, 233)


@pytest.mark.parametrize(
    "snippet",
    [
        "start(track!!!)",
        "val track = queue.first()\nstart(null)",  # each line exists, not in this order
        "fun play() {\n    start(null)",
    ],
)
def test_snippet_not_in_source(snippet: str) -> None:
    with pytest.raises(UnsupportedInput, match="code_snippet does not occur in source_code"):
        snippet_lines(SOURCE, snippet)


@pytest.mark.parametrize("snippet", ["", "   ", "\n\n", "\t \n"])
def test_blank_snippet(snippet: str) -> None:
    with pytest.raises(UnsupportedInput, match="code_snippet is blank"):
        snippet_lines(SOURCE, snippet)


# summarize


def issue(severity: Severity, line: int = 1) -> Issue:
    return Issue(line=line, end_line=line, severity=severity, category="style", rule="r", message="m", suggestion=None)


def test_summary_without_issues() -> None:
    assert summarize(Review(mode_note="Rules only."), [], "Snippet.kt", None) == (
        "No issues found in Snippet.kt. Rules only."
    )


def test_summary_counts_issues_by_severity_in_severity_order() -> None:
    issues = [issue(Severity.NIT), issue(Severity.MAJOR), issue(Severity.BLOCKER), issue(Severity.MAJOR)]
    summary = summarize(Review(mode_note="Note."), issues, "A.kt", None)
    assert summary == "4 issues (1 blocker, 2 major, 1 nit) in A.kt. Note."


def test_summary_says_one_issue_and_the_narrowed_lines() -> None:
    summary = summarize(Review(mode_note="Note."), [issue(Severity.MINOR, 12)], "A.kt", (10, 14))
    assert summary == "1 issue (1 minor) in A.kt, lines 10-14. Note."


def test_summary_carries_file_notes_and_what_was_left_out() -> None:
    review = Review(notes=[FileNote("A.kt", "could not be parsed: bad token")], omitted=3, mode_note="Note.")
    summary = summarize(review, [issue(Severity.MAJOR)], "A.kt", None)
    assert summary == "1 issue (1 major) in A.kt. could not be parsed: bad token. 3 more not shown. Note."


def test_summary_without_a_mode_note_has_no_trailing_space() -> None:
    assert summarize(Review(), [], "A.kt", None) == "No issues found in A.kt."


# review_source: the whole thing on real files


def test_review_of_a_real_kotlin_file() -> None:
    response = review_source(request(text(PLAYER_VIEW_MODEL)), mode_note=FAST_NOTE)
    assert response.reviewer == "rules"
    assert [(i.rule, i.line, i.end_line) for i in response.issues] == [("not-null-assertion", 58, 58)]
    only = response.issues[0]
    assert only.severity in Severity
    assert only.category
    assert "!!" in only.message or "not-null" in only.message.lower()
    assert response.summary.startswith("1 issue (1 ")
    assert " in Snippet.kt. " in response.summary
    assert response.summary.endswith(FAST_NOTE)


def test_review_of_a_clean_real_file() -> None:
    clean = SMELLS / "ok_collect_as_state__android__nowinandroid__ForYouScreen.kt"
    response = review_source(request(text(clean)), mode_note="Note.")
    assert response.issues == []
    assert response.summary == "No issues found in Snippet.kt. Note."


def test_snippet_keeps_only_the_issues_inside_it() -> None:
    source = text(MUSIC_SERVICE)
    whole = review_source(request(source), mode_note="")
    assert sorted(i.line for i in whole.issues) == [184, 231, 426, 481, 516]

    narrowed = review_source(request(source, code_snippet=lines_of(MUSIC_SERVICE, 229, 233)), mode_note="")
    assert [(i.rule, i.line) for i in narrowed.issues] == [("not-null-assertion", 231)]
    assert "Snippet.kt, lines 229-233" in narrowed.summary

    dedented = textwrap.dedent(lines_of(MUSIC_SERVICE, 178, 185))
    narrowed = review_source(request(source, code_snippet=dedented), mode_note="")
    assert [(i.rule, i.line) for i in narrowed.issues] == [("pending-intent-mutability", 184)]


def test_snippet_without_issues() -> None:
    source = text(MUSIC_SERVICE)
    response = review_source(request(source, code_snippet=lines_of(MUSIC_SERVICE, 187, 200)), mode_note="")
    assert response.issues == []
    assert response.summary.startswith("No issues found in Snippet.kt, lines 187-200.")


def test_selection_starting_on_a_blank_line_keeps_its_last_line() -> None:
    # Line 228 is blank; the finding is on the selection's last line (231).
    source = text(MUSIC_SERVICE)
    assert not source.splitlines()[227]
    response = review_source(request(source, code_snippet=lines_of(MUSIC_SERVICE, 228, 231)), mode_note="")
    assert [(i.rule, i.line) for i in response.issues] == [("not-null-assertion", 231)]
    assert "lines 229-231" in response.summary


def test_review_source_refuses_what_it_cannot_read() -> None:
    with pytest.raises(UnsupportedInput):
        review_source(request(language="cobol"), mode_note="")
    with pytest.raises(UnsupportedInput):
        review_source(request("val x = 1\n", code_snippet="val y = 2"), mode_note="")


@pytest.mark.parametrize(
    ("path", "fields", "rule"),
    [
        (BUILD_GRADLE, {"file_path": "app/build.gradle"}, "gradle-release-not-minified"),
        (BUILD_GRADLE, {"language": "gradle"}, "gradle-release-not-minified"),
        (MANIFEST, {"file_path": "app/src/main/AndroidManifest.xml"}, "manifest-allow-backup"),
        (MANIFEST, {"language": "manifest"}, "manifest-allow-backup"),
        (MANIFEST, {"language": "xml"}, "manifest-allow-backup"),
    ],
)
def test_android_files_get_their_rules(path: Path, fields: dict[str, str], rule: str) -> None:
    reviewed = review_source(request(text(path), **fields), mode_note="")
    assert rule in [i.rule for i in reviewed.issues]
    # The same text as the default (Kotlin) gets none of the Android rules.
    as_kotlin = review_source(request(text(path)), mode_note="")
    assert rule not in [i.rule for i in as_kotlin.issues]


def test_version_catalog_rules() -> None:
    clean = text(CATALOG)
    assert review_source(request(clean, language="version-catalog"), mode_note="").issues == []
    dynamic = clean.replace('androidxCore = "1.9.0"', 'androidxCore = "1.+"')
    assert dynamic != clean
    line = dynamic.splitlines().index('androidxCore = "1.+"') + 1
    for fields in ({"language": "version-catalog"}, {"language": "toml"}, {"file_path": "gradle/libs.versions.toml"}):
        found = review_source(request(dynamic, **fields), mode_note="")
        assert [(i.rule, i.line) for i in found.issues] == [("gradle-dynamic-version", line)]
        assert "gradle/libs.versions.toml" in found.summary
    assert review_source(request(dynamic), mode_note="").issues == []


def test_test_sources_are_reviewed_as_tests() -> None:
    source = text(PLAYER_VIEW_MODEL)
    main = review_source(request(source, file_path="app/src/main/java/a/PlayerViewModel.kt"), mode_note="")
    test = review_source(request(source, file_path="app/src/test/java/a/PlayerViewModelTest.kt"), mode_note="")
    assert [i.rule for i in main.issues] == ["not-null-assertion"]
    assert test.issues == []
