"""The prompts the two agents get, pinned by golden files, and the output schema CrewAI sends with them.

Golden files: ``tests/fixtures/prompts/*.txt``, one per case in CASES, built from real code (GalleryFragment.diff
and its new side, ForYouViewModel.diff and its new side; see tests/fixtures/SOURCES.md) and the rules' real
findings. Create or refresh them with ``python -m tests.unit.test_prompts --write-golden`` (from the project
root), then review the change. A prompt is part of every chunk's cache key only through
``reviewer.budget.PROMPT_VERSION``: when a golden changes, that version must change too (otherwise re-reviews
reuse findings made with the old prompt), so the writer refuses to rewrite goldens under the version they were
written with (kept in ``PROMPT_VERSION`` next to them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from openai.lib._parsing._completions import type_to_response_format_param
from pydantic import BaseModel, ConfigDict

from reviewer.budget import PROMPT_VERSION, plan
from reviewer.crew import ChunkInput, lead_prompt, prompt_overhead, review_prompt
from reviewer.diff import parse_diff
from reviewer.engine import Change, ChangedFile, review_change
from reviewer.models import Category, Severity
from reviewer.proposals import Proposal, Proposals, Verdicts
from tests.fakes.openai_wire import check_response_format, strict_schema_problem

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
PROMPTS = FIXTURES / "prompts"
VERSION_FILE = PROMPTS / "PROMPT_VERSION"
WRITE_GOLDEN = "python -m tests.unit.test_prompts --write-golden"

GALLERY = "app/src/main/java/com/google/samples/apps/sunflower/GalleryFragment.kt"
GALLERY_DIFF = FIXTURES / "diffs" / "android__sunflower__GalleryFragment.diff"
GALLERY_SOURCE = FIXTURES / "kotlin" / "smells" / "collect_without_lifecycle__android__sunflower__GalleryFragment.kt"
FOR_YOU_DIFF = FIXTURES / "diffs" / "android__nowinandroid__ForYouViewModel.diff"
FOR_YOU_SOURCE = FIXTURES / "kotlin" / "corpus" / "android__nowinandroid__ForYouViewModel.kt"
INSTRUCTIONS = """
Fragments collect flows with viewLifecycleOwner, never with the fragment's own lifecycle.
Paging: adapters are fed with submitData from a collectLatest.
"""
# Named as the planner names hunks it leaves out (koin-migration-build-files.diff, hunks larger than one call).
SKIPPED = ["gradle/libs.versions.toml:1-88", "gradle/libs.versions.toml:91-214"]


def chunk_input(diff_file: Path, source_file: Path, *, extras: bool) -> ChunkInput:
    """The first chunk the planner makes of a real file, with the rules' real findings on it when `extras`,
    and the repository's instructions and the parts of the PR left out."""
    [diff] = parse_diff(diff_file.read_bytes())
    source = source_file.read_bytes()
    planned = plan([(diff, source)], call_budget=100_000, review_budget=1_000_000, overhead=prompt_overhead())
    rules = review_change(Change([ChangedFile(diff, source)])).findings if extras else []
    lines = {diff.path: source.decode("utf-8").splitlines()}
    return ChunkInput(
        planned.chunks[0],
        rules,
        INSTRUCTIONS if extras else "",
        SKIPPED if extras else [],
        lines,
    )


def gallery_proposals() -> list[Proposal]:
    """What the reviewer might propose on GalleryFragment.kt: one line with a fix, three lines without."""
    return [
        Proposal(
            path=GALLERY,
            line=65,
            end_line=65,
            quote="searchJob = lifecycleScope.launch {",
            severity=Severity.MAJOR,
            category=Category.LIFECYCLE,
            title="Search collects after the view is gone",
            body="lifecycleScope belongs to the fragment, which outlives its view: the collection keeps feeding "
            "an adapter whose RecyclerView was destroyed. Launch from viewLifecycleOwner.lifecycleScope.",
            suggestion="        searchJob = viewLifecycleOwner.lifecycleScope.launch {",
            confidence=0.85,
        ),
        Proposal(
            path=GALLERY,
            line=66,
            end_line=68,
            quote="viewModel.searchPictures(query).collectLatest {\n    adapter.submitData(it)\n}",
            severity=Severity.MINOR,
            category=Category.PERFORMANCE,
            title="A new Pager for every search",
            body="searchPictures builds a new Flow<PagingData> on every call without cachedIn, so a configuration "
            "change starts the search over. Cache it in the ViewModel with cachedIn(viewModelScope).",
            suggestion=None,
            confidence=0.55,
        ),
    ]


def review_gallery() -> str:
    return review_prompt(chunk_input(GALLERY_DIFF, GALLERY_SOURCE, extras=True))


def review_for_you_plain() -> str:
    return review_prompt(chunk_input(FOR_YOU_DIFF, FOR_YOU_SOURCE, extras=False))


def lead_gallery() -> str:
    return lead_prompt(chunk_input(GALLERY_DIFF, GALLERY_SOURCE, extras=True), gallery_proposals())


CASES: dict[str, Callable[[], str]] = {
    "review__GalleryFragment__rules_instructions_skipped": review_gallery,
    "review__ForYouViewModel__plain": review_for_you_plain,
    "lead__GalleryFragment__two_proposals": lead_gallery,
}


def golden_path(name: str) -> Path:
    return PROMPTS / f"{name}.txt"


def golden_text(name: str) -> str:
    """The prompt as its golden file holds it: the exact text plus one final newline (editors add one)."""
    return CASES[name]() + "\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_prompts_match_their_golden_files(name: str) -> None:
    expected = golden_path(name)
    assert expected.is_file(), f"no golden file {expected.name}: run `{WRITE_GOLDEN}`"
    assert golden_text(name) == expected.read_text(encoding="utf-8"), (
        f"the prompt {name} changed: if that is intended, bump reviewer.budget.PROMPT_VERSION, "
        f"run `{WRITE_GOLDEN}` and review the diff of {expected.relative_to(ROOT)}"
    )


def test_the_goldens_were_written_for_this_prompt_version() -> None:
    assert VERSION_FILE.read_text(encoding="utf-8").strip() == PROMPT_VERSION, (
        f"reviewer.budget.PROMPT_VERSION changed: run `{WRITE_GOLDEN}` to record it with the goldens"
    )


def test_every_golden_file_has_a_case() -> None:
    assert sorted(path.stem for path in PROMPTS.glob("*.txt")) == sorted(CASES)


def test_the_gallery_prompts_carry_what_the_goldens_are_meant_to_show() -> None:
    """The cases are what their names say (so a rewrite cannot quietly empty them)."""
    reviewer = review_gallery()
    assert f"{GALLERY}\n  66 [collect-without-lifecycle] " in reviewer
    assert "Repository instructions:\nFragments collect flows" in reviewer
    assert "do not guess about: gradle/libs.versions.toml:1-88, gradle/libs.versions.toml:91-214" in reviewer
    assert "   65 +         searchJob = lifecycleScope.launch {" in reviewer
    assert "      - import androidx.lifecycle.observe" in reviewer
    plain = review_for_you_plain()
    assert "confidence 0-1.\n\nCHANGED CODE:\n--- feature/" in plain  # no rules, instructions or skipped files:
    assert "Already reported by rules" not in plain  # their headings are left out too
    lead = lead_gallery()
    assert lead.count("\n#") == 2
    assert f"FILE {GALLERY}\n#1 line 65 major lifecycle: " in lead
    assert f"RULE FINDINGS:\n{GALLERY}\n  66 " in lead
    assert "CHANGED CODE" not in lead


# The output schema: CrewAI sends Proposals as an OpenAI strict json_schema response format.


@pytest.mark.parametrize("answer", [Proposals, Verdicts])
def test_the_answer_schemas_pass_the_strict_schema_check(answer: type[BaseModel]) -> None:
    assert strict_schema_problem(answer.model_json_schema()) is None
    # What the OpenAI SDK's beta.chat.completions.parse (CrewAI's call) sends as `response_format`.
    response_format = type_to_response_format_param(answer)
    assert check_response_format(response_format) is None
    assert response_format["json_schema"]["strict"] is True


def test_the_strict_schema_check_refuses_an_optional_field() -> None:
    """The check above can fail: a field with a default is not `required`, which strict mode refuses."""

    class Loose(BaseModel):
        model_config = ConfigDict(extra="forbid")

        title: str
        confidence: float = 0.5

    problem = strict_schema_problem(Loose.model_json_schema())
    assert problem is not None
    assert "'required' must list every property" in problem


# python -m tests.unit.test_prompts --write-golden


class StalePromptVersion(Exception):
    """Goldens would change under the PROMPT_VERSION they were written with."""


def write_golden(directory: Path = PROMPTS) -> list[Path]:
    """Write every case's golden file (and the PROMPT_VERSION they belong to); the files written."""
    version_file = directory / VERSION_FILE.name
    recorded = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else None
    texts = {directory / f"{name}.txt": golden_text(name) for name in CASES}
    changed = [path for path, text in texts.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]
    existing = [path for path in changed if path.is_file()]
    if existing and recorded == PROMPT_VERSION:
        names = ", ".join(path.name for path in existing)
        raise StalePromptVersion(
            f"{names} would change under PROMPT_VERSION {PROMPT_VERSION}: bump reviewer.budget.PROMPT_VERSION "
            "first (cached chunk findings are keyed by it), then write the goldens again"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for path in changed:
        path.write_text(texts[path], encoding="utf-8")
    if recorded != PROMPT_VERSION:
        version_file.write_text(PROMPT_VERSION + "\n", encoding="utf-8")
        changed.append(version_file)
    return changed


def test_the_writer_refuses_changed_goldens_under_the_same_version(tmp_path: Path) -> None:
    written = write_golden(tmp_path)
    assert sorted(path.name for path in written) == sorted([*(f"{name}.txt" for name in CASES), "PROMPT_VERSION"])
    assert write_golden(tmp_path) == []  # nothing changed, nothing written
    tampered = tmp_path / f"{sorted(CASES)[0]}.txt"
    tampered.write_text("an older prompt\n", encoding="utf-8")
    with pytest.raises(StalePromptVersion, match=r"bump reviewer\.budget\.PROMPT_VERSION"):
        write_golden(tmp_path)
    (tmp_path / "PROMPT_VERSION").write_text("an-older-version\n", encoding="utf-8")
    assert sorted(path.name for path in write_golden(tmp_path)) == sorted([tampered.name, "PROMPT_VERSION"])
    assert tampered.read_text(encoding="utf-8") == golden_text(tampered.stem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.unit.test_prompts", description=__doc__)
    parser.add_argument("--write-golden", action="store_true", help=f"write every golden file in {PROMPTS}")
    args = parser.parse_args(argv)
    if not args.write_golden:
        parser.print_help()
        return 2
    try:
        written = write_golden()
    except StalePromptVersion as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"{len(written)} file(s) written\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
