"""Real code from open-source Android projects (tests/fixtures/SOURCES.md names each source).

- kotlin/smells/<smell>__*.kt: real code with the problem: its rule fires.
- kotlin/smells/ok_<smell>__*.kt: real code with the right form: its rule stays quiet.
- kotlin/corpus/*.kt: well-maintained real files: the rules find at most a few things per thousand lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewer.engine import review_change, whole_file_change
from tests.conftest import FIXTURES

SMELL_RULES = {
    "not_null_assertion": "not-null-assertion",
    "global_scope": "global-scope",
    "run_blocking": "run-blocking",
    "thread_sleep": "thread-sleep-in-coroutine",
    "catch_cancellation": "swallowed-cancellation",
    "empty_catch": "empty-catch",
    "print_stack_trace": "print-in-production",
    "hardcoded_dispatcher": "hardcoded-dispatcher",
    "collect_without_lifecycle": "collect-without-lifecycle",
    "static_context": "static-context-leak",
    "viewmodel_context": "viewmodel-context",
    "log_secret": "log-sensitive-data",
    "compose_state_no_remember": "compose-state-without-remember",
    "compose_launch_in_body": "compose-launch-in-body",
    "collect_as_state": "collect-as-state",
    "webview_js_interface": "webview-js-interface",
    "pending_intent_flags": "pending-intent-mutability",
    "hardcoded_secret": "hardcoded-secret",
}

SMELLS = sorted((FIXTURES / "kotlin" / "smells").glob("*.kt"))
CORPUS = sorted((FIXTURES / "kotlin" / "corpus").glob("*.kt"))


def rule_of(path: Path) -> tuple[str, bool]:
    smell = path.name.split("__", 1)[0]
    expected = not smell.startswith("ok_")
    return SMELL_RULES[smell.removeprefix("ok_")], expected


def found_rules(path: Path) -> list[str]:
    # Reviewed as production code in a typical module path, whole file.
    review = review_change(whole_file_change(f"app/src/main/java/{path.name}", path.read_bytes()))
    return [f.rule_id for f in review.findings]


@pytest.mark.parametrize("path", SMELLS, ids=lambda p: p.name)
def test_real_smell_fixture(path: Path) -> None:
    rule_id, expected = rule_of(path)
    assert (rule_id in found_rules(path)) is expected


def test_every_smell_fixture_names_a_known_rule() -> None:
    assert SMELLS, "tests/fixtures/kotlin/smells holds real examples"
    for path in SMELLS:
        rule_of(path)


def test_well_maintained_code_is_mostly_quiet() -> None:
    assert len(CORPUS) >= 20
    lines = sum(len(p.read_bytes().splitlines()) for p in CORPUS)
    findings = sum(len(found_rules(p)) for p in CORPUS if not p.stem.endswith("Test"))
    assert findings * 1000 / lines < 2.0, f"{findings} findings in {lines} lines of well-maintained code"


ANDROID_SMELL_RULES = {
    "allow_backup": "manifest-allow-backup",
    "exported_missing": "manifest-exported-missing",
    "minify_disabled_release": "gradle-release-not-minified",
    "hardcoded_secret": "hardcoded-secret",
}
ANDROID_SMELLS = sorted((FIXTURES / "android" / "smells").glob("*"))
ANDROID_CORPUS = sorted((FIXTURES / "android" / "corpus").glob("*"))


def android_rules(path: Path) -> list[str]:
    # The fixture name encodes the file's real name after the last "__" (AndroidManifest.xml, build.gradle...).
    real_name = path.name.rsplit("__", 1)[-1]
    folder = "gradle" if real_name.endswith(".toml") else "app/src/main/res/values" if "strings" in real_name else "app"
    review = review_change(whole_file_change(f"{folder}/{real_name}", path.read_bytes()))
    assert not [n for n in review.notes if "could not be parsed" in n.reason], review.notes
    return [f.rule_id for f in review.findings]


@pytest.mark.parametrize("path", ANDROID_SMELLS, ids=lambda p: p.name)
def test_real_android_smell_fixture(path: Path) -> None:
    smell = path.name.split("__", 1)[0]
    rule_id = ANDROID_SMELL_RULES[smell.removeprefix("ok_")]
    assert (rule_id in android_rules(path)) is (not smell.startswith("ok_"))


def test_real_android_corpus_parses() -> None:
    assert ANDROID_CORPUS
    for path in ANDROID_CORPUS:
        android_rules(path)
