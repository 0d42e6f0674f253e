"""Reading a pull request through an installation client, against a GHE-like API faked with respx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import GitHub

from bot.github.client import GitHubApp, GitHubError
from bot.github.pulls import (
    MAX_PULL_FILES,
    PER_PAGE,
    RAW_MEDIA_TYPE,
    PullFile,
    PullRequest,
    can_write,
    compare_files,
    earlier_fingerprints,
    get_pull,
    list_files,
    read_file,
    repo_config,
    reviewed_heads,
)
from bot.settings import Settings
from reviewer.files import CONFIG_PATH, RepoConfig
from reviewer.models import Severity
from reviewer.render import FINGERPRINT_MARKER

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
BASE = "https://ghe.test/api/v3"
OWNER, REPO, NUMBER = "Codertocat", "Hello-World", 2
REPO_PATH = f"/repos/{OWNER}/{REPO}"

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        router.post("/app/installations/1/access_tokens").respond(
            201,
            json={
                "token": "ghs_test",
                "expires_at": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
        yield router


@pytest.fixture
async def gh(make_settings: SettingsFactory, pem: str, api: respx.MockRouter) -> AsyncIterator[GitHub[Any]]:
    app = GitHubApp(make_settings(github_app_id=1, github_private_key=pem, github_api_url=BASE))
    yield await app.installation(1)
    await app.aclose()


def pull_payload() -> dict[str, Any]:
    """GitHub's own example (the webhook's `pull_request` has the REST shape of GET /pulls/{n})."""
    event = json.loads((FIXTURES / "pull_request.opened.json").read_text(encoding="utf-8"))
    pull: dict[str, Any] = event["pull_request"]
    return pull


def user(login: str, kind: str = "User") -> dict[str, Any]:
    return {
        "login": login,
        "id": sum(map(ord, login)) * 1000 + len(login),
        "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "avatar_url": f"https://ghe.test/avatars/u/{login}",
        "url": f"{BASE}/users/{login}",
        "html_url": f"https://ghe.test/{login}",
        "type": kind,
        "site_admin": False,
    }


BOT = user("ai-dev-companion[bot]", "Bot")
OTHER_BOT = user("dependabot[bot]", "Bot")
HUMAN = user("octocat")


def diff_entry(
    name: str, status: str = "modified", patch: str | None = "@@ -1 +1 @@\n-a\n+b", **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "sha": "bbcd538c8e72b8c175046e27cc8f907076331401",
        "filename": name,
        "status": status,
        "additions": 1,
        "deletions": 1,
        "changes": 2,
        "blob_url": f"https://ghe.test/{OWNER}/{REPO}/blob/6dcb09b5b57875f334f61aebed695e2e4193db5e/{name}",
        "raw_url": f"https://ghe.test/{OWNER}/{REPO}/raw/6dcb09b5b57875f334f61aebed695e2e4193db5e/{name}",
        "contents_url": f"{BASE}{REPO_PATH}/contents/{name}?ref=6dcb09b5b57875f334f61aebed695e2e4193db5e",
        **extra,
    }
    if patch is not None:
        entry["patch"] = patch
    return entry


def review_comment(comment_id: int, author: dict[str, Any], body: str) -> dict[str, Any]:
    return {
        "url": f"{BASE}{REPO_PATH}/pulls/comments/{comment_id}",
        "pull_request_review_id": 42,
        "id": comment_id,
        "node_id": "MDI0OlB1bGxSZXF1ZXN0UmV2aWV3Q29tbWVudDEw",
        "diff_hunk": "@@ -16,33 +16,40 @@ public class Connection : IConnection...",
        "path": "app/src/main/kotlin/Main.kt",
        "position": 1,
        "original_position": 4,
        "commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "original_commit_id": "9c48853fa3dc5c1c3d6f1f1cd1f2743e72652840",
        "in_reply_to_id": None,
        "user": author,
        "body": body,
        "created_at": "2011-04-14T16:00:49Z",
        "updated_at": "2011-04-14T16:00:49Z",
        "html_url": f"https://ghe.test/{OWNER}/{REPO}/pull/{NUMBER}#discussion-diff-{comment_id}",
        "pull_request_url": f"{BASE}{REPO_PATH}/pulls/{NUMBER}",
        "author_association": "NONE",
        "start_line": None,
        "original_start_line": None,
        "start_side": None,
        "line": 2,
        "original_line": 2,
        "side": "RIGHT",
        "subject_type": "line",
    }


def review(review_id: int, author: dict[str, Any], body: str) -> dict[str, Any]:
    return {
        "id": review_id,
        "node_id": "MDE3OlB1bGxSZXF1ZXN0UmV2aWV3ODA=",
        "user": author,
        "body": body,
        "state": "COMMENTED",
        "html_url": f"https://ghe.test/{OWNER}/{REPO}/pull/{NUMBER}#pullrequestreview-{review_id}",
        "pull_request_url": f"{BASE}{REPO_PATH}/pulls/{NUMBER}",
        "submitted_at": "2019-11-17T17:43:43Z",
        "commit_id": "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091",
        "author_association": "NONE",
    }


def fp(digest: str) -> str:
    return f"<!-- {FINGERPRINT_MARKER}{digest} -->"


# --- the pull request -------------------------------------------------------------------------------------------


async def test_get_pull_reads_the_fields_the_job_needs(gh: GitHub[Any], api: respx.MockRouter) -> None:
    route = api.get(f"{REPO_PATH}/pulls/{NUMBER}").respond(200, json=pull_payload())
    pull = await get_pull(gh, OWNER, REPO, NUMBER)
    assert pull == PullRequest(
        owner="Codertocat",
        repo="Hello-World",
        number=2,
        head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        base_sha="f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        head_ref="changes",
        draft=False,
        state="open",
        author_login="Codertocat",
        author_type="User",
        default_branch="master",
    )
    assert route.calls[0].request.headers["authorization"] == "token ghs_test"


async def test_a_missing_pull_is_a_404_error(gh: GitHub[Any], api: respx.MockRouter) -> None:
    api.get(f"{REPO_PATH}/pulls/{NUMBER}").respond(404, json={"message": "Not Found"})
    with pytest.raises(GitHubError) as caught:
        await get_pull(gh, OWNER, REPO, NUMBER)
    assert caught.value.status == 404


async def test_an_unexpected_pull_shape_is_a_github_error(gh: GitHub[Any], api: respx.MockRouter) -> None:
    api.get(f"{REPO_PATH}/pulls/{NUMBER}").respond(200, json={"number": NUMBER, "head": None})
    with pytest.raises(GitHubError, match="unexpected shape"):
        await get_pull(gh, OWNER, REPO, NUMBER)


# --- files ------------------------------------------------------------------------------------------------------


async def test_list_files_follows_every_page(gh: GitHub[Any], api: respx.MockRouter) -> None:
    next_page = f"{BASE}/repositories/1296269/pulls/{NUMBER}/files?per_page={PER_PAGE}&page=2"
    first_files = [diff_entry(f"app/src/main/kotlin/F{i}.kt") for i in range(PER_PAGE)]
    first = api.get(f"{REPO_PATH}/pulls/{NUMBER}/files", params__eq={"per_page": str(PER_PAGE)}).respond(
        200, json=first_files, headers={"link": f'<{next_page}>; rel="next", <{next_page}>; rel="last"'}
    )
    second = api.get(
        "/repositories/1296269/pulls/2/files", params__eq={"per_page": str(PER_PAGE), "page": "2"}
    ).respond(
        200,
        json=[
            diff_entry("app/src/main/res/drawable/logo.png", "added", patch=None),
            diff_entry("app/New.kt", "renamed", patch=None, previous_filename="app/Old.kt", additions=0, deletions=0),
        ],
        headers={"link": f'<{BASE}/repositories/1296269/pulls/2/files?per_page=100&page=1>; rel="prev"'},
    )

    files = await list_files(gh, OWNER, REPO, NUMBER)

    assert len(files) == PER_PAGE + 2
    assert files[0] == PullFile("app/src/main/kotlin/F0.kt", "modified", "@@ -1 +1 @@\n-a\n+b", None, 1, 1)
    assert files[-2] == PullFile("app/src/main/res/drawable/logo.png", "added", None, None, 1, 1)
    assert files[-1] == PullFile("app/New.kt", "renamed", None, "app/Old.kt", 0, 0)
    assert first.call_count == 1
    assert second.call_count == 1
    assert MAX_PULL_FILES == 3000


async def test_compare_files_reads_the_comparison_files(gh: GitHub[Any], api: respx.MockRouter) -> None:
    base, head = "a" * 40, "c" * 40
    route = api.get(f"{REPO_PATH}/compare/{base}...{head}").respond(
        200,
        json={
            "url": f"{BASE}{REPO_PATH}/compare/{base}...{head}",
            "html_url": f"https://ghe.test/{OWNER}/{REPO}/compare/{base}...{head}",
            "status": "ahead",
            "ahead_by": 1,
            "behind_by": 0,
            "total_commits": 1,
            "base_commit": {"sha": base},
            "merge_base_commit": {"sha": base},
            "commits": [{"sha": head, "commit": {"message": "Fix the leak"}}],
            "files": [diff_entry("app/src/main/kotlin/Leak.kt")],
        },
    )
    files = await compare_files(gh, OWNER, REPO, base, head)
    assert files == [PullFile("app/src/main/kotlin/Leak.kt", "modified", "@@ -1 +1 @@\n-a\n+b", None, 1, 1)]
    assert route.calls[0].request.url.params["per_page"] == "1"


async def test_compare_with_a_vanished_base_is_a_404(gh: GitHub[Any], api: respx.MockRouter) -> None:
    api.get(f"{REPO_PATH}/compare/{'a' * 40}...{'c' * 40}").respond(404, json={"message": "Not Found"})
    with pytest.raises(GitHubError) as caught:
        await compare_files(gh, OWNER, REPO, "a" * 40, "c" * 40)
    assert caught.value.status == 404


async def test_read_file_asks_for_raw_bytes(gh: GitHub[Any], api: respx.MockRouter) -> None:
    content = b'plugins {\n    id("com.android.application")\n}\n'
    route = api.get(f"{REPO_PATH}/contents/app/build.gradle.kts", params__eq={"ref": "abc123"}).respond(
        200, content=content, headers={"content-type": "application/vnd.github.raw; charset=utf-8"}
    )
    assert await read_file(gh, OWNER, REPO, "app/build.gradle.kts", "abc123") == content
    assert route.calls[0].request.headers["accept"] == RAW_MEDIA_TYPE


async def test_read_file_quotes_the_path_and_answers_none_when_missing(gh: GitHub[Any], api: respx.MockRouter) -> None:
    route = api.get(f"{REPO_PATH}/contents/docs/a%20b%25c.kt").respond(
        404, json={"message": "Not Found", "documentation_url": "https://docs.github.com/rest/repos/contents"}
    )
    assert await read_file(gh, OWNER, REPO, "docs/a b%c.kt", "main") is None
    assert route.call_count == 1


async def test_read_file_refuses_paths_githubkit_cannot_request(gh: GitHub[Any], api: respx.MockRouter) -> None:
    api.get(f"{REPO_PATH}/contents/a.kt").respond(200, content=b"x")  # the token and one call, for strictness
    assert await read_file(gh, OWNER, REPO, "a.kt", "main") == b"x"
    with pytest.raises(GitHubError, match="'#' or '\\?'"):
        await read_file(gh, OWNER, REPO, "docs/a#b.kt", "main")


# --- repo config ------------------------------------------------------------------------------------------------


def config_route(api: respx.MockRouter, **response: Any) -> respx.Route:
    # Always from the default branch, never from the PR head.
    return api.get(f"{REPO_PATH}/contents/{CONFIG_PATH}", params__eq={"ref": "master"}).respond(**response)


async def test_a_missing_config_gives_the_defaults(gh: GitHub[Any], api: respx.MockRouter) -> None:
    route = config_route(api, status_code=404, json={"message": "Not Found"})
    assert await repo_config(gh, OWNER, REPO, "master") == (RepoConfig(), None)
    assert route.call_count == 1


async def test_a_valid_config_is_parsed(gh: GitHub[Any], api: respx.MockRouter) -> None:
    text = "min_severity: major\nmax_comments: 5\npaths:\n  ignore: ['**/generated/**']\n"
    config_route(api, status_code=200, content=text.encode())
    config, problem = await repo_config(gh, OWNER, REPO, "master")
    assert problem is None
    assert config.min_severity is Severity.MAJOR
    assert config.max_comments == 5
    assert config.paths.ignore == ("**/generated/**",)


async def test_an_invalid_config_says_what_is_wrong(gh: GitHub[Any], api: respx.MockRouter) -> None:
    config_route(api, status_code=200, content=b"max_coments: 5\nmin_severity: fatal\n")
    config, problem = await repo_config(gh, OWNER, REPO, "master")
    assert config == RepoConfig()
    assert problem is not None
    assert CONFIG_PATH in problem
    assert "max_coments" in problem
    assert "min_severity" in problem


async def test_a_config_that_is_not_yaml_or_not_text_says_so(gh: GitHub[Any], api: respx.MockRouter) -> None:
    api.get(f"{REPO_PATH}/contents/{CONFIG_PATH}").mock(
        side_effect=[httpx.Response(200, content=b"enabled: [unclosed\n"), httpx.Response(200, content=b"\xff\xfe\x00")]
    )
    assert "not valid YAML" in str((await repo_config(gh, OWNER, REPO, "master"))[1])
    assert "not UTF-8" in str((await repo_config(gh, OWNER, REPO, "master"))[1])


# --- earlier fingerprints ---------------------------------------------------------------------------------------


async def test_reviewed_heads_are_the_commits_of_this_apps_reviews(gh: GitHub[Any], api: respx.MockRouter) -> None:
    ours = review(80, BOT, "## AI Dev Companion\n\nNo findings on the changed lines.")
    api.get(f"{REPO_PATH}/pulls/{NUMBER}/reviews", params__eq={"per_page": "100"}).respond(
        200,
        json=[
            {**ours, "commit_id": "a" * 40},
            {**review(81, HUMAN, "## AI Dev Companion\n\nquoting the bot"), "commit_id": "b" * 40},
            {**review(82, OTHER_BOT, "## Another bot"), "commit_id": "c" * 40},
            {**ours, "id": 83, "commit_id": "d" * 40},
        ],
    )
    assert await reviewed_heads(gh, OWNER, REPO, NUMBER) == ["a" * 40, "d" * 40]


async def test_fingerprints_come_only_from_bots(gh: GitHub[Any], api: respx.MockRouter) -> None:
    page_2 = f"{BASE}/repositories/1296269/pulls/{NUMBER}/comments?per_page=100&page=2"
    comments_1 = api.get(f"{REPO_PATH}/pulls/{NUMBER}/comments", params__eq={"per_page": "100"}).respond(
        200,
        json=[
            review_comment(1, BOT, f"🟠 **major** · leak\n\n**Leak**: closes nothing\n{fp('0123456789abcdef')}"),
            review_comment(2, HUMAN, f"copied the bot: {fp('1111111111111111')}"),
        ],
        headers={"link": f'<{page_2}>; rel="next"'},
    )
    comments_2 = api.get("/repositories/1296269/pulls/2/comments", params__eq={"per_page": "100", "page": "2"}).respond(
        200,
        json=[
            review_comment(3, OTHER_BOT, f"{fp('2222222222222222')}"),
            review_comment(4, BOT, "<!-- ai-dev-companion:fp=deadbeef -->"),  # too short: not a fingerprint
        ],
    )
    reviews = api.get(f"{REPO_PATH}/pulls/{NUMBER}/reviews", params__eq={"per_page": "100"}).respond(
        200,
        json=[
            review(80, BOT, f"## AI review\n\nFile-level:\n- x {fp('3333333333333333')}\n- y {fp('4444444444444444')}"),
            review(81, HUMAN, f"LGTM {fp('5555555555555555')}"),
            review(82, BOT, ""),
        ],
    )

    found = await earlier_fingerprints(gh, OWNER, REPO, NUMBER)

    assert found == {"0123456789abcdef", "2222222222222222", "3333333333333333", "4444444444444444"}
    assert (comments_1.call_count, comments_2.call_count, reviews.call_count) == (1, 1, 1)


# --- permissions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permission", "role_name", "expected"),
    [
        ("admin", "admin", True),
        ("write", "maintain", True),
        ("write", "write", True),
        ("write", "security-engineer", True),  # a custom role based on write
        ("read", "triage", False),
        ("read", "read", False),
        ("none", "none", False),
    ],
)
async def test_can_write_reads_the_permission(
    gh: GitHub[Any], api: respx.MockRouter, permission: str, role_name: str, expected: bool
) -> None:
    api.get(f"{REPO_PATH}/collaborators/octocat/permission").respond(
        200, json={"permission": permission, "role_name": role_name, "user": HUMAN}
    )
    assert await can_write(gh, OWNER, REPO, "octocat") is expected


async def test_can_write_is_false_for_an_unknown_user(gh: GitHub[Any], api: respx.MockRouter) -> None:
    route = api.get(f"{REPO_PATH}/collaborators/renovate%5Bbot%5D/permission").respond(
        404, json={"message": "renovate[bot] is not a user"}
    )
    assert await can_write(gh, OWNER, REPO, "renovate[bot]") is False
    assert route.call_count == 1
