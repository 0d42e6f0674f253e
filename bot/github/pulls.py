"""Read a pull request: the PR itself, its files and patches, files at a ref, the repo config, the
fingerprints the bot already posted, and whether a user may write to the repository.

Every function takes an installation client (``await app.installation(id)``). Responses are read with
``.json()`` and parsed into small frozen dataclasses: githubkit's generated models are strict and reject
payloads GitHub really sends (GHE versions, fields that became nullable). Failures are raised as
:class:`bot.github.client.GitHubError` and its subclasses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from githubkit import GitHub, Response
from githubkit.exception import RequestFailed

from bot.github.client import GitHubError, github_errors
from reviewer.files import CONFIG_PATH, RepoConfig, parse_repo_config
from reviewer.render import FINGERPRINT_MARKER, TOOL_NAME

PER_PAGE = 100
# GitHub lists at most 3000 files of a pull request, and at most 300 for a comparison.
MAX_PULL_FILES = 3000
MAX_COMPARE_FILES = 300
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"
UNREQUESTABLE_PATH_CHARS = frozenset("#?")
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
REVIEW_HEADING = f"## {TOOL_NAME}"  # the first line of every review body (reviewer.render.review_body)
FINGERPRINT_RE = re.compile(r"<!--\s*" + re.escape(FINGERPRINT_MARKER) + r"([0-9a-f]{16})\s*-->")

JSON = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PullRequest:
    owner: str
    repo: str
    number: int
    head_sha: str
    base_sha: str
    head_ref: str
    draft: bool
    state: str
    author_login: str
    author_type: str
    default_branch: str


@dataclass(frozen=True, slots=True)
class PullFile:
    """One changed file. ``patch`` is None for binary files and diffs GitHub finds too large to show."""

    path: str
    status: str  # added, removed, modified, renamed, copied, changed, unchanged
    patch: str | None
    previous_path: str | None
    additions: int
    deletions: int


def _json_list(response: Response[Any]) -> list[JSON]:
    data = response.json()
    if not isinstance(data, list):
        raise GitHubError(f"expected a list from {response.raw_request.url.path}, got {type(data).__name__}")
    return data


def _parse_pull(owner: str, repo: str, data: JSON) -> PullRequest:
    base_repo = data["base"]["repo"]
    return PullRequest(
        owner=str(base_repo.get("owner", {}).get("login") or owner),
        repo=str(base_repo.get("name") or repo),
        number=int(data["number"]),
        head_sha=str(data["head"]["sha"]),
        base_sha=str(data["base"]["sha"]),
        head_ref=str(data["head"]["ref"]),
        draft=bool(data.get("draft") or False),
        state=str(data["state"]),
        author_login=str(data["user"]["login"]),
        author_type=str(data["user"].get("type") or "User"),
        default_branch=str(base_repo["default_branch"]),
    )


def _parse_file(data: JSON) -> PullFile:
    return PullFile(
        path=str(data["filename"]),
        status=str(data["status"]),
        patch=data.get("patch"),
        previous_path=data.get("previous_filename"),
        additions=int(data.get("additions") or 0),
        deletions=int(data.get("deletions") or 0),
    )


def _shape_error(what: str, exc: Exception) -> GitHubError:
    return GitHubError(f"unexpected shape of {what} from GitHub: {exc!r}")


async def get_pull(gh: GitHub[Any], owner: str, repo: str, number: int) -> PullRequest:
    """The pull request as it is now (head SHA, draft state, author, the base repo's default branch)."""
    with github_errors():
        response = await gh.rest.pulls.async_get(owner, repo, number)
    data: Any = response.json()
    try:
        return _parse_pull(owner, repo, data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _shape_error(f"pull request {owner}/{repo}#{number}", exc) from exc


async def list_files(gh: GitHub[Any], owner: str, repo: str, number: int) -> list[PullFile]:
    """Every changed file of the pull request (all pages; GitHub stops at MAX_PULL_FILES)."""
    files: list[PullFile] = []
    with github_errors():
        pages = gh.rest.paginate(
            gh.rest.pulls.async_list_files,
            map_func=_json_list,
            owner=owner,
            repo=repo,
            pull_number=number,
            per_page=PER_PAGE,
        )
        async for item in pages:
            try:
                files.append(_parse_file(item))
            except (KeyError, TypeError, ValueError) as exc:
                raise _shape_error(f"a file of {owner}/{repo}#{number}", exc) from exc
            if len(files) >= MAX_PULL_FILES:
                break
    return files


async def compare_files(gh: GitHub[Any], owner: str, repo: str, base_sha: str, head_sha: str) -> list[PullFile]:
    """The files changed from ``base_sha`` to ``head_sha`` (``base...head``: from their merge base), e.g. since
    the last reviewed head. GitHub returns at most MAX_COMPARE_FILES files here; a caller that gets that many
    should fall back to :func:`list_files`. A base that no longer exists (force-push, GC) raises status 404."""
    with github_errors():
        # With a paging parameter the first page carries the files of the whole comparison (up to 300);
        # per_page=1 keeps the commit list, which we do not read, small.
        response = await gh.rest.repos.async_compare_commits(owner, repo, f"{base_sha}...{head_sha}", per_page=1)
    data: Any = response.json()
    try:
        return [_parse_file(item) for item in data.get("files") or ()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _shape_error(f"comparison {base_sha}...{head_sha} of {owner}/{repo}", exc) from exc


async def read_file(gh: GitHub[Any], owner: str, repo: str, path: str, ref: str) -> bytes | None:
    """The file's bytes at ``ref`` (a SHA, branch or tag), or None when there is no such file or ref."""
    if UNREQUESTABLE_PATH_CHARS.intersection(path):
        # githubkit 0.16's App auth flow rebuilds the URL from the *decoded* path (auth/app.py
        # `_get_api_route`), which httpx refuses when it holds '#' or '?': say so instead of an InvalidURL.
        raise GitHubError(f"cannot read {path!r}: githubkit cannot request a path containing '#' or '?'")
    with github_errors():
        try:
            response = await gh.rest.repos.async_get_content(
                owner, repo, quote(path.lstrip("/"), safe="/"), ref=ref, headers={"Accept": RAW_MEDIA_TYPE}
            )
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return None
            raise
    return response.content


async def repo_config(gh: GitHub[Any], owner: str, repo: str, default_branch: str) -> tuple[RepoConfig, str | None]:
    """``.github/ai-review.yml`` from the default branch (never from the PR head: a PR must not be able to
    switch its own review off). Missing: the defaults and None. Invalid: the defaults and a message to post."""
    raw = await read_file(gh, owner, repo, CONFIG_PATH, default_branch)
    if raw is None:
        return RepoConfig(), None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return RepoConfig(), f"{CONFIG_PATH} is not UTF-8 text; the defaults were used."
    return parse_repo_config(text)


def _bot_fingerprints(items: list[JSON]) -> set[str]:
    found: set[str] = set()
    for item in items:
        user = item.get("user") or {}
        if user.get("type") == "Bot" and isinstance(item.get("body"), str):
            found.update(FINGERPRINT_RE.findall(item["body"]))
    return found


async def _all(gh: GitHub[Any], list_page: Any, owner: str, repo: str, number: int) -> list[JSON]:
    """Every item of a paginated list of the pull request (review comments, reviews), as plain JSON."""
    items: list[JSON] = []
    with github_errors():
        async for item in gh.rest.paginate(
            list_page, map_func=_json_list, owner=owner, repo=repo, pull_number=number, per_page=PER_PAGE
        ):
            items.append(item)
    return items


async def earlier_fingerprints(gh: GitHub[Any], owner: str, repo: str, number: int) -> set[str]:
    """Fingerprints (``<!-- ai-dev-companion:fp=<16 hex> -->``) in review comments and review bodies written
    by bots on this pull request, so that a re-review does not post the same finding again."""
    comments = await _all(gh, gh.rest.pulls.async_list_review_comments, owner, repo, number)
    reviews = await _all(gh, gh.rest.pulls.async_list_reviews, owner, repo, number)
    return _bot_fingerprints(comments) | _bot_fingerprints(reviews)


async def reviewed_heads(gh: GitHub[Any], owner: str, repo: str, number: int) -> list[str]:
    """The commits this App reviewed on the pull request, oldest first: bot reviews whose body is one of ours
    (it starts with the tool's heading)."""
    heads: list[str] = []
    for item in await _all(gh, gh.rest.pulls.async_list_reviews, owner, repo, number):
        user, body, commit = item.get("user") or {}, item.get("body"), item.get("commit_id")
        ours = user.get("type") == "Bot" and isinstance(body, str) and body.startswith(REVIEW_HEADING)
        if ours and isinstance(commit, str):
            heads.append(commit)
    return heads


async def can_write(gh: GitHub[Any], owner: str, repo: str, login: str) -> bool:
    """Whether ``login`` may push to the repository (admin, maintain or write; custom roles by their base)."""
    with github_errors():
        try:
            response = await gh.rest.repos.async_get_collaborator_permission_level(owner, repo, quote(login, safe=""))
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return False
            raise
    data: Any = response.json()
    if not isinstance(data, dict):
        raise GitHubError(f"unexpected shape of the permission of {login} on {owner}/{repo} from GitHub")
    return data.get("permission") in ("admin", "write") or data.get("role_name") in WRITE_ROLES
