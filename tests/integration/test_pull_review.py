"""The pull-request review job end to end against the strict fake GitHub (tests/fakes/github.py, at the httpx
seam): real diffs and real Kotlin (android/sunflower's GalleryFragment.kt, tests/fixtures/SOURCES.md), the real
App client (JWT, installation token), the real rules, the real publisher. Then the whole path: a signed
webhook delivery -> the embedded queue -> the job -> the review on the fake PR.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient

from bot.api.webhooks import WEBHOOK_PATH, signature
from bot.app import create_app
from bot.github.client import GitHubApp, GitHubUnavailable
from bot.github.publish import CANCELLED_TITLE, CHECK_NAME, FAILED_TITLE, THROTTLED_TITLE
from bot.jobs.pull_review import NO_PATCH, UNCHANGED_SINCE
from bot.jobs.tasks import REVIEW_PULL_REQUEST, service_tasks
from bot.settings import Settings
from tests.conftest import FIXTURES, SettingsFactory
from tests.fakes.github import FakeGitHub

OWNER, REPO, NUMBER, INSTALLATION = "android", "sunflower", 812, 31
BASE_SHA = "1111111111111111111111111111111111111111"
HEAD = "2222222222222222222222222222222222222222"
NEXT_HEAD = "3333333333333333333333333333333333333333"
GALLERY = "app/src/main/java/com/google/samples/apps/sunflower/GalleryFragment.kt"
GALLERY_DIFF = FIXTURES / "diffs" / "android__sunflower__GalleryFragment.diff"
GALLERY_SOURCE = FIXTURES / "kotlin" / "smells" / "collect_without_lifecycle__android__sunflower__GalleryFragment.kt"
RULE_LINE = 66  # collect-without-lifecycle: `.collectLatest` inside `lifecycleScope.launch`
SECRET = "webhook-secret-for-tests"
CONFIG = ".github/ai-review.yml"


def github_files(diff: Path) -> list[dict[str, Any]]:
    """A git diff as GitHub's `pulls/{n}/files` lists it: per file its name, status and `patch` (the hunks)."""
    files = []
    for block in re.split(r"^(?=diff --git )", diff.read_text(encoding="utf-8"), flags=re.MULTILINE):
        if not block.startswith("diff --git "):
            continue
        lines = block.splitlines()
        name = next(line[6:] for line in lines if line.startswith("+++ b/"))
        first_hunk = next(i for i, line in enumerate(lines) if line.startswith("@@"))
        patch = lines[first_hunk:]
        status = "added" if any(line.startswith("new file mode") for line in lines) else "modified"
        files.append(
            {
                "filename": name,
                "status": status,
                "patch": "\n".join(patch),
                "additions": sum(1 for line in patch if line.startswith("+")),
                "deletions": sum(1 for line in patch if line.startswith("-")),
            }
        )
    return files


def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


KEY = private_key()


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub(app_id=4242)
    github.add_installation(INSTALLATION)
    github.add_repo(
        OWNER,
        REPO,
        installation_id=INSTALLATION,
        default_branch="main",
        files={HEAD: {GALLERY: GALLERY_SOURCE.read_bytes()}, NEXT_HEAD: {GALLERY: GALLERY_SOURCE.read_bytes()}},
    )
    github.add_pull(OWNER, REPO, NUMBER, head_sha=HEAD, base_sha=BASE_SHA, files=github_files(GALLERY_DIFF))
    with github.mock():
        yield github


@pytest.fixture
def settings(make_settings: SettingsFactory, fake: FakeGitHub) -> Settings:
    return make_settings(
        github_app_id=4242,
        github_private_key=KEY,
        github_webhook_secret=SECRET,
        github_api_url=fake.base_url,
        installation_rate_limit="5/hour",
    )


async def run_job(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """The job function as the worker calls it (service_tasks), with the fake's PR by default."""
    [task] = [t for t in service_tasks(settings) if t.name == REVIEW_PULL_REQUEST]
    job: dict[str, Any] = {
        "installation_id": INSTALLATION,
        "owner": OWNER,
        "repo": REPO,
        "number": NUMBER,
        "trigger": "opened",
        "head_sha": HEAD,
        "delivery": "delivery-1",
        **kwargs,
    }
    try:
        result: dict[str, Any] = await task.run(**job)
    finally:
        assert task.close is not None
        await task.close()
    return result


R = f"/repos/{OWNER}/{REPO}"
PULL = f"{R}/pulls/{NUMBER}"
TOKEN = ("POST", f"/app/installations/{INSTALLATION}/access_tokens")
READ = [("GET", PULL), ("GET", f"{R}/contents/{CONFIG}"), ("GET", f"{PULL}/reviews")]
# What a review that is posted asks GitHub, after READ: the check run, the files, the whole Kotlin file, the
# head again, what is already on the PR, the review, the check run completed.
STARTED = [("GET", f"{R}/commits/{HEAD}/check-runs"), ("POST", f"{R}/check-runs")]  # ours in progress? else new
POST = [
    *STARTED,
    ("GET", f"{PULL}/files"),
    ("GET", f"{R}/contents/{GALLERY}"),
    ("GET", PULL),
    ("GET", f"{PULL}/comments"),
    ("GET", f"{PULL}/reviews"),
    ("POST", f"{PULL}/reviews"),
    ("PATCH", f"{R}/check-runs/{{id}}"),
]
REVIEWED = [*READ, *POST]


def calls(fake: FakeGitHub, since: int = 0) -> list[tuple[str, str]]:
    """The (method, path) of every request the fake answered, check run ids as `{id}`."""
    return [(r.method, re.sub(r"/check-runs/\d+$", "/check-runs/{id}", r.path)) for r in fake.requests[since:]]


def reviews(fake: FakeGitHub) -> list[dict[str, Any]]:
    return [r for r in fake.reviews.get((OWNER, REPO, NUMBER), []) if r["state"] != "PENDING"]


def checks(fake: FakeGitHub) -> list[dict[str, Any]]:
    return list(fake.check_runs.values())


async def test_an_opened_pull_request_gets_one_review_and_a_check_run(settings: Settings, fake: FakeGitHub) -> None:
    result = await run_job(settings)

    assert result["outcome"] == "posted"
    [review] = reviews(fake)
    assert (review["commit_id"], review["state"]) == (HEAD, "COMMENTED")
    [comment] = review["comments"]
    assert (comment["path"], comment["line"], comment["side"]) == (GALLERY, RULE_LINE, "RIGHT")
    assert "collect-without-lifecycle" in comment["body"]
    assert "ai-dev-companion:fp=" in comment["body"]  # the hidden fingerprint
    assert "Rules only: no LLM is configured" in review["body"]  # said out loud
    [check] = checks(fake)
    assert (check["name"], check["head_sha"], check["status"]) == (CHECK_NAME, HEAD, "completed")
    assert check["conclusion"] == "success"  # a major finding; fail_on defaults to blocker
    assert [(a["path"], a["start_line"]) for a in check["output"]["annotations"]] == [(GALLERY, RULE_LINE)]
    # Every request of the job carries its trace id; the config was read from the default branch.
    assert {r.headers.get("x-request-id") for r in fake.requests} == {"delivery-1"}
    contents = [r for r in fake.requests if "/contents/" in r.path]
    assert any(r.path.endswith(CONFIG) and r.params.get("ref") == "main" for r in contents)
    assert fake.tokens_issued == 1
    assert calls(fake) == [TOKEN, *REVIEWED]  # every expected call, in order, and no other


async def test_a_re_review_does_not_repeat_what_is_on_the_pull_request(settings: Settings, fake: FakeGitHub) -> None:
    await run_job(settings)
    fake.set_permission(OWNER, REPO, "reviewer", "write")
    first_calls = len(fake.requests)
    result = await run_job(
        settings, trigger="comment", head_sha=None, comment_id=99, commenter="reviewer", trusted=False
    )

    assert result["outcome"] == "posted"
    first, second = reviews(fake)
    assert len(first["comments"]) == 1
    assert second["comments"] == []
    assert "already commented on earlier" in second["body"]
    assert [content for _, comment_id, content in fake.reactions if comment_id == 99] == ["eyes", "rocket"]
    reaction = ("POST", f"{R}/issues/comments/99/reactions")
    permission = ("GET", f"{R}/collaborators/reviewer/permission")
    assert calls(fake, first_calls) == [TOKEN, permission, reaction, *REVIEWED, reaction]


async def test_a_retried_automatic_review_of_a_reviewed_head_posts_nothing(
    settings: Settings, fake: FakeGitHub
) -> None:
    await run_job(settings)
    since = len(fake.requests)
    again = await run_job(settings, trigger="reopened", delivery="delivery-2")
    assert again == {"outcome": "skipped", "reason": f"{HEAD[:12]} was reviewed already"}
    assert len(reviews(fake)) == 1
    assert len(checks(fake)) == 1
    assert calls(fake, since) == [TOKEN, *READ]  # (each run_job is a new worker: a new token)


async def test_a_review_command_from_someone_who_may_not_write_does_nothing(
    settings: Settings, fake: FakeGitHub
) -> None:
    fake.set_permission(OWNER, REPO, "drive-by", "read")
    result = await run_job(
        settings, trigger="comment", head_sha=None, comment_id=7, commenter="drive-by", trusted=False
    )
    assert result == {"outcome": "skipped", "reason": f"drive-by may not write to {OWNER}/{REPO}"}
    assert (reviews(fake), checks(fake), fake.reactions) == ([], [], [])
    assert calls(fake) == [TOKEN, ("GET", f"{R}/collaborators/drive-by/permission")]


async def test_a_head_that_moved_on_gets_nothing(settings: Settings, fake: FakeGitHub) -> None:
    fake.move_head(OWNER, REPO, NUMBER, NEXT_HEAD)
    result = await run_job(settings)
    assert result["outcome"] == "skipped"
    assert "the head moved on" in result["reason"]
    assert (reviews(fake), checks(fake)) == ([], [])
    assert calls(fake) == [TOKEN, ("GET", PULL)]


@pytest.mark.parametrize(
    ("config", "draft", "outcome"),
    [
        ("enabled: false\n", False, "skipped"),
        ("", True, "skipped"),
        ("review_drafts: true\n", True, "posted"),
    ],
)
async def test_the_default_branchs_config_decides(
    settings: Settings, fake: FakeGitHub, config: str, draft: bool, outcome: str
) -> None:
    fake.add_repo(
        OWNER,
        REPO,
        installation_id=INSTALLATION,
        files={
            "main": {CONFIG: config.encode()},
            HEAD: {GALLERY: GALLERY_SOURCE.read_bytes(), CONFIG: b"enabled: true"},
        },
    )
    fake.add_pull(OWNER, REPO, NUMBER, head_sha=HEAD, base_sha=BASE_SHA, files=github_files(GALLERY_DIFF), draft=draft)
    result = await run_job(settings)
    assert result["outcome"] == outcome  # the PR's own copy of the config (at its head) is never read
    assert len(reviews(fake)) == (1 if outcome == "posted" else 0)


async def test_an_invalid_config_is_named_and_the_defaults_are_used(settings: Settings, fake: FakeGitHub) -> None:
    fake.add_repo(
        OWNER,
        REPO,
        installation_id=INSTALLATION,
        files={"main": {CONFIG: b"enabeld: false\n"}, HEAD: {GALLERY: GALLERY_SOURCE.read_bytes()}},
    )
    fake.add_pull(OWNER, REPO, NUMBER, head_sha=HEAD, base_sha=BASE_SHA, files=github_files(GALLERY_DIFF))
    assert (await run_job(settings))["outcome"] == "posted"
    [review] = reviews(fake)
    assert ".github/ai-review.yml on main is invalid, so the defaults were used" in review["body"]
    assert "enabeld" in review["body"]


async def test_over_the_installation_limit_a_neutral_check_says_when(settings: Settings, fake: FakeGitHub) -> None:
    limited = settings.model_copy(update={"installation_rate_limit": "1/hour"})
    [task] = [t for t in service_tasks(limited) if t.name == REVIEW_PULL_REQUEST]
    job = {"installation_id": INSTALLATION, "owner": OWNER, "repo": REPO, "number": NUMBER}
    try:
        assert (await task.run(**job, trigger="opened", head_sha=HEAD))["outcome"] == "posted"
        throttled = await task.run(**job, trigger="comment", comment_id=5, commenter="owner")
    finally:
        assert task.close is not None
        await task.close()
    assert throttled["outcome"] == "throttled"
    assert len(reviews(fake)) == 1
    neutral = [c for c in checks(fake) if c["conclusion"] == "neutral"]
    assert [c["output"]["title"] for c in neutral] == [THROTTLED_TITLE]
    assert "comment `/review` on the pull request then" in neutral[0]["output"]["summary"]
    assert [content for _, _, content in fake.reactions] == ["eyes", "confused"]
    reaction = ("POST", f"{R}/issues/comments/5/reactions")
    assert calls(fake) == [TOKEN, *REVIEWED, reaction, *READ, ("POST", f"{R}/check-runs"), reaction]


async def test_a_push_reviews_only_the_files_changed_since_the_last_review(
    settings: Settings, fake: FakeGitHub
) -> None:
    assert (await run_job(settings))["outcome"] == "posted"  # HEAD reviewed
    other = {"filename": "app/src/main/res/values/strings.xml", "status": "modified", "patch": None}
    files = [*github_files(GALLERY_DIFF), {**other, "additions": 1, "deletions": 1}]
    fake.move_head(OWNER, REPO, NUMBER, NEXT_HEAD, files=files)
    fake.add_commit_files(OWNER, REPO, HEAD, NEXT_HEAD, [files[1]])
    # The push's own `before` is not what counts: the last head this App reviewed is.
    result = await run_job(settings, trigger="synchronize", head_sha=NEXT_HEAD, before_sha="0" * 40)
    assert result["outcome"] == "posted"
    second = reviews(fake)[1]
    assert second["comments"] == []  # GalleryFragment.kt did not change since the last review
    assert f"`{GALLERY}`: {UNCHANGED_SINCE}" in second["body"]
    assert f"`{other['filename']}`: {NO_PATCH}" in second["body"]
    assert ("GET", f"{R}/compare/{HEAD}...{NEXT_HEAD}") in calls(fake)
    # `/review full` reviews every file (the finding is already on the PR: counted, not repeated).
    full = await run_job(settings, trigger="comment", head_sha=None, comment_id=4, commenter="owner", full=True)
    assert (full["outcome"], full["findings"], full["not_repeated"]) == ("posted", 1, 1)


async def test_github_down_ends_with_a_failed_check_and_a_confused_reaction(
    settings: Settings, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.github.client.RETRY_BACKOFF", (0.0, 0.0, 0.0))
    fake.fail_next("GET", rf"/repos/{OWNER}/{REPO}/pulls/{NUMBER}/files", 502, times=10)
    with pytest.raises(GitHubUnavailable, match="GitHub answered 502"):
        await run_job(settings, trigger="comment", head_sha=None, comment_id=3, commenter="owner")
    [check] = checks(fake)
    assert (check["status"], check["conclusion"], check["output"]["title"]) == ("completed", "neutral", FAILED_TITLE)
    assert "502" in check["output"]["summary"]
    assert [content for _, _, content in fake.reactions] == ["eyes", "confused"]
    assert reviews(fake) == []
    reaction = ("POST", f"{R}/issues/comments/3/reactions")
    files = [("GET", f"{PULL}/files")] * 4  # the first answer and 3 retries, all 502
    fail = ("PATCH", f"{R}/check-runs/{{id}}")
    assert calls(fake) == [TOKEN, reaction, *READ, *STARTED, *files, fail, reaction]


async def test_a_cancelled_review_completes_its_check_run_as_cancelled(
    settings: Settings, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading = asyncio.Event()

    async def slow_files(*args: Any) -> Any:  # the job is cancelled (superseded, timed out) while it reads
        reading.set()
        await asyncio.sleep(30)

    monkeypatch.setattr("bot.jobs.pull_review.list_files", slow_files)
    job = asyncio.create_task(run_job(settings))
    await asyncio.wait_for(reading.wait(), 5)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    [check] = checks(fake)
    assert (check["status"], check["conclusion"], check["output"]["title"]) == ("completed", "neutral", CANCELLED_TITLE)
    assert reviews(fake) == []


# The whole path: webhook -> queue -> job -> review.


def delivery(event: str, payload: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    return {
        "content": body,
        "headers": {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": signature(SECRET.encode(), body),
            "Content-Type": "application/json",
        },
    }


def pull_request_event(action: str, head: str, before: str | None = None) -> dict[str, Any]:
    """GitHub's example pull_request payload, pointed at the fake's repository and PR."""
    payload: dict[str, Any] = json.loads((FIXTURES / "webhooks" / "pull_request.opened.json").read_text())
    payload["action"] = action
    payload["number"] = NUMBER
    payload["pull_request"].update({"number": NUMBER})
    payload["pull_request"]["head"]["sha"] = head
    payload["repository"].update({"name": REPO, "full_name": f"{OWNER}/{REPO}"})
    payload["repository"]["owner"]["login"] = OWNER
    payload["installation"] = {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    if before:
        payload["before"] = before
    return payload


def wait_until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_deliveries_become_exactly_one_review_per_head(settings: Settings, fake: FakeGitHub) -> None:
    app = create_app(settings, tasks=service_tasks(settings, github=lambda: GitHubApp(settings)))
    with TestClient(app=app, raise_server_exceptions=False) as client:
        opened = client.post(WEBHOOK_PATH, **delivery("pull_request", pull_request_event("opened", HEAD), "d-1"))
        assert opened.status_code == 202, opened.text
        wait_until(lambda: len(reviews(fake)) == 1 and checks(fake)[0]["status"] == "completed")
        # A redelivery and another event for the same head: no second review.
        assert client.post(WEBHOOK_PATH, **delivery("pull_request", pull_request_event("opened", HEAD), "d-1"))
        client.post(WEBHOOK_PATH, **delivery("pull_request", pull_request_event("reopened", HEAD), "d-2"))
        # A push: the new head is reviewed (only what the push changed).
        fake.move_head(OWNER, REPO, NUMBER, NEXT_HEAD)
        fake.add_commit_files(OWNER, REPO, HEAD, NEXT_HEAD, github_files(GALLERY_DIFF))
        pushed = pull_request_event("synchronize", NEXT_HEAD, before=HEAD)
        assert client.post(WEBHOOK_PATH, **delivery("pull_request", pushed, "d-3")).status_code == 202
        wait_until(lambda: len(reviews(fake)) == 2)
        time.sleep(0.3)
    first, second = reviews(fake)
    assert (first["commit_id"], second["commit_id"]) == (HEAD, NEXT_HEAD)
    assert len(first["comments"]) == 1
    assert second["comments"] == []  # the same finding is already on the PR
    assert {r.headers.get("x-request-id") for r in fake.requests} == {"d-1", "d-3"}
    assert len(reviews(fake)) == 2
