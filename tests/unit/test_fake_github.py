"""The fake GitHub REST API: strict where GitHub is strict, driven with plain httpx and once with githubkit."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.compat import type_validate_python
from githubkit.response import Response
from githubkit_schemas.latest import models
from respx.models import AllMockedAssertionError

from tests.fakes.github import (
    BAD_CREDENTIALS,
    BAD_JWT,
    LINE_UNRESOLVED,
    MAX_ANNOTATIONS,
    NOT_PENDING,
    ONE_PENDING,
    PATH_UNRESOLVED,
    START_LINE_HUNK,
    START_LINE_ORDER,
    TOO_MANY_ANNOTATIONS,
    FakeGitHub,
)

BASE = "https://ghe.test/api/v3"
APP_ID = 4242
INSTALLATION = 7
OWNER, REPO, NUMBER = "acme", "android-app", 12
HEAD, BASE_SHA = "a" * 40, "b" * 40
PR = f"/repos/{OWNER}/{REPO}/pulls/{NUMBER}"
KOTLIN = "app/src/main/kotlin/Main.kt"
# RIGHT-side lines shown: 1-5 (hunk 1) and 21-24 (hunk 2); 2, 3 and 22 are added.
PATCH = (
    "@@ -1,4 +1,5 @@\n package app\n-import a\n+import b\n+import c\n \n fun main() {\n"
    "@@ -20,3 +21,4 @@ fun main() {\n     x()\n+    y()\n     z()\n }"
)
FILES: list[dict[str, Any]] = [
    {"filename": KOTLIN, "status": "modified", "patch": PATCH},
    {"filename": "app/src/main/res/icon.png", "status": "added"},  # binary: no patch
]
GRADLE = b'plugins { id("com.android.application") }\n'


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def app_jwt(key: rsa.RSAPrivateKey, *, iss: Any = str(APP_ID), iat: int = -60, exp: int = 540) -> str:
    now = datetime.now(UTC)
    claims = {"iss": iss, "iat": now + timedelta(seconds=iat), "exp": now + timedelta(seconds=exp)}
    return jwt.encode(claims, key, algorithm="RS256")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
def fake(key: rsa.RSAPrivateKey) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(BASE, app_id=APP_ID, public_key=public_pem(key))
    fake.add_installation(INSTALLATION)
    fake.add_repo(OWNER, REPO, installation_id=INSTALLATION, files={"main": {"build.gradle.kts": GRADLE}})
    fake.add_pull(OWNER, REPO, NUMBER, head_sha=HEAD, base_sha=BASE_SHA, files=FILES)
    with fake.mock():
        yield fake


async def issue_token(client: httpx.AsyncClient, key: rsa.RSAPrivateKey, installation: int = INSTALLATION) -> str:
    answer = await client.post(
        f"/app/installations/{installation}/access_tokens", headers={"Authorization": f"Bearer {app_jwt(key)}"}
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


@pytest.fixture
async def gh(fake: FakeGitHub, key: rsa.RSAPrivateKey) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client with an installation token of INSTALLATION."""
    async with httpx.AsyncClient(base_url=BASE) as client:
        client.headers["Authorization"] = f"token {await issue_token(client, key)}"
        yield client


def comment(line: int, **extra: Any) -> dict[str, Any]:
    return {"path": KOTLIN, "line": line, "side": "RIGHT", "body": f"on line {line}", **extra}


async def post_review(gh: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await gh.post(f"{PR}/reviews", json={"commit_id": HEAD, "event": "COMMENT", **body})


# tokens and auth


async def test_a_valid_app_jwt_gets_an_installation_token(fake: FakeGitHub, key: rsa.RSAPrivateKey) -> None:
    async with httpx.AsyncClient(base_url=BASE) as client:
        answer = await client.post(
            f"/app/installations/{INSTALLATION}/access_tokens", headers={"Authorization": f"Bearer {app_jwt(key)}"}
        )

    assert answer.status_code == 201
    body = answer.json()
    assert body["token"].startswith("ghs_")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"])
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    assert fake.tokens_issued == 1


def hs256_jwt() -> str:
    now = datetime.now(UTC)
    return jwt.encode({"iss": str(APP_ID), "iat": now, "exp": now + timedelta(minutes=5)}, "s" * 32, "HS256")


BAD_AUTHORIZATIONS: dict[str, Callable[[rsa.RSAPrivateKey], str]] = {
    "no header": lambda key: "",
    "an installation token": lambda key: "token ghs_whatever",
    "not a JWT": lambda key: "Bearer not.a.jwt",
    "HS256": lambda key: f"Bearer {hs256_jwt()}",
    "signed by another key": lambda key: f"Bearer {app_jwt(rsa_key())}",
    "another app": lambda key: f"Bearer {app_jwt(key, iss='999')}",
    "expired": lambda key: f"Bearer {app_jwt(key, iat=-700, exp=-100)}",
    "expires more than 10 minutes ahead": lambda key: f"Bearer {app_jwt(key, exp=3600)}",
    "issued in the future": lambda key: f"Bearer {app_jwt(key, iat=300)}",
}


@pytest.mark.parametrize("case", BAD_AUTHORIZATIONS)
async def test_the_token_endpoint_rejects_a_bad_jwt(fake: FakeGitHub, key: rsa.RSAPrivateKey, case: str) -> None:
    authorization = BAD_AUTHORIZATIONS[case](key)
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=BASE) as client:
        answer = await client.post(f"/app/installations/{INSTALLATION}/access_tokens", headers=headers)

    assert answer.status_code == 401
    assert answer.json()["message"].startswith(BAD_JWT)
    assert fake.tokens_issued == 0


async def test_without_a_public_key_the_jwt_structure_is_still_checked(key: rsa.RSAPrivateKey) -> None:
    fake = FakeGitHub(BASE, app_id=APP_ID)
    fake.add_installation(INSTALLATION)
    with fake.mock():
        async with httpx.AsyncClient(base_url=BASE) as client:
            assert await issue_token(client, rsa_key())  # any RS256 signature
            bad = await client.post(
                f"/app/installations/{INSTALLATION}/access_tokens",
                headers={"Authorization": f"Bearer {app_jwt(key, iss=str(APP_ID + 1))}"},
            )
            unknown = await client.post(
                "/app/installations/99/access_tokens", headers={"Authorization": f"Bearer {app_jwt(key)}"}
            )

    assert bad.status_code == 401
    assert unknown.status_code == 404
    assert fake.tokens_issued == 1


async def test_repo_routes_need_a_live_token_of_the_repos_installation(
    fake: FakeGitHub, key: rsa.RSAPrivateKey
) -> None:
    fake.add_installation(8)
    fake.add_repo("other", "repo", installation_id=8)
    async with httpx.AsyncClient(base_url=BASE) as client:
        anonymous = await client.get(PR)
        made_up = await client.get(PR, headers={"Authorization": "token ghs_madeup"})
        jwt_instead = await client.get(PR, headers={"Authorization": f"Bearer {app_jwt(key)}"})
        other = await issue_token(client, key, installation=8)
        foreign = await client.get(PR, headers={"Authorization": f"token {other}"})
        mine = await issue_token(client, key)
        ok = await client.get(PR, headers={"Authorization": f"Bearer {mine}"})  # both schemes work
        fake.expire_tokens()
        expired = await client.get(PR, headers={"Authorization": f"token {mine}"})

    for answer in (anonymous, made_up, jwt_instead, expired):
        assert answer.status_code == 401
        assert answer.json()["message"] == BAD_CREDENTIALS
    assert foreign.status_code == 404  # GitHub does not tell another installation the repo exists
    assert ok.status_code == 200
    assert fake.tokens_issued == 2


async def test_a_token_lives_as_long_as_its_installation_says(key: rsa.RSAPrivateKey) -> None:
    fake = FakeGitHub(BASE, app_id=APP_ID)
    fake.add_installation(INSTALLATION, token_ttl=timedelta(0))
    fake.add_repo(OWNER, REPO, installation_id=INSTALLATION)
    with fake.mock():
        async with httpx.AsyncClient(base_url=BASE) as client:
            token = await issue_token(client, key)
            answer = await client.get(f"/repos/{OWNER}/{REPO}/contents/x", headers={"Authorization": f"token {token}"})

    assert answer.status_code == 401


# reading


async def test_the_pull_request_has_githubs_shape(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    body = (await gh.get(PR)).json()

    pull = type_validate_python(models.PullRequest, body)
    assert (pull.number, pull.state, pull.draft, pull.head.sha, pull.base.sha) == (
        NUMBER,
        "open",
        False,
        HEAD,
        BASE_SHA,
    )
    assert pull.head.repo is not None
    assert (pull.head.ref, pull.head.repo.full_name) == ("feature", f"{OWNER}/{REPO}")
    assert pull.base.repo.default_branch == "main"
    assert (pull.user.login, pull.user.type) == ("octocat", "User")
    assert pull.html_url == f"https://ghe.test/{OWNER}/{REPO}/pull/{NUMBER}"

    fake.move_head(OWNER, REPO, NUMBER, "c" * 40)
    assert (await gh.get(PR)).json()["head"]["sha"] == "c" * 40
    assert (await gh.get(f"/repos/{OWNER}/{REPO}/pulls/999")).status_code == 404


async def test_pull_files_paginate_with_link_headers(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    many = [{"filename": f"src/F{i}.kt", "status": "added", "patch": "@@ -0,0 +1 @@\n+x"} for i in range(250)]
    fake.add_pull(OWNER, REPO, 13, head_sha="d" * 40, base_sha=BASE_SHA, files=many)
    files = f"/repos/{OWNER}/{REPO}/pulls/13/files"

    first = await gh.get(files, params={"per_page": 100})
    links = httpx.Response(200, headers={"link": first.headers["link"]}).links
    last = await gh.get(links["last"]["url"])  # GitHub's links use /repositories/{id}/...
    middle = await gh.get(links["next"]["url"])

    assert [len(page.json()) for page in (first, middle, last)] == [100, 100, 50]
    assert set(links) == {"next", "last"}
    assert links["next"]["url"].endswith("/pulls/13/files?per_page=100&page=2")
    assert links["last"]["url"].endswith("page=3")
    assert set(httpx.Response(200, headers={"link": last.headers["link"]}).links) == {"prev", "first"}
    assert "link" not in (await gh.get(PR + "/files")).headers  # 2 files fit on one page of 30
    entry = type_validate_python(models.DiffEntry, first.json()[0])
    assert (entry.filename, entry.status, entry.additions, entry.changes) == ("src/F0.kt", "added", 1, 1)
    assert len((await gh.get(files, params={"per_page": 500})).json()) == 100  # per_page is capped


async def test_pull_files_stop_at_3000(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    many = [{"filename": f"F{i}.kt", "status": "added"} for i in range(3100)]
    fake.add_pull(OWNER, REPO, 14, head_sha="e" * 40, base_sha=BASE_SHA, files=many)

    first = await gh.get(f"/repos/{OWNER}/{REPO}/pulls/14/files", params={"per_page": 100})
    beyond = await gh.get(f"/repos/{OWNER}/{REPO}/pulls/14/files", params={"per_page": 100, "page": 31})

    assert first.headers["link"].endswith('page=30>; rel="last"')
    assert beyond.json() == []


async def test_contents_come_raw_or_as_base64_json(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    fake.add_repo(OWNER, "lib", installation_id=INSTALLATION, default_branch="trunk", files={"trunk": {"a/B.kt": b"x"}})
    path = f"/repos/{OWNER}/{REPO}/contents/build.gradle.kts"

    raw = await gh.get(path, headers={"Accept": "application/vnd.github.raw+json"})
    as_json = await gh.get(path, params={"ref": "main"})
    default_branch = await gh.get(
        f"/repos/{OWNER}/lib/contents/a/B.kt", headers={"Accept": "application/vnd.github.raw"}
    )
    missing = await gh.get(f"/repos/{OWNER}/{REPO}/contents/nope.kts")
    bad_ref = await gh.get(path, params={"ref": "f" * 40})

    assert raw.content == GRADLE
    body = as_json.json()
    assert (body["encoding"], body["path"], body["size"]) == ("base64", "build.gradle.kts", len(GRADLE))
    assert base64.b64decode(body["content"]) == GRADLE
    type_validate_python(models.ContentFile, body)
    assert default_branch.content == b"x"
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    assert bad_ref.status_code == 404


async def test_compare_answers_what_was_set_up(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    fake.add_commit_files(OWNER, REPO, BASE_SHA, HEAD, FILES[:1])

    known = await gh.get(f"/repos/{OWNER}/{REPO}/compare/{BASE_SHA}...{HEAD}")
    unknown = await gh.get(f"/repos/{OWNER}/{REPO}/compare/{HEAD}...{BASE_SHA}")

    assert known.json()["status"] == "ahead"
    assert [f["filename"] for f in known.json()["files"]] == [KOTLIN]
    assert known.json()["files"][0]["patch"] == PATCH
    assert unknown.status_code == 404


async def test_collaborator_permission(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    fake.set_permission(OWNER, REPO, "maintainer", "maintain")

    known = await gh.get(f"/repos/{OWNER}/{REPO}/collaborators/maintainer/permission")
    unknown = await gh.get(f"/repos/{OWNER}/{REPO}/collaborators/stranger/permission")

    permission = type_validate_python(models.RepositoryCollaboratorPermission, known.json())
    assert (permission.permission, permission.role_name) == ("write", "maintain")  # GitHub's legacy mapping
    assert permission.user is not None
    assert permission.user.login == "maintainer"
    assert unknown.status_code == 404
    with pytest.raises(ValueError, match="permission must be one of"):
        fake.set_permission(OWNER, REPO, "x", "owner")


# reviews


async def test_a_review_on_diff_lines_is_stored_and_listed(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    comments = [comment(2), comment(24, start_line=21, start_side="RIGHT"), comment(1, side="LEFT")]

    answer = await post_review(gh, body="Summary", comments=comments)

    assert answer.status_code == 200, answer.text
    review = type_validate_python(models.PullRequestReview, answer.json())
    assert (review.state, review.body, review.commit_id) == ("COMMENTED", "Summary", HEAD)
    assert review.user is not None
    assert (review.user.login, review.user.type) == ("ai-dev-companion[bot]", "Bot")
    [stored] = fake.reviews[OWNER, REPO, NUMBER]
    assert stored["id"] == review.id
    assert [(c["path"], c["line"], c["side"], c["start_line"]) for c in stored["comments"]] == [
        (KOTLIN, 2, "RIGHT", None),
        (KOTLIN, 24, "RIGHT", 21),
        (KOTLIN, 1, "LEFT", None),
    ]
    assert stored["comments"][0]["diff_hunk"] == "@@ -1,4 +1,5 @@\n package app\n-import a\n+import b"
    listed = (await gh.get(f"{PR}/comments")).json()
    assert [c["body"] for c in listed] == ["on line 2", "on line 24", "on line 1"]
    type_validate_python(list[models.PullRequestReviewComment], listed)
    assert [r["id"] for r in (await gh.get(f"{PR}/reviews")).json()] == [review.id]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"comments": [comment(2), comment(10)]}, LINE_UNRESOLVED),  # 10 is between the hunks
        ({"comments": [comment(25)]}, LINE_UNRESOLVED),  # after the last hunk
        ({"comments": [comment(5, side="LEFT")]}, LINE_UNRESOLVED),  # the old side shows 1-4 and 20-22
        ({"comments": [comment(2, path="app/Other.kt")]}, PATH_UNRESOLVED),
        ({"comments": [comment(2, path="app/src/main/res/icon.png")]}, PATH_UNRESOLVED),  # no patch
        ({"comments": [comment(3, start_line=3)]}, START_LINE_ORDER),
        ({"comments": [comment(3, start_line=4)]}, START_LINE_ORDER),
        ({"comments": [comment(22, start_line=3)]}, START_LINE_HUNK),
        ({"comments": [comment(3, start_line=10)]}, LINE_UNRESOLVED),
        ({"comments": [comment(2, body="")]}, "Body can't be blank"),
        ({"comments": [comment(2, body="x" * 65537)]}, "Body is too long (maximum is 65536 characters)"),
        ({"body": "x" * 65537}, "Body is too long (maximum is 65536 characters)"),
        ({"commit_id": "f" * 40}, f"No commit found for SHA: {'f' * 40}"),
        ({"event": "COMMENT", "body": ""}, "Review cannot be blank"),
    ],
)
async def test_a_review_github_would_reject_is_422_and_stores_nothing(
    fake: FakeGitHub, gh: httpx.AsyncClient, change: dict[str, Any], error: str
) -> None:
    answer = await post_review(gh, **{"body": "Summary", **change})

    assert answer.status_code == 422
    assert answer.json()["message"] == "Unprocessable Entity"
    assert answer.json()["errors"] == [error]
    assert (await gh.get(f"{PR}/comments")).json() == []
    assert fake.reviews == {}


async def test_a_review_of_a_former_head_is_checked_against_that_heads_diff(
    fake: FakeGitHub, gh: httpx.AsyncClient
) -> None:
    fake.move_head(OWNER, REPO, NUMBER, "c" * 40, files=[{"filename": "Other.kt", "patch": "@@ -1 +1 @@\n-a\n+b"}])

    old = await post_review(gh, body="old", comments=[comment(22)])
    new_on_old_line = await post_review(gh, commit_id="c" * 40, body="new", comments=[comment(22)])
    new = await post_review(gh, commit_id="c" * 40, body="new", comments=[comment(1, path="Other.kt")])

    assert (old.status_code, new_on_old_line.status_code, new.status_code) == (200, 422, 200)
    assert [r["commit_id"] for r in fake.reviews[OWNER, REPO, NUMBER]] == [HEAD, "c" * 40]


async def test_one_pending_review_per_user_and_only_pending_ones_can_be_deleted(
    fake: FakeGitHub, gh: httpx.AsyncClient
) -> None:
    pending = await gh.post(f"{PR}/reviews", json={"comments": [comment(3)]})
    second = await gh.post(f"{PR}/reviews", json={"body": "again"})
    submitted = await post_review(gh, body="done")
    invalid_event = await post_review(gh, event="DISMISS", body="x")

    assert pending.json()["state"] == "PENDING"
    assert pending.json()["submitted_at"] is None
    assert (second.status_code, second.json()["errors"]) == (422, [ONE_PENDING])
    assert submitted.status_code == 200
    assert invalid_event.status_code == 422
    assert (await gh.get(f"{PR}/comments")).json() == []  # a pending review's comments are not published
    not_pending = await gh.delete(f"{PR}/reviews/{submitted.json()['id']}")
    assert (not_pending.status_code, not_pending.json()["errors"]) == (422, [NOT_PENDING])
    deleted = await gh.delete(f"{PR}/reviews/{pending.json()['id']}")
    assert (deleted.status_code, deleted.json()["state"]) == (200, "PENDING")
    assert [r["state"] for r in fake.reviews[OWNER, REPO, NUMBER]] == ["COMMENTED"]
    assert (await gh.delete(f"{PR}/reviews/{pending.json()['id']}")).status_code == 404
    assert (await gh.post(f"{PR}/reviews", json={"body": "pending again"})).status_code == 200


# check runs


def make_annotations(count: int, **extra: Any) -> list[dict[str, Any]]:
    base = {"path": KOTLIN, "start_line": 2, "end_line": 2, "annotation_level": "warning"}
    return [{**base, "message": f"finding {i}", **extra} for i in range(count)]


async def test_check_run_annotations_accumulate_across_updates(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    runs = f"/repos/{OWNER}/{REPO}/check-runs"
    created = await gh.post(runs, json={"name": "AI review", "head_sha": HEAD, "status": "in_progress"})
    run_id = created.json()["id"]
    output = {"title": "Review", "summary": "Working"}
    first = await gh.patch(f"{runs}/{run_id}", json={"output": {**output, "annotations": make_annotations(50)}})
    done = {
        "conclusion": "neutral",
        "output": {"title": "Done", "summary": "3 findings", "annotations": make_annotations(3)},
    }
    last = await gh.patch(f"{runs}/{run_id}", json=done)

    assert created.status_code == 201
    assert created.json()["status"] == "in_progress"
    assert first.json()["output"]["annotations_count"] == 50
    run = type_validate_python(models.CheckRun, last.json())
    assert (run.status, run.conclusion, run.output.title, run.output.annotations_count) == (
        "completed",
        "neutral",
        "Done",
        53,
    )
    state = fake.check_runs[run_id]
    assert (state["name"], state["head_sha"], state["output"]["summary"]) == ("AI review", HEAD, "3 findings")
    assert len(state["output"]["annotations"]) == 53


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"output": {"title": "t", "summary": "s", "annotations": make_annotations(MAX_ANNOTATIONS + 1)}},
            TOO_MANY_ANNOTATIONS,
        ),
        ({"status": "completed"}, "conclusion is required when status is completed"),
        ({"status": "done"}, None),
        ({"conclusion": "passed"}, None),
        (
            {"output": {"title": "t", "summary": "s", "annotations": make_annotations(1, annotation_level="error")}},
            None,
        ),
        (
            {"output": {"title": "t", "summary": "s", "annotations": make_annotations(1, end_line=3, start_column=1)}},
            None,
        ),
        ({"output": {"title": "t", "summary": "s", "annotations": [{"path": KOTLIN, "start_line": 1}]}}, None),
        (
            {"output": {"title": "t", "summary": "s", "annotations": make_annotations(1, start_line=3, end_line=2)}},
            None,
        ),
        ({"output": {"title": "t", "summary": "s", "annotations": make_annotations(1, message="")}}, None),
        ({"output": {"title": "t"}}, None),
        ({"output": {"title": "t", "summary": "s" * 65536}}, None),
    ],
)
async def test_a_check_run_github_would_reject_is_422_and_changes_nothing(
    fake: FakeGitHub, gh: httpx.AsyncClient, body: dict[str, Any], error: str | None
) -> None:
    runs = f"/repos/{OWNER}/{REPO}/check-runs"
    created = await gh.post(runs, json={"name": "AI review", "head_sha": HEAD})
    before = repr(fake.check_runs)

    on_create = await gh.post(runs, json={"name": "AI review", "head_sha": HEAD, **body})
    on_update = await gh.patch(f"{runs}/{created.json()['id']}", json=body)

    for answer in (on_create, on_update):
        assert answer.status_code == 422
        assert answer.json()["message"] == "Validation Failed"
        if error:
            assert answer.json()["errors"] == [error]
    assert repr(fake.check_runs) == before


async def test_check_runs_need_a_name_and_a_known_commit(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    runs = f"/repos/{OWNER}/{REPO}/check-runs"
    columns = {"title": "t", "summary": "s", "annotations": make_annotations(1, start_column=1, end_column=5)}

    assert (await gh.post(runs, json={"head_sha": HEAD})).status_code == 422
    assert (await gh.post(runs, json={"name": "x", "head_sha": "f" * 40})).status_code == 422
    assert (await gh.post(runs, json={"name": "x", "head_sha": HEAD, "output": columns})).status_code == 201
    assert (await gh.patch(f"{runs}/999999", json={"status": "in_progress"})).status_code == 404
    assert (await gh.post(runs, content=b"{not json")).status_code == 400


# reactions, faults, routing


async def test_reactions_are_validated_and_recorded(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    url = f"/repos/{OWNER}/{REPO}/issues/comments/555/reactions"

    first = await gh.post(url, json={"content": "eyes"})
    again = await gh.post(url, json={"content": "eyes"})
    wrong = await gh.post(url, json={"content": "thumbsup"})

    assert (first.status_code, again.status_code, wrong.status_code) == (201, 200, 422)
    type_validate_python(models.Reaction, first.json())
    assert fake.reactions == [((OWNER, REPO), 555, "eyes")]


async def test_fail_next_scripts_faults_then_gets_out_of_the_way(fake: FakeGitHub, gh: httpx.AsyncClient) -> None:
    fake.fail_next("GET", r"/repos/[^/]+/[^/]+/pulls/\d+", 502, times=2)
    limited = {"message": "You have exceeded a secondary rate limit."}
    fake.fail_next("post", r".*/reviews", 403, headers={"retry-after": "3"}, body=limited)

    answers = [await gh.get(PR, headers={"X-Request-ID": f"req-{i}"}) for i in range(3)]
    review = await post_review(gh, body="x")

    assert [a.status_code for a in answers] == [502, 502, 200]
    assert answers[0].json()["message"] == "Server Error"
    assert (review.status_code, review.headers["retry-after"], review.json()) == (403, "3", limited)
    assert fake.reviews.get((OWNER, REPO, NUMBER), []) == []
    seen = [r for r in fake.requests if r.path == PR]
    assert [(r.headers["x-request-id"], r.status) for r in seen] == [("req-0", 502), ("req-1", 502), ("req-2", 200)]
    posted = fake.requests[-1]
    assert (posted.method, posted.json["body"], posted.status) == ("POST", "x", 403)
    assert int(answers[2].headers["x-ratelimit-remaining"]) < 5000
    fake.fail_next("GET", re.escape(PR), 429)
    primary = await gh.get(PR)
    assert (primary.status_code, primary.headers["x-ratelimit-remaining"]) == (429, "0")


async def test_unknown_routes_are_404_and_other_hosts_are_not_mocked(gh: httpx.AsyncClient) -> None:
    unknown = await gh.get(f"/repos/{OWNER}/{REPO}/branches/main/protection")

    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Not Found"
    with pytest.raises(AllMockedAssertionError):
        await gh.get("https://api.github.com/rate_limit")


def json_list(response: Response[Any]) -> list[Any]:
    data: list[Any] = response.json()
    return data


async def test_githubkit_reads_a_pull_request_as_an_installation(fake: FakeGitHub, key: rsa.RSAPrivateKey) -> None:
    many = [{"filename": f"src/F{i}.kt", "status": "added", "patch": "@@ -0,0 +1 @@\n+x"} for i in range(150)]
    fake.add_pull(OWNER, REPO, 13, head_sha="d" * 40, base_sha=BASE_SHA, files=many)
    gh = GitHub(
        AppAuthStrategy(APP_ID, private_pem(key)),
        base_url=BASE,
        http_cache=False,
        auto_retry=False,
        cache_strategy=MemCacheStrategy(),
    )
    inst = gh.with_auth(gh.auth.as_installation(INSTALLATION))

    pull = await inst.rest.pulls.async_get(owner=OWNER, repo=REPO, pull_number=NUMBER)
    pages = inst.rest.paginate(
        inst.rest.pulls.async_list_files, map_func=json_list, owner=OWNER, repo=REPO, pull_number=13, per_page=100
    )
    names = [item["filename"] async for item in pages]

    assert pull.parsed_data.head.sha == HEAD  # githubkit's model accepts the fake's JSON
    assert names == [f"src/F{i}.kt" for i in range(150)]  # page 2 came from the Link header's /repositories/{id}
    assert [r.path for r in fake.requests][-1].startswith("/repositories/")
    assert fake.tokens_issued == 1  # githubkit caches the installation token
    token_request, *calls = fake.requests
    assert token_request.path == f"/app/installations/{INSTALLATION}/access_tokens"
    assert token_request.headers["authorization"].startswith("Bearer ")
    assert all(call.headers["authorization"].startswith("token ghs_") for call in calls)
    assert [call.status for call in fake.requests] == [201, 200, 200, 200]
