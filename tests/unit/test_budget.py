"""Token budgets: offline estimates, priorities, splitting a PR into calls, naming what is left out, cache keys.

Diffs are real (tests/fixtures/diffs, nowinandroid and sunflower; see SOURCES.md); sources are real Kotlin from
tests/fixtures/kotlin/corpus.
"""

from __future__ import annotations

from reviewer.budget import (
    Chunk,
    Section,
    cache_key,
    estimate_tokens,
    plan,
    priority,
    render_hunk,
)
from reviewer.diff import FileDiff, Hunk, Line, parse_diff
from reviewer.engine import whole_file_change
from tests.conftest import FIXTURES

DIFFS = FIXTURES / "diffs"
CORPUS = FIXTURES / "kotlin" / "corpus"


def files_of(name: str) -> list[FileDiff]:
    return parse_diff((DIFFS / name).read_bytes())


def all_fixture_files() -> list[FileDiff]:
    return [diff for path in sorted(DIFFS.glob("*.diff")) for diff in parse_diff(path.read_bytes())]


def test_estimates_are_in_the_range_of_a_bpe_tokenizer_on_real_kotlin() -> None:
    # BPE tokenizers average about 3 to 4.5 characters a token on Kotlin source.
    for path in sorted(CORPUS.glob("*.kt"))[:10]:
        text = path.read_text(encoding="utf-8")
        ratio = len(text) / estimate_tokens(text)
        assert 2.5 <= ratio <= 4.5, (path.name, ratio)


def test_estimates_grow_with_the_text() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("val x = 1") < estimate_tokens("val x = 1\nval y = 2")
    assert estimate_tokens("a" * 40) == 10  # long identifiers count in pieces of four characters


def test_deletion_only_hunks_are_not_sent_and_are_named() -> None:
    deleted = files_of("android__nowinandroid__delete-NiAApp.diff")
    result = plan([(diff, None) for diff in deleted], call_budget=4000, review_budget=100_000, overhead=500)
    assert not result.chunks
    assert {path for path, _ in result.skipped} == {diff.path for diff in deleted}
    assert {why for _, why in result.skipped} == {"deletions only"}


def test_production_sources_come_before_build_files_resources_and_tests() -> None:
    main = FileDiff("a/app/src/main/java/A.kt", "app/src/main/java/A.kt", "modified")
    test = FileDiff("a/app/src/test/java/ATest.kt", "app/src/test/java/ATest.kt", "modified")
    gradle = FileDiff("a/app/build.gradle.kts", "app/build.gradle.kts", "modified")
    strings = FileDiff("a/app/src/main/res/values/strings.xml", "app/src/main/res/values/strings.xml", "modified")
    ordered = sorted([test, strings, gradle, main], key=lambda d: priority(d.path, d))
    assert [d.path for d in ordered] == [main.path, gradle.path, strings.path, test.path]


def test_a_pr_larger_than_one_call_is_split_and_every_chunk_fits() -> None:
    files = all_fixture_files()
    whole = plan([(diff, None) for diff in files], call_budget=1_000_000, review_budget=10_000_000, overhead=500)
    assert len(whole.chunks) == 1
    split = plan([(diff, None) for diff in files], call_budget=1500, review_budget=10_000_000, overhead=500)
    assert len(split.chunks) > 1
    assert all(chunk.tokens <= 1000 for chunk in split.chunks)
    sent = {(s.path, s.first) for chunk in split.chunks for s in chunk.sections}
    skipped = {path for path, _ in split.skipped}
    everything = {(s.path, s.first) for s in whole.chunks[0].sections}
    # Every hunk is either sent or named as skipped (a hunk too large for one call).
    for path, first in everything - sent:
        assert any(name.startswith(f"{path}:{first}-") for name in skipped), (path, first)


def test_over_the_review_budget_the_rest_is_named_not_dropped() -> None:
    files = all_fixture_files()
    result = plan([(diff, None) for diff in files], call_budget=3000, review_budget=3000, overhead=500)
    assert result.chunks
    assert result.tokens + 500 * len(result.chunks) <= 3000
    assert any(why == "over the review's token budget" for _, why in result.skipped)


def test_a_hunk_grows_to_its_enclosing_function_when_the_file_is_known() -> None:
    path = CORPUS / "android__architecture-components-samples__NetworkBoundResource.kt"
    source = path.read_bytes()
    lines = source.decode().splitlines()
    target = next(n for n, text in enumerate(lines, 1) if "result.value = newValue" in text)
    hunk = Hunk(
        target - 1,
        2,
        target - 1,
        2,
        "",
        [Line("context", target - 1, target - 1, lines[target - 2]), Line("added", None, target, lines[target - 1])],
    )
    grown = render_hunk("NetworkBoundResource.kt", hunk, lines, source)
    bare = render_hunk("NetworkBoundResource.kt", hunk, None, None)
    assert grown is not None
    assert bare is not None
    assert "private fun setValue" in grown.text
    assert "private fun setValue" not in bare.text
    assert grown.first < bare.first
    assert f"{target:5} + " in grown.text  # the added line is marked with its new-side number


def test_whole_new_files_are_reviewable_sections() -> None:
    path = CORPUS / "android__architecture-components-samples__NetworkBoundResource.kt"
    change = whole_file_change("app/src/main/java/NetworkBoundResource.kt", path.read_bytes())
    result = plan(
        [(f.diff, f.new_source) for f in change.files], call_budget=100_000, review_budget=100_000, overhead=0
    )
    assert [chunk.paths for chunk in result.chunks] == [["app/src/main/java/NetworkBoundResource.kt"]]


def _sections(diff: FileDiff) -> list[Section]:
    return [s for s in (render_hunk(diff.path, h, None, None) for h in diff.hunks) if s is not None]


def test_cache_key_is_stable_and_changes_with_model_context_and_chunk() -> None:
    one = Chunk(sections=_sections(files_of("android__nowinandroid__ForYouViewModel.diff")[0]))
    other = Chunk(sections=_sections(files_of("android__sunflower__GalleryFragment.diff")[0]))
    base = cache_key("gpt-4o-mini", one, {"instructions": ""})
    assert base == cache_key("gpt-4o-mini", one, {"instructions": ""})
    assert base != cache_key("gpt-4o", one, {"instructions": ""})
    assert base != cache_key("gpt-4o-mini", one, {"instructions": "Be terse."})
    assert base != cache_key("gpt-4o-mini", other, {"instructions": ""})


def test_grown_sections_never_repeat_a_line_and_keep_every_added_mark() -> None:
    # sunflower's GalleryFragment change (tests/fixtures/diffs) with its new file (the smell fixture of the same
    # commit): three hunks in one class, where growing each to its declaration would overlap.
    diff = files_of("android__sunflower__GalleryFragment.diff")[0]
    source = (
        FIXTURES / "kotlin" / "smells" / "collect_without_lifecycle__android__sunflower__GalleryFragment.kt"
    ).read_bytes()
    result = plan([(diff, source)], call_budget=100_000, review_budget=100_000, overhead=0)
    sections = [s for chunk in result.chunks for s in chunk.sections]
    numbered: list[tuple[int, str]] = []
    for section in sections:
        for row in section.text.splitlines()[1:]:
            if row[:5].strip():
                numbered.append((int(row[:5]), row[6]))
    numbers = [n for n, _ in numbered]
    assert len(numbers) == len(set(numbers)), "a line is shown twice"
    marked = {n for n, mark in numbered if mark == "+"}
    assert marked == set(diff.added_lines())
    bare = plan([(diff, None)], call_budget=100_000, review_budget=100_000, overhead=0)
    assert sum(s.last - s.first for c in result.chunks for s in c.sections) > sum(
        s.last - s.first for c in bare.chunks for s in c.sections
    ), "the file's declarations add context"
