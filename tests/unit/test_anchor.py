"""Anchoring LLM proposals (reviewer.anchor, reviewer.proposals) on real Kotlin from open-source Android projects.

Every test names its fixture (tests/fixtures/SOURCES.md says where each one comes from). Lines are picked by their
content, never by a hard-coded number, so a test keeps meaning the same line if a fixture is ever refreshed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from reviewer import anchor as anchor_module
from reviewer.anchor import FUZZY_CUTOFF, FUZZY_WINDOW, MIN_PARTIAL_QUOTE, Anchor, applies_cleanly, diff_block, locate
from reviewer.diff import FileDiff, parse_diff
from reviewer.engine import whole_file_change
from reviewer.models import Category, Severity
from reviewer.proposals import (
    CREW_RULE_ID,
    MAX_BODY,
    MAX_TITLE,
    Proposal,
    Proposals,
    Verdicts,
    apply_verdicts,
    neutralise_mentions,
    to_finding,
)
from tests.conftest import FIXTURES

CORPUS = FIXTURES / "kotlin" / "corpus"
SMELLS = FIXTURES / "kotlin" / "smells"
ANDROID = FIXTURES / "android"
DIFFS = FIXTURES / "diffs"

# Kotlin sources (new side of the two real multi-hunk diffs below) and a long file for the fuzzy window.
FOR_YOU_VIEW_MODEL = CORPUS / "android__nowinandroid__ForYouViewModel.kt"
FOR_YOU_VIEW_MODEL_DIFF = DIFFS / "android__nowinandroid__ForYouViewModel.diff"
GALLERY_FRAGMENT = SMELLS / "collect_without_lifecycle__android__sunflower__GalleryFragment.kt"
GALLERY_FRAGMENT_DIFF = DIFFS / "android__sunflower__GalleryFragment.diff"
TASKS_SCREEN = CORPUS / "android__architecture-samples__TasksScreen.kt"
# Build files: a Kotlin script (parse-checked) and non-Kotlin ones (not parse-checked).
APP_BUILD_GRADLE_KTS = ANDROID / "corpus" / "android__nowinandroid__app__build.gradle.kts"
SUNFLOWER_BUILD_GRADLE = ANDROID / "smells" / "minify_disabled_release__android__sunflower__app__build.gradle"
LIBS_VERSIONS_TOML = ANDROID / "corpus" / "android__nowinandroid__libs.versions.toml"

# Lines picked by content (stripped), each unique in its fixture unless said otherwise.
TOPIC_FOLLOWED = "userDataRepository.setTopicIdFollowed(topicId, isChecked)"  # ForYouViewModel.kt, added line
HIDE_ONBOARDING = "userDataRepository.setShouldHideOnboarding(true)"  # ForYouViewModel.kt
NEWS_VIEWED = "userDataRepository.setNewsResourceViewed(newsResourceId, viewed)"  # ForYouViewModel.kt
WHILE_SUBSCRIBED = "started = SharingStarted.WhileSubscribed(5_000),"  # ForYouViewModel.kt, four times
LAUNCH = "viewModelScope.launch {"  # ForYouViewModel.kt, five times
SHOW_SNACKBAR = "scaffoldState.snackbarHostState.showSnackbar(snackbarText)"  # TasksScreen.kt


def read_lines(fixture: Path) -> list[str]:
    return fixture.read_text(encoding="utf-8").splitlines()


def where(lines: list[str], text: str) -> list[int]:
    """1-based numbers of the lines whose stripped text is `text`."""
    return [number for number, line in enumerate(lines, start=1) if line.strip() == text]


def only_line(lines: list[str], text: str) -> int:
    found = where(lines, text)
    assert len(found) == 1, f"{text!r} should be on exactly one line, found on {found}"
    return found[0]


def indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def diff_for(diff_fixture: Path, source: Path) -> FileDiff:
    """The FileDiff of `diff_fixture` whose new side is `source` (checked line by line, so the pair cannot drift)."""
    lines = read_lines(source)
    for diff in parse_diff(diff_fixture.read_bytes()):
        shown = diff.new_side_text()
        if shown and all(number <= len(lines) and lines[number - 1] == text for number, text in shown.items()):
            return diff
    pytest.fail(f"{diff_fixture.name} has no file whose new side is {source.name}")


def whole_file_diff(path: str, source: Path) -> FileDiff:
    """Every line added: what reviewing a single file (CLI --file, /chat) gives."""
    return whole_file_change(path, source.read_bytes()).files[0].diff


def proposal(**overrides: Any) -> Proposal:
    values: dict[str, Any] = {
        "path": "feature/foryou/src/main/kotlin/com/google/samples/apps/nowinandroid/feature/foryou/ForYouViewModel.kt",
        "line": 1,
        "end_line": 1,
        "quote": "",
        "severity": Severity.MAJOR,
        "category": Category.CORRECTNESS,
        "title": "Title",
        "body": "Body",
        "suggestion": None,
        "confidence": 0.8,
    }
    values.update(overrides)
    return Proposal(**values)


def proposal_json(**overrides: Any) -> dict[str, Any]:
    """A proposal as the LLM sends it (plain JSON values)."""
    return proposal(**overrides).model_dump(mode="json")


# --- locate: misnumbered and repeated quotes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "text"),
    [
        (FOR_YOU_VIEW_MODEL, HIDE_ONBOARDING),
        (FOR_YOU_VIEW_MODEL, TOPIC_FOLLOWED),
        (TASKS_SCREEN, SHOW_SNACKBAR),
        (GALLERY_FRAGMENT, "searchJob?.cancel()"),
        (GALLERY_FRAGMENT, "val binding = FragmentGalleryBinding.inflate(inflater, container, false)"),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else value[:30],
)
@pytest.mark.parametrize("offset", [-9, -5, -2, -1, 0, 1, 2, 5, 9])
def test_a_misnumbered_quote_lands_on_its_line(fixture: Path, text: str, offset: int) -> None:
    lines = read_lines(fixture)
    line = only_line(lines, text)
    quote = lines[line - 1]  # verbatim, indentation included, as the model should quote it
    assert locate(quote, lines, line + offset) == Anchor(line, line, "exact")


def test_an_exact_quote_is_found_however_far_off_the_reported_line_is() -> None:
    lines = read_lines(TASKS_SCREEN)
    line = only_line(lines, SHOW_SNACKBAR)
    assert len(lines) - line > 2 * FUZZY_WINDOW
    for reported in (len(lines), len(lines) + 500, 1, 0, -3):  # out-of-range numbers are clamped, not refused
        assert locate(SHOW_SNACKBAR, lines, reported) == Anchor(line, line, "exact"), reported


@pytest.mark.parametrize("text", [WHILE_SUBSCRIBED, LAUNCH, "scope = viewModelScope,", "}"])
def test_a_repeated_quote_takes_the_occurrence_closest_to_the_reported_line(text: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    occurrences = where(lines, text)
    assert len(occurrences) >= 4, occurrences
    for reported in range(1, len(lines) + 1):
        found = locate(text, lines, reported)
        assert found is not None
        assert found.line in occurrences
        assert found.match == "exact"
        closest = min(abs(number - reported) for number in occurrences)
        assert abs(found.line - reported) == closest, (reported, found.line)


def test_a_repeated_quote_reported_after_its_lines_goes_back_to_them() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    first, second, *_ = where(lines, WHILE_SUBSCRIBED)
    assert second - first > 4
    assert locate(WHILE_SUBSCRIBED, lines, first + 2) == Anchor(first, first, "exact")
    assert locate(WHILE_SUBSCRIBED, lines, second - 2) == Anchor(second, second, "exact")


def test_a_multi_line_quote_takes_the_closest_full_match_not_the_closest_first_line() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    launches = where(lines, LAUNCH)
    hide = only_line(lines, HIDE_ONBOARDING)
    assert hide - 1 in launches
    assert launches[0] != hide - 1
    quote = f"{LAUNCH}\n{HIDE_ONBOARDING}"
    assert locate(quote, lines, launches[0]) == Anchor(hide - 1, hide, "exact")


# --- locate: whitespace, partial and fuzzy passes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "quote",
    [TOPIC_FOLLOWED, "\t" + TOPIC_FOLLOWED, "                        " + TOPIC_FOLLOWED + "   "],
    ids=["no-indent", "tab", "deeper-and-trailing"],
)
def test_indentation_is_not_a_difference(quote: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    assert lines[line - 1] != quote
    assert locate(quote, lines, line - 4) == Anchor(line, line, "exact")


@pytest.mark.parametrize(
    "quote",
    [
        "userDataRepository.setTopicIdFollowed( topicId,isChecked )",
        "userDataRepository . setTopicIdFollowed(topicId,\tisChecked)",
        "userDataRepository.setTopicIdFollowed(topicId,  isChecked)",
    ],
)
def test_spacing_inside_the_line_is_ignored_by_the_whitespace_pass(quote: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    assert locate(quote, lines, line + 3) == Anchor(line, line, "whitespace")


def test_a_multi_line_quote_with_other_spacing_is_found() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    line = only_line(lines, HIDE_ONBOARDING)
    quote = "fun dismissOnboarding( ) {\n\tviewModelScope.launch{\n userDataRepository.setShouldHideOnboarding( true )"
    assert locate(quote, lines, line + 6) == Anchor(line - 2, line, "whitespace")


def test_a_long_part_of_one_line_lands_on_the_nearest_line_holding_it() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    holders = [n for n, line in enumerate(lines, start=1) if "SharingStarted.WhileSubscribed(5_000)" in line]
    assert len(holders) >= 2
    for number in holders:
        assert locate("SharingStarted.WhileSubscribed(5_000)", lines, number + 1) == Anchor(number, number, "partial")


def test_a_partial_quote_needs_the_minimum_length() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    line = only_line(lines, "filterNewsIds = setOf(newsResourceId),")
    long_enough = "setOf(newsResourceId)"[:MIN_PARTIAL_QUOTE]
    too_short = long_enough[:-1]
    assert len(long_enough) == MIN_PARTIAL_QUOTE
    assert " " not in long_enough
    assert locate(long_enough, lines, line) == Anchor(line, line, "partial")
    assert locate(too_short, lines, line) is None


def test_partial_quotes_are_one_line_only() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    start = only_line(lines, "fun updateTopicSelection(topicId: String, isChecked: Boolean) {")
    parts = ["updateTopicSelection(topicId: String", "viewModelScope.launch", "setTopicIdFollowed(topicId, isChecked)"]
    for offset, part in enumerate(parts):
        assert len(part.replace(" ", "")) >= MIN_PARTIAL_QUOTE
        assert part in lines[start - 1 + offset]
        assert part.strip() != lines[start - 1 + offset].strip()
    assert locate(parts[0], lines, start) == Anchor(start, start, "partial")
    assert locate("\n".join(parts), lines, start) is None


@pytest.mark.parametrize(
    ("fixture", "text", "quote"),
    [
        (FOR_YOU_VIEW_MODEL, TOPIC_FOLLOWED, "userDataRepository.setTopicIdFolowed(topicId, isChecked)"),
        (FOR_YOU_VIEW_MODEL, NEWS_VIEWED, "userDataRepository.setNewsResourceViewed(newsResourceID, viewed)"),
        (TASKS_SCREEN, SHOW_SNACKBAR, "scaffoldState.snackbarHostState.showSnakbar(snackbarText)"),
        (
            GALLERY_FRAGMENT,
            "viewModel.searchPictures(query).collectLatest {",
            "viewModel.searchPicture(query).collectLatest {",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_a_small_typo_is_matched_by_the_fuzzy_pass(fixture: Path, text: str, quote: str) -> None:
    lines = read_lines(fixture)
    line = only_line(lines, text)
    assert not where(lines, quote.strip())
    assert locate(quote, lines, line - 7) == Anchor(line, line, "fuzzy")
    assert locate(quote, lines, line + 7) == Anchor(line, line, "fuzzy")


def test_a_multi_line_quote_with_a_typo_is_matched_by_the_fuzzy_pass() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    quote = f"{LAUNCH}\nuserDataRepository.setTopicIdFolowed(topicId, isChecked)\n}}"
    assert locate(quote, lines, line + 20) == Anchor(line - 1, line + 1, "fuzzy")


@pytest.mark.parametrize(
    ("fixture", "text", "quote"),
    [
        (TASKS_SCREEN, SHOW_SNACKBAR, "scaffoldState.snackbarHost.show(snackbarText, actionLabel)"),
        (TASKS_SCREEN, SHOW_SNACKBAR, "snackbarHostState.showSnackbar(message = text)"),
        (FOR_YOU_VIEW_MODEL, TOPIC_FOLLOWED, "userDataRepo.setTopicFollowed(id, checked)"),
        (FOR_YOU_VIEW_MODEL, TOPIC_FOLLOWED, "userDataRepository.setTopicIdUnfollowed(topic)"),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_a_quote_too_different_from_every_line_is_not_matched(fixture: Path, text: str, quote: str) -> None:
    lines = read_lines(fixture)
    line = only_line(lines, text)
    assert locate(quote, lines, line) is None


def test_a_reported_line_past_the_end_of_the_file_counts_as_the_last_line() -> None:
    lines = read_lines(TASKS_SCREEN)
    line = only_line(lines, "private fun TaskItemCompletedPreview() {")
    assert len(lines) - line < FUZZY_WINDOW
    typo = "private fun TaskItemCompletdPreview() {"
    assert locate(typo, lines, len(lines) + FUZZY_WINDOW) == Anchor(line, line, "fuzzy")


def test_the_documented_limits() -> None:
    assert (FUZZY_CUTOFF, FUZZY_WINDOW, MIN_PARTIAL_QUOTE) == (0.9, 60, 12)


def test_the_fuzzy_pass_looks_only_within_its_window() -> None:
    lines = read_lines(TASKS_SCREEN)
    line = only_line(lines, SHOW_SNACKBAR)
    typo = SHOW_SNACKBAR.replace("showSnackbar", "showSnakbar")
    assert line - FUZZY_WINDOW - 1 >= 1
    assert line + FUZZY_WINDOW + 1 <= len(lines)
    assert locate(typo, lines, line + FUZZY_WINDOW) == Anchor(line, line, "fuzzy")
    assert locate(typo, lines, line - FUZZY_WINDOW) == Anchor(line, line, "fuzzy")
    assert locate(typo, lines, line + FUZZY_WINDOW + 1) is None
    assert locate(typo, lines, line - FUZZY_WINDOW - 1) is None
    assert locate(typo, lines, len(lines) + 100) is None  # clamped to the last line, still too far


# --- locate: nothing to anchor ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quote",
    [
        "GlobalScope.launch { syncManager.requestSync() }",
        "private val shouldShowOnboarding: Flow<Boolean> = MutableStateFlow(false)",
        "Log.d(TAG, token)",
    ],
)
def test_a_quote_that_is_not_in_the_file_is_none(quote: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    for reported in (1, len(lines) // 2, len(lines)):
        assert locate(quote, lines, reported) is None


@pytest.mark.parametrize("quote", ["", " ", "\n", "\n\n", " \t \n   \n", "\r\n"])
def test_a_blank_quote_is_none(quote: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    blank = where(lines, "")
    assert blank  # the file has blank lines a blank quote must not be anchored to
    for reported in (1, blank[0], len(lines)):
        assert locate(quote, lines, reported) is None


def test_an_empty_file_anchors_nothing() -> None:
    assert locate(TOPIC_FOLLOWED, [], 1) is None


# --- locate: multi-line quotes and short quotes -----------------------------------------------------------------------


def test_a_multi_line_quote_of_consecutive_lines() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    end = only_line(lines, TOPIC_FOLLOWED)
    start = only_line(lines, "fun updateTopicSelection(topicId: String, isChecked: Boolean) {")
    assert end - start == 2
    quote = "\n".join(lines[start - 1 : end])
    assert locate(quote, lines, start + 5) == Anchor(start, end, "exact")
    assert locate(quote + "\n", lines, start - 5) == Anchor(start, end, "exact")


def test_a_multi_line_quote_spans_the_blank_lines_the_file_has_between_its_lines() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    start = only_line(lines, "fun dismissOnboarding() {") - 2  # the `}` closing the function above
    assert lines[start - 1].strip() == "}"
    assert lines[start].strip() == ""
    with_blank = "\n".join(lines[start - 1 : start + 2])
    without_blank = f"{lines[start - 1]}\n{lines[start + 1]}"
    assert locate(with_blank, lines, start) == Anchor(start, start + 2, "exact")
    assert locate(without_blank, lines, start) == Anchor(start, start + 2, "exact")


def test_a_multi_line_quote_skipping_a_non_blank_line_is_not_matched() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    start = only_line(lines, "fun updateTopicSelection(topicId: String, isChecked: Boolean) {")
    assert lines[start].strip() == LAUNCH
    quote = f"{lines[start - 1]}\n{lines[start + 1]}"  # the launch line between them is left out
    assert locate(quote, lines, start) is None


def test_a_multi_line_quote_ends_on_its_last_line_not_on_a_blank_line_after_it() -> None:
    lines = read_lines(GALLERY_FRAGMENT)
    start = only_line(lines, "binding.photoList.adapter = adapter")
    assert lines[start + 1].strip() == ""
    quote = "\n".join(lines[start - 1 : start + 1]) + "\n\n"
    assert locate(quote, lines, start) == Anchor(start, start + 1, "exact")


@pytest.mark.parametrize(("quote", "near"), [("}", "} else {"), (")", ".stateIn("), ("}", "fun dismissOnboarding() {")])
def test_a_short_quote_matches_only_whole_lines(quote: str, near: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    reported = where(lines, near)[0]
    whole = where(lines, quote)
    holders = [n for n, line in enumerate(lines, start=1) if quote in line and line.strip() != quote]
    assert whole
    assert holders  # lines that contain the quote among other text, which must not be taken
    found = locate(quote, lines, reported)
    assert found is not None
    assert lines[found.line - 1].strip() == quote
    assert found.line == found.end_line
    assert abs(found.line - reported) == min(abs(n - reported) for n in whole)


@pytest.mark.parametrize("quote", ["x", "it", "id", "null", "launch", "isChecked", "topicId,"])
def test_a_short_quote_that_is_only_inside_lines_is_not_matched(quote: str) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    assert any(quote in line for line in lines)
    assert not where(lines, quote)
    for reported in (1, len(lines) // 2, len(lines)):
        assert locate(quote, lines, reported) is None


def test_a_short_partial_quote_is_not_fuzzy_matched_onto_another_line() -> None:
    """BUG (reported, not fixed): a quote too short for the partial pass still goes to the fuzzy pass, where one
    inserted or deleted character keeps the ratio >= FUZZY_CUTOFF for any line of 5+ non-space characters. Here the
    model quotes part of `initialValue = null,` and reports that very line; `= null,` is not a whole line anywhere, yet
    it is anchored 17 lines up, on the `null,` argument of `getStateFlow(...)`: a comment on a wrong line.
    Expected: no anchor (or the reported line itself), never a different line."""
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    reported = only_line(lines, "initialValue = null,")
    quote = "= null,"
    assert len(quote.replace(" ", "")) < MIN_PARTIAL_QUOTE
    assert not where(lines, quote)
    found = locate(quote, lines, reported)
    assert found is None or found.line == reported, f"anchored on line {found.line}: {lines[found.line - 1]!r}"


# --- suggestions: applies_cleanly and to_finding ----------------------------------------------------------------------


def test_a_suggestion_inside_one_hunk_that_parses_is_kept() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    assert line in diff.added_lines()
    suggestion = indent(lines[line - 1]) + "userDataRepository.setTopicIdFollowed(topicId, !isChecked)"
    assert applies_cleanly(diff.path, lines, Anchor(line, line, "exact"), suggestion, diff) == (True, "")
    finding, reason = to_finding(
        proposal(path=diff.path, line=line + 3, end_line=line + 3, quote=TOPIC_FOLLOWED, suggestion=suggestion),
        lines,
        diff,
    )
    assert reason == ""
    assert finding is not None
    assert (finding.line, finding.end_line) == (line, line)
    assert finding.suggestion == suggestion
    assert finding.message == "Body"


def test_a_multi_line_suggestion_on_misnumbered_lines_is_kept_when_the_spans_agree() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    start = only_line(lines, NEWS_VIEWED) - 1
    quote = "\n".join(lines[start - 1 : start + 2])
    suggestion = quote.replace("(newsResourceId, viewed)", "(newsResourceId, viewed = viewed)")
    assert suggestion != quote
    assert diff.can_span(start, start + 2)
    finding, _ = to_finding(
        proposal(path=diff.path, line=start - 4, end_line=start - 2, quote=quote, suggestion=suggestion), lines, diff
    )
    assert finding is not None
    assert (finding.line, finding.end_line) == (start, start + 2)
    assert finding.suggestion == suggestion
    assert "```diff" not in finding.message


def test_a_suggestion_across_two_hunks_is_shown_as_a_diff_block() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    assert len(diff.hunks) >= 2
    first, second = diff.hunks[0], diff.hunks[1]
    start, end = first.new_end, second.new_start
    assert end > start + 1  # lines between the hunks are not in the diff
    assert lines[start - 1].strip()
    assert lines[end - 1].strip()
    quote = "\n".join(lines[start - 1 : end])
    suggestion = "\n".join([*lines[start - 1 : end], "import kotlinx.coroutines.flow.first"])
    anchor = Anchor(start, end, "exact")
    assert locate(quote, lines, start) == anchor
    ok, why = applies_cleanly(diff.path, lines, anchor, suggestion, diff)
    assert not ok
    assert "hunk" in why
    # The same change on a file whose every line is in the diff is fine: only the hunks refuse it.
    assert applies_cleanly(diff.path, lines, anchor, suggestion, whole_file_diff(diff.path, FOR_YOU_VIEW_MODEL)) == (
        True,
        "",
    )
    finding, _ = to_finding(
        proposal(path=diff.path, line=start, end_line=end, quote=quote, suggestion=suggestion, body=" Sort these. "),
        lines,
        diff,
    )
    assert finding is not None
    assert finding.suggestion is None
    assert (finding.line, finding.end_line) == (start, end)
    assert finding.message == "Sort these.\n\n" + diff_block(lines, anchor, suggestion)
    assert finding.message.endswith("+import kotlinx.coroutines.flow.first\n```")


@pytest.mark.parametrize(
    ("source", "diff_fixture", "text", "replacement"),
    [
        (
            FOR_YOU_VIEW_MODEL,
            FOR_YOU_VIEW_MODEL_DIFF,
            "if (shouldShowOnboarding) {",
            "if (shouldShowOnboarding && topics.isNotEmpty()) {",
        ),
        (GALLERY_FRAGMENT, GALLERY_FRAGMENT_DIFF, "savedInstanceState: Bundle?", "savedInstanceState: Bundle?,"),
        (GALLERY_FRAGMENT, GALLERY_FRAGMENT_DIFF, "container: ViewGroup?,", "container: ViewGroup?,)"),
    ],
    ids=["ForYouViewModel.kt", "GalleryFragment.kt", "GalleryFragment.kt-broken"],
)
def test_a_suggestion_outside_the_diff_is_shown_as_a_diff_block(
    source: Path, diff_fixture: Path, text: str, replacement: str
) -> None:
    lines = read_lines(source)
    diff = diff_for(diff_fixture, source)
    line = only_line(lines, text)
    assert not diff.in_diff(line)
    suggestion = indent(lines[line - 1]) + replacement
    finding, _ = to_finding(
        proposal(path=diff.path, line=line, end_line=line, quote=text, suggestion=suggestion), lines, diff
    )
    assert finding is not None
    assert finding.suggestion is None
    assert (finding.line, finding.end_line) == (line, line)
    assert finding.message == f"Body\n\n```diff\n-{lines[line - 1]}\n+{suggestion}\n```"


def test_a_suggestion_that_breaks_kotlin_parsing_is_shown_as_a_diff_block() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    anchor = Anchor(line, line, "exact")
    fine = indent(lines[line - 1]) + "userDataRepository.setTopicIdFollowed(topicId, !isChecked)"
    broken = indent(lines[line - 1]) + "userDataRepository.setTopicIdFollowed(topicId, !isChecked"
    assert applies_cleanly(diff.path, lines, anchor, fine, diff) == (True, "")
    ok, why = applies_cleanly(diff.path, lines, anchor, broken, diff)
    assert not ok
    assert "parse" in why
    finding, _ = to_finding(
        proposal(path=diff.path, line=line, end_line=line, quote=TOPIC_FOLLOWED, suggestion=broken), lines, diff
    )
    assert finding is not None
    assert finding.suggestion is None
    assert finding.message == f"Body\n\n```diff\n-{lines[line - 1]}\n+{broken}\n```"


@pytest.mark.parametrize(
    "broken",
    ["isMinifyEnabled = true)", "isMinifyEnabled = ", "isMinifyEnabled == {"],
)
def test_a_suggestion_that_breaks_a_kotlin_script_is_refused(broken: str) -> None:
    path = "app/build.gradle.kts"
    lines = read_lines(APP_BUILD_GRADLE_KTS)
    diff = whole_file_diff(path, APP_BUILD_GRADLE_KTS)
    line = only_line(lines, "isMinifyEnabled = true")
    anchor = Anchor(line, line, "exact")
    pad = indent(lines[line - 1])
    assert applies_cleanly(path, lines, anchor, pad + "isMinifyEnabled = false", diff) == (True, "")
    ok, why = applies_cleanly(path, lines, anchor, pad + broken, diff)
    assert not ok
    assert "parse" in why


def test_a_suggestion_that_changes_nothing_is_dropped() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    start = only_line(lines, NEWS_VIEWED) - 1
    unchanged = "\n".join(lines[start - 1 : start + 2])
    anchor = Anchor(start, start + 2, "exact")
    for suggestion in (unchanged, unchanged + "\n"):
        ok, why = applies_cleanly(diff.path, lines, anchor, suggestion, diff)
        assert not ok
        assert "nothing" in why
        finding, _ = to_finding(
            proposal(path=diff.path, line=start, end_line=start + 2, quote=unchanged, suggestion=suggestion),
            lines,
            diff,
        )
        assert finding is not None
        assert finding.suggestion is None
        assert "```diff" not in finding.message  # nothing to show


@pytest.mark.parametrize(("line_shift", "end_shift"), [(0, 1), (0, 2), (-1, 0), (0, -1), (2, 0)])
def test_a_suggestion_is_refused_when_the_proposal_span_differs_from_the_quote(line_shift: int, end_shift: int) -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    suggestion = indent(lines[line - 1]) + "userDataRepository.setTopicIdFollowed(topicId, !isChecked)"
    # The suggestion itself would be fine on the anchored line...
    assert applies_cleanly(diff.path, lines, Anchor(line, line, "exact"), suggestion, diff) == (True, "")
    # ...but the model said it replaces a different number of lines than it quoted.
    finding, _ = to_finding(
        proposal(
            path=diff.path,
            line=line + line_shift,
            end_line=line + end_shift,
            quote=TOPIC_FOLLOWED,
            suggestion=suggestion,
        ),
        lines,
        diff,
    )
    assert finding is not None
    assert (finding.line, finding.end_line) == (line, line)
    assert finding.suggestion is None
    assert finding.message == f"Body\n\n```diff\n-{lines[line - 1]}\n+{suggestion}\n```"


def test_a_two_line_quote_with_a_one_line_proposal_span_refuses_the_suggestion() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    quote = "\n".join(lines[line - 2 : line])
    suggestion = quote.replace("isChecked)", "!isChecked)")
    assert diff.can_span(line - 1, line)
    finding, _ = to_finding(
        proposal(path=diff.path, line=line - 1, end_line=line - 1, quote=quote, suggestion=suggestion), lines, diff
    )
    assert finding is not None
    assert (finding.line, finding.end_line) == (line - 1, line)
    assert finding.suggestion is None


@pytest.mark.parametrize(
    ("path", "fixture", "text", "replacement"),
    [
        ("app/build.gradle", SUNFLOWER_BUILD_GRADLE, "minifyEnabled false", "minifyEnabled true {"),
        ("gradle/libs.versions.toml", LIBS_VERSIONS_TOML, "[versions]", "[versions"),
    ],
    ids=[SUNFLOWER_BUILD_GRADLE.name, LIBS_VERSIONS_TOML.name],
)
def test_a_suggestion_for_a_file_that_is_not_kotlin_skips_the_parse_check(
    path: str, fixture: Path, text: str, replacement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_parse(source: bytes) -> bool:
        pytest.fail(f"{path} is not Kotlin and must not be parsed as Kotlin")

    monkeypatch.setattr(anchor_module, "has_error", must_not_parse)
    lines = read_lines(fixture)
    diff = whole_file_diff(path, fixture)
    line = only_line(lines, text)
    suggestion = indent(lines[line - 1]) + replacement
    assert applies_cleanly(path, lines, Anchor(line, line, "exact"), suggestion, diff) == (True, "")
    finding, _ = to_finding(
        proposal(path=path, line=line, end_line=line, quote=text, suggestion=suggestion), lines, diff
    )
    assert finding is not None
    assert finding.suggestion == suggestion


@pytest.mark.parametrize(
    ("path", "fixture", "text"),
    [
        ("app/build.gradle.kts", APP_BUILD_GRADLE_KTS, "isMinifyEnabled = true"),
        ("feature/foryou/ForYouViewModel.kt", FOR_YOU_VIEW_MODEL, TOPIC_FOLLOWED),
    ],
    ids=[APP_BUILD_GRADLE_KTS.name, FOR_YOU_VIEW_MODEL.name],
)
def test_kotlin_files_go_through_the_parse_check(
    path: str, fixture: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counterpart of the test above: the patched seam is the one applies_cleanly really uses."""
    parsed: list[bytes] = []

    def spy(source: bytes) -> bool:
        parsed.append(source)
        return False

    monkeypatch.setattr(anchor_module, "has_error", spy)
    lines = read_lines(fixture)
    line = only_line(lines, text)
    suggestion = lines[line - 1] + " // checked"
    assert applies_cleanly(path, lines, Anchor(line, line, "exact"), suggestion, whole_file_diff(path, fixture)) == (
        True,
        "",
    )
    assert parsed
    assert any(suggestion.encode() in source for source in parsed)


def test_a_suggestion_for_a_partial_quote_does_not_replace_the_whole_line() -> None:
    """A one-line partial quote anchors the whole line that contains it, but its suggestion (written for the quoted
    part) must not replace that whole line: it would drop `userDataRepository.` and the indentation. It is shown as
    a diff block instead."""
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    quote = "setTopicIdFollowed(topicId, isChecked)"
    assert locate(quote, lines, line) == Anchor(line, line, "partial")
    finding, _ = to_finding(
        proposal(
            path=diff.path, line=line, end_line=line, quote=quote, suggestion="setTopicIdFollowed(topicId, !isChecked)"
        ),
        lines,
        diff,
    )
    assert finding is not None
    assert (finding.line, finding.end_line) == (line, line)
    assert finding.suggestion is None, f"line {line} would become {finding.suggestion!r}, was {lines[line - 1]!r}"
    assert "```diff" in finding.message


# --- to_finding: the Finding itself, and proposals that cannot be anchored --------------------------------------------


def test_a_proposal_becomes_a_crew_finding_on_the_anchored_lines() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    start = only_line(lines, NEWS_VIEWED) - 1
    quote = "\n".join(lines[start - 1 : start + 2])
    finding, reason = to_finding(
        proposal(
            path=diff.path,
            line=start + 6,
            end_line=start + 8,
            quote=quote,
            severity=Severity.MINOR,
            category=Category.CONCURRENCY,
            title="  Launch without error handling \n",
            body="\n  The launched coroutine swallows nothing.  \n",
            confidence=0.4,
        ),
        lines,
        diff,
    )
    assert reason == ""
    assert finding is not None
    assert finding.source == "crew"
    assert finding.rule_id == CREW_RULE_ID == "crew"
    assert finding.path == diff.path
    assert (finding.line, finding.end_line) == (start, start + 2)
    assert finding.title == "Launch without error handling"
    assert finding.message == "The launched coroutine swallows nothing."
    assert finding.severity is Severity.MINOR
    assert finding.category is Category.CONCURRENCY
    assert finding.suggestion is None
    assert finding.rationale == ""
    assert finding.placement == "body"  # placement is decided later, by the engine


@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize("category", list(Category))
def test_severity_and_category_are_carried_over(severity: Severity, category: Category) -> None:
    lines = read_lines(GALLERY_FRAGMENT)
    line = only_line(lines, "searchJob?.cancel()")
    finding, _ = to_finding(
        proposal(path="GalleryFragment.kt", line=line, end_line=line, quote="searchJob?.cancel()").model_copy(
            update={"severity": severity, "category": category}
        ),
        lines,
        whole_file_diff("GalleryFragment.kt", GALLERY_FRAGMENT),
    )
    assert finding is not None
    assert (finding.severity, finding.category) == (severity, category)


def test_long_titles_and_bodies_are_cut_and_an_empty_title_gets_a_default() -> None:
    lines = read_lines(GALLERY_FRAGMENT)
    line = only_line(lines, "searchJob?.cancel()")
    diff = whole_file_diff("GalleryFragment.kt", GALLERY_FRAGMENT)
    long_title = "T" * (MAX_TITLE + 30)
    long_body = "B" * (MAX_BODY + 30)
    base = {"path": "GalleryFragment.kt", "line": line, "end_line": line, "quote": "searchJob?.cancel()"}
    finding, _ = to_finding(proposal(**base, title=long_title, body=long_body), lines, diff)
    assert finding is not None
    assert finding.title == "T" * MAX_TITLE
    assert finding.message == "B" * MAX_BODY
    untitled, _ = to_finding(proposal(**base, title="   "), lines, diff)
    assert untitled is not None
    assert untitled.title == "Review finding"


def test_a_proposal_whose_quote_is_missing_is_dropped_with_a_reason_naming_path_and_line() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    finding, reason = to_finding(
        proposal(
            path=diff.path,
            line=42,
            end_line=43,
            quote="GlobalScope.launch { syncManager.requestSync() }",
            suggestion="viewModelScope.launch { syncManager.requestSync() }",
        ),
        lines,
        diff,
    )
    assert finding is None
    assert reason.startswith(f"{diff.path}:42:")
    assert "not in the file" in reason


@pytest.mark.parametrize("quote", ["", "   ", "\n\n"])
def test_a_proposal_with_a_blank_quote_is_dropped(quote: str) -> None:
    lines = read_lines(GALLERY_FRAGMENT)
    finding, reason = to_finding(
        proposal(path="GalleryFragment.kt", line=7, end_line=7, quote=quote),
        lines,
        whole_file_diff("GalleryFragment.kt", GALLERY_FRAGMENT),
    )
    assert finding is None
    assert reason.startswith("GalleryFragment.kt:7:")


# --- the models the LLM fills in --------------------------------------------------------------------------------------


def test_a_valid_proposal_round_trips() -> None:
    data = proposal_json(quote=TOPIC_FOLLOWED, line=3, end_line=4, confidence=1)
    assert Proposal.model_validate(data).model_dump(mode="json") == data
    assert Proposals.model_validate({"findings": [data, data]}).findings[1].line == 3
    assert Proposals.model_validate({"findings": []}).findings == []


@pytest.mark.parametrize("extra", ["rule_id", "id", "reasoning", "start_line"])
def test_a_proposal_refuses_extra_keys(extra: str) -> None:
    data = {**proposal_json(quote="x"), extra: "1"}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Proposal.model_validate(data)


def test_the_leads_verdicts_pick_proposals_by_number_and_keep_where_they_are() -> None:
    first = proposal(quote=TOPIC_FOLLOWED, line=3, end_line=4, suggestion="x", severity="major")
    second = proposal(quote=HIDE_ONBOARDING, line=9, title="Old title", body="Old body.")

    def verdict(number: int, **changes: Any) -> dict[str, Any]:
        return {"id": number, "severity": "minor", "title": None, "body": None, "confidence": 0.6, **changes}

    verdicts = Verdicts.model_validate(
        {"keep": [verdict(2, title="New title", body=" "), verdict(7), verdict(0), verdict(2), verdict(1)]}
    )
    kept = apply_verdicts([first, second], verdicts)
    # In the lead's order; unknown numbers and a second verdict on #2 ignored; null or blank text keeps the old one.
    assert [(p.line, p.title, p.body, p.severity, p.confidence) for p in kept] == [
        (9, "New title", "Old body.", Severity.MINOR, 0.6),
        (3, first.title, first.body, Severity.MINOR, 0.6),
    ]
    assert (kept[1].path, kept[1].end_line, kept[1].quote, kept[1].suggestion) == (first.path, 4, TOPIC_FOLLOWED, "x")
    assert apply_verdicts([first], Verdicts(keep=[])) == []
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Verdicts.model_validate({"keep": [verdict(1, path="a.kt")]})


def test_proposals_refuse_extra_keys() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Proposals.model_validate({"findings": [], "summary": "ok"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Proposals.model_validate({"findings": [{**proposal_json(quote="x"), "why": "because"}]})


@pytest.mark.parametrize("confidence", [-0.01, 1.01, 2, -1, float("nan"), float("inf")])
def test_confidence_out_of_range_is_refused(confidence: float) -> None:
    data = {**proposal_json(quote="x"), "confidence": confidence}
    with pytest.raises(ValidationError, match="confidence"):
        Proposal.model_validate(data)


@pytest.mark.parametrize("confidence", [0, 0.0, 0.5, 1, 1.0])
def test_confidence_bounds_are_inclusive(confidence: float) -> None:
    assert Proposal.model_validate({**proposal_json(quote="x"), "confidence": confidence}).confidence == confidence


@pytest.mark.parametrize(
    ("key", "value"),
    [("line", 0), ("end_line", 0), ("line", -3), ("severity", "critical"), ("category", "naming"), ("quote", None)],
)
def test_invalid_values_are_refused(key: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=key):
        Proposal.model_validate({**proposal_json(quote="x"), key: value})


@pytest.mark.parametrize("missing", list(Proposal.model_fields))
def test_every_field_must_be_given(missing: str) -> None:
    data = proposal_json(quote="x")
    del data[missing]
    with pytest.raises(ValidationError, match="Field required"):
        Proposal.model_validate(data)


def test_the_json_schema_is_strict() -> None:
    """OpenAI's strict structured output needs every property required and no additional properties."""
    schema = Proposals.model_json_schema()
    assert schema["required"] == ["findings"]
    assert schema["additionalProperties"] is False
    item = schema["properties"]["findings"]["items"]
    assert item == {"$ref": "#/$defs/Proposal"}
    definition = schema["$defs"]["Proposal"]
    assert set(definition["properties"]) == set(Proposal.model_fields)
    assert sorted(definition["required"]) == sorted(Proposal.model_fields)
    assert definition["additionalProperties"] is False
    assert {"type": "null"} in definition["properties"]["suggestion"]["anyOf"]
    for name, field in definition["properties"].items():
        assert "default" not in field, name


def test_the_json_schema_accepts_and_refuses_like_the_models() -> None:
    schema = Proposals.model_json_schema()
    good = {"findings": [proposal_json(quote=TOPIC_FOLLOWED), proposal_json(quote="x", suggestion="y")]}
    jsonschema.validate(good, schema)
    Proposals.model_validate(good)
    bad_documents = [
        {"findings": [{**proposal_json(quote="x"), "extra": 1}]},
        {"findings": [{**proposal_json(quote="x"), "confidence": 1.5}]},
        {"findings": [{**proposal_json(quote="x"), "line": 0}]},
        {"findings": [{k: v for k, v in proposal_json(quote="x").items() if k != "suggestion"}]},
        {"findings": [], "extra": 1},
    ]
    for bad in bad_documents:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ValidationError):
            Proposals.model_validate(bad)


def test_a_suggestion_on_a_fuzzy_match_is_only_a_diff_block() -> None:
    # The model's misquote must not reach the code through a one-click suggestion.
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    quote = lines[line - 1].replace("setTopicIdFollowed", "setTopicIdFolowed")
    assert locate(quote, lines, line) == Anchor(line, line, "fuzzy")
    finding, _ = to_finding(
        proposal(
            path=diff.path, line=line, end_line=line, quote=quote, suggestion=quote.replace("isChecked)", "!isChecked)")
        ),
        lines,
        diff,
    )
    assert finding is not None
    assert finding.suggestion is None
    assert "```diff" in finding.message


# --- @mentions in the LLM's text never ping anyone ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ask @octocat or @android/team-x.", "ask `@octocat` or `@android/team-x`."),
        ("annotate it with @Composable", "annotate it with `@Composable`"),
        ("use `@Composable` here", "use `@Composable` here"),  # already code
        (
            "```kotlin\n@Inject lateinit var r: R\n```\nthen @bob",
            "```kotlin\n@Inject lateinit var r: R\n```\nthen `@bob`",
        ),
        ("mail dev@example.com", "mail dev@example.com"),  # not a mention
        ("@@ -1 +1 @@ and @-x", "@@ -1 +1 @@ and @-x"),
    ],
)
def test_mentions_are_put_in_code_spans(text: str, expected: str) -> None:
    assert neutralise_mentions(text) == expected


def test_a_findings_title_and_body_never_mention_anyone() -> None:
    lines = read_lines(FOR_YOU_VIEW_MODEL)
    diff = diff_for(FOR_YOU_VIEW_MODEL_DIFF, FOR_YOU_VIEW_MODEL)
    line = only_line(lines, TOPIC_FOLLOWED)
    found, _ = to_finding(
        proposal(path=diff.path, line=line, end_line=line, quote=TOPIC_FOLLOWED, title="Ask @jdoe", body="cc @a/b"),
        lines,
        diff,
    )
    assert found is not None
    assert (found.title, found.message) == ("Ask `@jdoe`", "cc `@a/b`")
