"""`python -m bot review` as a process: a real `git diff` on stdin, whole files, formats and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from reviewer.diff import parse_diff
from tests.conftest import FIXTURES
from tests.e2e.conftest import ROOT, clean_environ

pytestmark = pytest.mark.slow

BEFORE = "package com.example\n\nclass Repo(private val api: Api) {\n    fun ok() = 1\n}\n"
AFTER = (
    "package com.example\n\nclass Repo(private val api: Api) {\n    fun ok() = 1\n\n"
    "    suspend fun poll() {\n        Thread.sleep(500)\n        GlobalScope.launch { api.sync() }\n    }\n}\n"
)


def review(*args: str, stdin: bytes = b"", cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    import sys  # noqa: PLC0415

    return subprocess.run(
        [sys.executable, "-m", "bot", "review", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={**clean_environ(), "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")
    source = tmp_path / "app/src/main/java/com/example/Repo.kt"
    source.parent.mkdir(parents=True)
    source.write_text(BEFORE)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    source.write_text(AFTER)
    return tmp_path


def git_diff(repo: Path) -> bytes:
    return subprocess.run(["git", "diff"], cwd=repo, capture_output=True, check=True).stdout


def test_git_diff_from_stdin_text_and_fail_on(repo: Path) -> None:
    result = review("-", "--fail-on", "major", stdin=git_diff(repo), cwd=repo)
    out = result.stdout.decode()
    assert result.returncode == 1, result.stderr
    assert "app/src/main/java/com/example/Repo.kt:7: major: [thread-sleep-in-coroutine]" in out
    assert "app/src/main/java/com/example/Repo.kt:8: major: [global-scope]" in out
    assert "Rules only" in out
    assert review("-", "--fail-on", "blocker", stdin=git_diff(repo), cwd=repo).returncode == 0


def test_json_and_markdown(repo: Path) -> None:
    data = json.loads(review("-", "--format", "json", stdin=git_diff(repo), cwd=repo).stdout)
    assert [(f["rule"], f["line"], f["placement"]) for f in data["findings"]] == [
        ("thread-sleep-in-coroutine", 7, "inline"),
        ("global-scope", 8, "inline"),
    ]
    markdown = review("-", "--format", "markdown", stdin=git_diff(repo), cwd=repo).stdout.decode()
    assert markdown.startswith("## AI Dev Companion")


def test_sarif_output_validates(repo: Path) -> None:
    sarif = json.loads(review("-", "--format", "sarif", stdin=git_diff(repo), cwd=repo).stdout)
    schema = json.loads((FIXTURES / "sarif" / "sarif-schema-2.1.0.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(sarif)) == []
    assert len(sarif["runs"][0]["results"]) == 2


def test_whole_file(repo: Path) -> None:
    result = review("--file", "app/src/main/java/com/example/Repo.kt", cwd=repo)
    assert result.returncode == 0
    assert b"[global-scope]" in result.stdout


def test_repo_config_is_applied(repo: Path) -> None:
    (repo / ".github").mkdir()
    (repo / ".github/ai-review.yml").write_text("rules:\n  disable: [global-scope]\n")
    out = review("-", stdin=git_diff(repo), cwd=repo).stdout.decode()
    assert "[global-scope]" not in out
    assert "[thread-sleep-in-coroutine]" in out


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        ((), b"", "give a DIFF_FILE"),
        (("/no/such.diff",), b"", "cannot read /no/such.diff"),
        (("-",), b"this is not a diff\n", "not a unified diff"),
        (("--file", "/no/such.kt"), b"", "cannot read /no/such.kt"),
        (("-", "--config", "/no/such.yml"), b"", "no config file"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: tuple[str, ...], stdin: bytes, message: str, tmp_path: Path) -> None:
    result = review(*args, stdin=stdin, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_real_fixture_diffs_review_without_error() -> None:
    diffs = sorted((FIXTURES / "diffs").glob("*.diff"))
    assert diffs, "tests/fixtures/diffs holds real diffs from Android projects"
    for path in diffs:
        result = review(str(path), "--format", "json")
        assert result.returncode == 0, (path.name, result.stderr)
        data = json.loads(result.stdout)
        # Every file that still exists after the change is reviewed or named in a note: nothing silent.
        present = [d for d in parse_diff(path.read_bytes()) if d.status != "removed"]
        noted = {note["path"] for note in data["notes"]}
        assert data["files_reviewed"] <= len(present), path.name
        assert len(present) <= data["files_reviewed"] + len(noted), path.name
