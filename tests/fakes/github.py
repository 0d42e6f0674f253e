"""A strict, stateful fake of GitHub's REST API at the httpx seam (respx), for tests of the GitHub client.

    fake = FakeGitHub()
    fake.add_installation(7)
    fake.add_repo("acme", "app", installation_id=7, files={"main": {"build.gradle.kts": b"..."}})
    fake.add_pull("acme", "app", 1, head_sha="h1", base_sha="b1", files=[{"filename": "A.kt", "patch": "@@ ..."}])
    with fake.mock():
        ...  # githubkit or httpx against fake.base_url
    assert fake.reviews[("acme", "app", 1)][0]["comments"][0]["line"] == 3

It answers what GitHub answers: installation tokens only for a valid app JWT, 401 without a live token, 404
for other installations' repos, 422 (and nothing stored) for a review comment outside the diff or more than
50 annotations. Every request is kept in `requests` (headers unredacted: the tokens are fake); `fail_next`
scripts faults. Any URL outside `base_url` is an error (respx `assert_all_mocked`). Bodies are complete for
githubkit's models (GitHub's OpenAPI description), except compare's, which has no commits.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import secrets
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import httpx
import jwt
import respx

from reviewer.diff import FileDiff, Side, parse_patch

__all__ = ["FakeGitHub", "Fault", "Recorded"]

DOCS = "https://docs.github.com/rest"
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
MAX_PULL_FILES = 3000  # GitHub lists at most 3000 files of a pull request
MAX_COMPARE_FILES = 300
MAX_BODY = 65536  # review and comment bodies
MAX_SUMMARY = 65535  # check run output summary and text
MAX_ANNOTATIONS = 50  # per check run request
MAX_JWT_SECONDS = 600  # an app JWT may not expire more than 10 minutes ahead
RATE_LIMIT = 5000

BAD_CREDENTIALS = "Bad credentials"
BAD_JWT = "A JSON web token could not be decoded"
LINE_UNRESOLVED = "Line could not be resolved"
PATH_UNRESOLVED = "Path could not be resolved"
START_LINE_ORDER = "pull_request_review_thread.start_line must precede the end line."
START_LINE_HUNK = "pull_request_review_thread.start_line must be part of the same hunk as the line."
ONE_PENDING = "User can only have one pending review per pull request"
NOT_PENDING = "Can not delete a non-pending pull request review"
TOO_MANY_ANNOTATIONS = f"Only {MAX_ANNOTATIONS} annotations are allowed per request"
FAULT_MESSAGES = {
    401: BAD_CREDENTIALS,
    403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    429: "API rate limit exceeded for installation.",
}

# role -> the legacy `permission` GitHub reports for it
PERMISSIONS = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
REVIEW_STATES = {"COMMENT": "COMMENTED", "APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", None: "PENDING"}
CHECK_STATUSES = {"queued", "in_progress", "completed"}
CONCLUSIONS = {"success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"}
ANNOTATION_LEVELS = {"notice", "warning", "failure"}
REACTIONS = {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
RAW_MEDIA = ("application/vnd.github.raw", "application/vnd.github.v3.raw")
_USER_URLS = (
    *("followers", "following", "gists", "starred", "subscriptions", "organizations", "repos", "events"),
    "received_events",
)
_REPO_URLS = (
    *("archive", "assignees", "blobs", "branches", "collaborators", "comments", "commits", "compare", "contents"),
    *("contributors", "deployments", "downloads", "events", "forks", "git_commits", "git_refs", "git_tags", "hooks"),
    *("issue_comment", "issue_events", "issues", "keys", "labels", "languages", "merges", "milestones"),
    *("notifications", "pulls", "releases", "stargazers", "statuses", "subscribers", "subscription", "tags", "teams"),
    "trees",
)
_REPO_PATH = re.compile(r"/(?:repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)|repositories/(?P<repo_id>\d+))(?P<rest>/.*)?")
_TOKEN_PATH = re.compile(r"/app/installations/(?P<iid>\d+)/access_tokens")


@dataclass
class Recorded:
    """One request as GitHub saw it: `path` is relative to base_url; `headers` have lower-case names."""

    method: str
    path: str
    params: dict[str, str]
    json: Any
    headers: dict[str, str]
    status: int = 0  # what the fake answered


@dataclass
class Fault:
    method: str
    path_pattern: str  # a regex, fully matched against the path relative to base_url
    status: int
    times: int
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class _Token:
    installation_id: int
    expires_at: datetime


@dataclass
class _Repo:
    id: int
    owner: str
    name: str
    installation_id: int
    default_branch: str
    files: dict[str, dict[str, bytes]]
    permissions: dict[str, str] = field(default_factory=dict)
    compares: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class _Pull:
    number: int
    head_ref: str
    base_sha: str
    draft: bool
    state: str
    author: str
    author_type: str
    files: dict[str, list[dict[str, Any]]]  # head sha -> the PR's files at that head; the last one is current

    @property
    def head_sha(self) -> str:
        return next(reversed(self.files))


@dataclass
class _Call:
    request: httpx.Request
    repo: _Repo
    args: dict[str, str]
    body: Any
    rest: str  # the path after /repos/{owner}/{repo}


class _Fail(Exception):
    def __init__(self, status: int, *errors: str, message: str = "") -> None:
        if not message:
            message = "Unprocessable Entity" if status == 422 else (errors[0] if errors else "Not Found")
        super().__init__(status, message, *errors)
        self.status, self.message, self.errors = status, message, [error for error in errors if error != message]


def _unprocessable(error: str) -> _Fail:
    return _Fail(422, error)


def _invalid(error: str) -> _Fail:
    return _Fail(422, error, message="Validation Failed")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() and int(value) > 0 else default


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class FakeGitHub:
    def __init__(
        self,
        base_url: str = "https://ghe.test/api/v3",
        *,
        app_id: int = 4242,
        app_slug: str = "ai-dev-companion",
        public_key: str | None = None,
    ) -> None:
        """`public_key` (PEM): when given, app JWTs must be signed by its private key (else only structure)."""
        self.base_url = base_url.rstrip("/")
        self.app_id, self.app_slug, self.public_key = app_id, app_slug, public_key
        api = httpx.URL(self.base_url)
        web_host = "github.com" if api.host == "api.github.com" else api.host
        self.web_url = f"{api.scheme}://{web_host}"
        self.requests: list[Recorded] = []
        self.reviews: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.reactions: list[tuple[tuple[str, str], int, str]] = []
        self.tokens_issued = 0
        self.faults: list[Fault] = []
        self._installations: dict[int, timedelta] = {}
        self._tokens: dict[str, _Token] = {}
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._pulls: dict[tuple[str, str, int], _Pull] = {}
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()

    def mock(self) -> respx.MockRouter:
        """A respx router for `with fake.mock():`; any request outside base_url fails as not mocked."""
        router = respx.MockRouter(assert_all_mocked=True, assert_all_called=False)
        router.route(url__startswith=self.base_url + "/").mock(side_effect=self._handle)
        return router

    # state set-up

    def add_installation(self, installation_id: int, *, token_ttl: timedelta = timedelta(hours=1)) -> None:
        self._installations[installation_id] = token_ttl

    def add_repo(
        self,
        owner: str,
        repo: str,
        *,
        installation_id: int,
        default_branch: str = "main",
        files: dict[str, dict[str, bytes]] | None = None,
    ) -> None:
        """`files[ref][path]`: contents by branch name or sha."""
        if installation_id not in self._installations:
            raise ValueError(f"add_installation({installation_id}) first")
        self._repos[owner, repo] = _Repo(next(self._ids), owner, repo, installation_id, default_branch, files or {})

    def add_pull(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        head_sha: str,
        base_sha: str,
        files: list[dict[str, Any]],
        head_ref: str = "feature",
        draft: bool = False,
        state: str = "open",
        author: str = "octocat",
        author_type: str = "User",
    ) -> None:
        """`files`: [{"filename", "status"?, "patch"?, "additions"?, "deletions"?, "previous_filename"?}]."""
        self._repo(owner, repo)
        pull = _Pull(number, head_ref, base_sha, draft, state, author, author_type, {head_sha: list(files)})
        self._pulls[owner, repo, number] = pull

    def move_head(
        self, owner: str, repo: str, number: int, new_sha: str, *, files: list[dict[str, Any]] | None = None
    ) -> None:
        """A push to the PR: `new_sha` becomes the head, with `files` (default: the same files as before)."""
        pull = self._pulls[owner, repo, number]
        pull.files[new_sha] = list(pull.files[pull.head_sha] if files is None else files)

    def add_commit_files(
        self, owner: str, repo: str, base: str, head: str, files: list[dict[str, Any]], *, status: str = "ahead"
    ) -> None:
        """What GET /compare/{base}...{head} answers."""
        self._repo(owner, repo).compares[base, head] = (status, list(files))

    def set_permission(self, owner: str, repo: str, login: str, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"permission must be one of {sorted(PERMISSIONS)}")
        self._repo(owner, repo).permissions[login] = permission

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` requests whose path (relative to base_url) fully matches the regex."""
        self.faults.append(Fault(method.upper(), path_pattern, status, times, dict(headers or {}), body))

    def expire_tokens(self) -> None:
        """Every installation token issued so far is now expired (401 from then on)."""
        for token in self._tokens.values():
            token.expires_at = self._now() - timedelta(seconds=1)

    def _repo(self, owner: str, repo: str) -> _Repo:
        if (owner, repo) not in self._repos:
            raise ValueError(f"add_repo({owner!r}, {repo!r}) first")
        return self._repos[owner, repo]

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    # dispatch

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            path = request.url.path.removeprefix(httpx.URL(self.base_url).path)
            body: Any = None
            try:
                body = json.loads(request.content) if request.content else None
                response = self._fault(request.method, path) or self._route(request, path, body)
            except json.JSONDecodeError:
                response = self._error(_Fail(400, "Problems parsing JSON"))
            except _Fail as fail:
                response = self._error(fail)
            headers = {name.lower(): value for name, value in request.headers.items()}
            params = dict(request.url.params)
            self.requests.append(Recorded(request.method, path, params, body, headers, response.status_code))
            return response

    def _fault(self, method: str, path: str) -> httpx.Response | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.fullmatch(fault.path_pattern, path):
                fault.times -= 1
                message = FAULT_MESSAGES.get(fault.status, "Server Error")
                primary = {"x-ratelimit-remaining": "0"} if fault.status == 429 else {}  # a 429 is the primary limit
                body = fault.body or {"message": message, "documentation_url": DOCS}
                return self._json(fault.status, body, {**primary, **fault.headers})
        return None

    def _route(self, request: httpx.Request, path: str, body: Any) -> httpx.Response:
        if (token_path := _TOKEN_PATH.fullmatch(path)) and request.method == "POST":
            return self._issue_token(request, int(token_path["iid"]))
        match = _REPO_PATH.fullmatch(path)
        if match is None:
            raise _Fail(404)
        installation_id = self._authenticate(request)
        wanted = (match["owner"], match["repo"], int(match["repo_id"] or 0))
        repo = next((r for r in self._repos.values() if wanted in ((r.owner, r.name, 0), (None, None, r.id))), None)
        if repo is None or repo.installation_id != installation_id:  # GitHub hides others' repos: 404
            raise _Fail(404)
        rest = match["rest"] or ""
        for method, pattern, handler in _ROUTES:
            if method == request.method and (args := pattern.fullmatch(rest)):
                if method in ("POST", "PATCH") and not isinstance(body, dict):
                    raise _Fail(400, "Problems parsing JSON")
                return handler(self, _Call(request, repo, args.groupdict(), body, rest))
        raise _Fail(404)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        used = len(self.requests) + 1
        reset = (self._now() + timedelta(hours=1)).replace(minute=0, second=0)
        standard = {
            "x-github-request-id": secrets.token_hex(8).upper(),
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(max(RATE_LIMIT - used, 0)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(int(reset.timestamp())),
            "x-ratelimit-resource": "core",
        }
        return httpx.Response(status, json=body, headers={**standard, **(headers or {})})

    def _error(self, fail: _Fail) -> httpx.Response:
        body: dict[str, Any] = {"message": fail.message, "documentation_url": DOCS, "status": str(fail.status)}
        if fail.errors:
            body["errors"] = fail.errors
        return self._json(fail.status, body)

    # auth

    def _issue_token(self, request: httpx.Request, installation_id: int) -> httpx.Response:
        self._check_jwt(request.headers.get("authorization", ""))
        if installation_id not in self._installations:
            raise _Fail(404)
        token = f"ghs_{secrets.token_urlsafe(27)}"
        expires_at = self._now() + self._installations[installation_id]
        self._tokens[token] = _Token(installation_id, expires_at)
        self.tokens_issued += 1
        body = {"token": token, "expires_at": _stamp(expires_at), "permissions": {}, "repository_selection": "all"}
        return self._json(201, body)

    def _check_jwt(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.startswith("ghs_"):
            raise _Fail(401, BAD_JWT)
        verify = {"verify_signature": self.public_key is not None, "verify_exp": True, "verify_iat": True}
        try:
            if jwt.get_unverified_header(token).get("alg") != "RS256":
                raise _Fail(401, f"{BAD_JWT}: the algorithm must be RS256")
            options: Any = {**verify, "require": ["iss", "iat", "exp"]}
            claims = jwt.decode(token, self.public_key or "", algorithms=["RS256"], options=options)
        except jwt.PyJWTError as exc:
            raise _Fail(401, f"{BAD_JWT}: {exc}") from exc
        if str(claims["iss"]) != str(self.app_id):
            raise _Fail(401, f"{BAD_JWT}: 'Issuer' claim ('iss') must be the app id {self.app_id}")
        if claims["exp"] > self._now().timestamp() + MAX_JWT_SECONDS:
            raise _Fail(401, f"{BAD_JWT}: 'Expiration time' claim ('exp') is too far in the future")

    def _authenticate(self, request: httpx.Request) -> int:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self._tokens.get(value) if scheme.lower() in ("token", "bearer") else None
        if token is None or token.expires_at <= self._now():
            raise _Fail(401, BAD_CREDENTIALS)
        return token.installation_id

    # JSON shapes: complete for githubkit's models (generated from GitHub's OpenAPI description), so the tests
    # can check them with type_validate_python; dense literals keep them short.

    def _user(self, login: str, kind: str = "User") -> dict[str, Any]:
        url = f"{self.base_url}/users/{login}"
        urls = {f"{name}_url": f"{url}/{name}" for name in _USER_URLS}
        avatar, html = f"{self.web_url}/avatars/{login}", f"{self.web_url}/{login}"
        identity = {"login": login, "id": zlib.crc32(login.encode()), "node_id": f"U_{login}", "type": kind}
        extra = {"avatar_url": avatar, "gravatar_id": "", "site_admin": False}
        return {**identity, "url": url, "html_url": html, **extra, **urls}

    def _app_json(self) -> dict[str, Any]:
        """The App as GitHub shows it on its check runs (an `integration` object)."""
        created = _stamp(datetime(2024, 1, 1, tzinfo=UTC))
        return {
            "id": self.app_id, "slug": self.app_slug, "node_id": f"A_{self.app_id}", "owner": self._user("acme"),
            "name": self.app_slug, "description": None, "external_url": f"{self.web_url}/apps/{self.app_slug}",
            "html_url": f"{self.web_url}/apps/{self.app_slug}", "created_at": created, "updated_at": created,
            "permissions": {"checks": "write", "pull_requests": "write", "contents": "read", "metadata": "read"},
            "events": ["pull_request", "issue_comment"],
        }  # fmt: skip

    def _bot(self) -> dict[str, Any]:
        return self._user(f"{self.app_slug}[bot]", "Bot")

    def _repo_json(self, repo: _Repo) -> dict[str, Any]:
        url, html = f"{self.base_url}/repos/{repo.full_name}", f"{self.web_url}/{repo.full_name}"
        host = httpx.URL(html).host
        return {
            "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": repo.full_name,
            "owner": self._user(repo.owner, "Organization"), "private": True, "visibility": "private",
            "default_branch": repo.default_branch, "language": "Kotlin", "url": url, "html_url": html,
            "svn_url": html, "clone_url": f"{html}.git", "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host}:{repo.full_name}.git",
            **dict.fromkeys(("description", "homepage", "mirror_url", "license"), None),
            **dict.fromkeys(("fork", "archived", "disabled", "has_pages"), False),
            **dict.fromkeys(("size", "forks", "forks_count", "stargazers_count", "watchers", "watchers_count"), 0),
            **dict.fromkeys(("open_issues", "open_issues_count"), 0),
            **dict.fromkeys(("pushed_at", "created_at", "updated_at"), _stamp(self._now())),
            **{f"{name}_url": f"{url}/{name}" for name in _REPO_URLS},
        }  # fmt: skip

    def _pull_json(self, repo: _Repo, pull: _Pull) -> dict[str, Any]:
        api, html = f"{self.base_url}/repos/{repo.full_name}", f"{self.web_url}/{repo.full_name}/pull/{pull.number}"
        url, issue = f"{api}/pulls/{pull.number}", f"{api}/issues/{pull.number}"
        links = {"self": url, "html": html, "issue": issue, "comments": f"{issue}/comments",
                 "review_comments": f"{url}/comments", "review_comment": f"{api}/pulls/comments{{/number}}",
                 "commits": f"{url}/commits", "statuses": f"{api}/statuses/{pull.head_sha}"}  # fmt: skip
        files = [self._file_json(repo, pull.head_sha, entry) for entry in pull.files[pull.head_sha]]
        owner, repo_json = self._user(repo.owner, "Organization"), self._repo_json(repo)

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": owner, "repo": repo_json}

        return {
            "id": zlib.crc32(html.encode()), "node_id": f"PR_{pull.number}", "number": pull.number,
            "state": pull.state, "draft": pull.draft, "title": f"Pull request {pull.number}", "body": None,
            "user": self._user(pull.author, pull.author_type), "author_association": "CONTRIBUTOR",
            "head": side(pull.head_ref, pull.head_sha), "base": side(repo.default_branch, pull.base_sha),
            "labels": [], "mergeable_state": "unknown", "commits": len(pull.files), "changed_files": len(files),
            "additions": sum(f["additions"] for f in files), "deletions": sum(f["deletions"] for f in files),
            **dict.fromkeys(("milestone", "auto_merge", "closed_at", "merged_at", "merged_by", "mergeable"), None),
            **dict.fromkeys(("locked", "merged", "maintainer_can_modify"), False),
            **dict.fromkeys(("comments", "review_comments"), 0),
            **dict.fromkeys(("created_at", "updated_at"), _stamp(self._now())),
            **{f"{name}_url": href for name, href in links.items() if name != "self"},
            "url": url, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "_links": {name: {"href": href} for name, href in links.items()},
        }  # fmt: skip

    def _file_json(self, repo: _Repo, sha: str, entry: dict[str, Any]) -> dict[str, Any]:
        name, diff = entry["filename"], parse_patch(entry.get("patch") or "", path=entry["filename"])
        counts = {kind: sum(1 for line in diff.lines() if line.kind == kind) for kind in ("added", "removed")}
        out = {
            "sha": hashlib.sha1(f"{sha}:{name}".encode()).hexdigest(),  # noqa: S324 - an id, not security
            "filename": name, "status": "modified", "additions": counts["added"], "deletions": counts["removed"],
            "blob_url": f"{self.web_url}/{repo.full_name}/blob/{sha}/{name}",
            "raw_url": f"{self.web_url}/{repo.full_name}/raw/{sha}/{name}",
            "contents_url": f"{self.base_url}/repos/{repo.full_name}/contents/{name}?ref={sha}", **entry,
        }  # fmt: skip
        return {**out, "changes": out["additions"] + out["deletions"]}

    def _page(self, call: _Call, items: list[Any]) -> httpx.Response:
        per_page = min(_int(call.request.url.params.get("per_page"), DEFAULT_PER_PAGE), MAX_PER_PAGE)
        page, last = _int(call.request.url.params.get("page"), 1), max(1, math.ceil(len(items) / per_page))

        def link(number: int, rel: str) -> str:  # GitHub's links name the repository by id
            url = f"{self.base_url}/repositories/{call.repo.id}{call.rest}?per_page={per_page}&page={number}"
            return f'<{url}>; rel="{rel}"'

        links = [link(page - 1, "prev")] if 1 < page <= last + 1 else []
        links += [link(page + 1, "next"), link(last, "last")] if page < last else []
        links += [link(1, "first")] if page > 1 else []
        return self._json(
            200, items[(page - 1) * per_page : page * per_page], {"link": ", ".join(links)} if links else {}
        )

    # endpoints

    def _pull(self, call: _Call) -> _Pull:
        pull = self._pulls.get((call.repo.owner, call.repo.name, int(call.args["number"])))
        if pull is None:
            raise _Fail(404)
        return pull

    def _get_pull(self, call: _Call) -> httpx.Response:
        return self._json(200, self._pull_json(call.repo, self._pull(call)))

    def _list_files(self, call: _Call) -> httpx.Response:
        pull = self._pull(call)
        files = pull.files[pull.head_sha][:MAX_PULL_FILES]
        return self._page(call, [self._file_json(call.repo, pull.head_sha, entry) for entry in files])

    def _compare(self, call: _Call) -> httpx.Response:
        base, head = call.args["base"], call.args["head"]
        if (base, head) not in call.repo.compares:
            raise _Fail(404)
        status, files = call.repo.compares[base, head]
        path = f"{call.repo.full_name}/compare/{base}...{head}"
        return self._json(200, {
            "url": f"{self.base_url}/repos/{path}", "html_url": f"{self.web_url}/{path}", "status": status,
            "ahead_by": int(status == "ahead"), "behind_by": int(status == "behind"), "total_commits": 1, "commits": [],
            "files": [self._file_json(call.repo, head, entry) for entry in files[:MAX_COMPARE_FILES]],
        })  # fmt: skip

    def _get_contents(self, call: _Call) -> httpx.Response:
        ref, path = call.request.url.params.get("ref") or call.repo.default_branch, call.args["path"].strip("/")
        if ref not in call.repo.files:
            raise _Fail(404, f"No commit found for the ref {ref}")
        content = call.repo.files[ref].get(path)
        if content is None:
            raise _Fail(404)
        if call.request.headers.get("accept", "").startswith(RAW_MEDIA):
            return httpx.Response(200, content=content, headers={"content-type": "application/vnd.github.raw"})
        sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324 - git's blob id
        encoded = base64.b64encode(content).decode()
        url, html = f"{self.base_url}/repos/{call.repo.full_name}", f"{self.web_url}/{call.repo.full_name}"
        links = {
            "self": f"{url}/contents/{path}?ref={ref}",
            "git": f"{url}/git/blobs/{sha}",
            "html": f"{html}/blob/{ref}/{path}",
        }
        return self._json(200, {
            "type": "file", "encoding": "base64", "size": len(content), "name": path.rsplit("/", 1)[-1], "path": path,
            "content": "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60)), "sha": sha,
            "url": links["self"], "git_url": links["git"], "html_url": links["html"],
            "download_url": f"{html}/raw/{ref}/{path}", "_links": links,
        })  # fmt: skip

    def _get_permission(self, call: _Call) -> httpx.Response:
        login = call.args["login"]
        if login not in call.repo.permissions:
            raise _Fail(404)
        role = call.repo.permissions[login]
        user = {**self._user(login), "role_name": role}
        return self._json(200, {"permission": PERMISSIONS[role], "role_name": role, "user": user})

    def _reviews_of(self, call: _Call) -> list[dict[str, Any]]:
        return self.reviews.get((call.repo.owner, call.repo.name, self._pull(call).number), [])

    def _list_reviews(self, call: _Call) -> httpx.Response:
        return self._page(call, [_without_comments(review) for review in self._reviews_of(call)])

    def _list_comments(self, call: _Call) -> httpx.Response:
        reviews = self._reviews_of(call)
        return self._page(call, [c for review in reviews if review["state"] != "PENDING" for c in review["comments"]])

    def _create_review(self, call: _Call) -> httpx.Response:
        pull, body, reviews = self._pull(call), call.body, self._reviews_of(call)
        commit_id, event, text = body.get("commit_id") or pull.head_sha, body.get("event"), body.get("body") or ""
        if commit_id not in pull.files:
            raise _unprocessable(f"No commit found for SHA: {commit_id}")
        if event not in REVIEW_STATES:
            raise _invalid(f"event must be one of {sorted(e for e in REVIEW_STATES if e)}")
        if not isinstance(text, str) or len(text) > MAX_BODY:
            raise _unprocessable(f"Body is too long (maximum is {MAX_BODY} characters)")
        if event == "REQUEST_CHANGES" and not text:
            raise _unprocessable("Body can't be blank when requesting changes")
        if event is None and any(review["state"] == "PENDING" for review in reviews):
            raise _unprocessable(ONE_PENDING)
        files = pull.files[commit_id]
        diffs = {f["filename"]: parse_patch(f["patch"], path=f["filename"]) for f in files if f.get("patch")}
        comments = body.get("comments") or []
        if not isinstance(comments, list):
            raise _invalid("comments must be an array")
        checked = [_check_comment(diffs, comment) for comment in comments]  # all of them before anything is stored
        if event == "COMMENT" and not text and not checked:
            raise _unprocessable("Review cannot be blank")
        review_id, pr_url = next(self._ids), f"{self.base_url}/repos/{call.repo.full_name}/pulls/{pull.number}"
        html = f"{self.web_url}/{call.repo.full_name}/pull/{pull.number}#pullrequestreview-{review_id}"
        review = {
            "id": review_id, "node_id": f"PRR_{review_id}", "user": self._bot(), "body": text,
            "state": REVIEW_STATES[event], "commit_id": commit_id, "author_association": "NONE",
            "submitted_at": None if event is None else _stamp(self._now()),
            "html_url": html, "pull_request_url": pr_url,
            "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
        }  # fmt: skip
        review["comments"] = [self._comment_json(call.repo, review, *item) for item in checked]
        self.reviews.setdefault((call.repo.owner, call.repo.name, pull.number), reviews).append(review)
        return self._json(200, _without_comments(review))

    def _comment_json(self, repo: _Repo, review: dict[str, Any], comment: dict[str, Any], hunk: str) -> dict[str, Any]:
        comment_id, side, start = next(self._ids), comment.get("side", "RIGHT"), comment.get("start_line")
        url = f"{self.base_url}/repos/{repo.full_name}/pulls/comments/{comment_id}"
        html, pr_url = f"{review['pull_request_url']}#discussion_r{comment_id}", review["pull_request_url"]
        return {
            "id": comment_id, "node_id": f"PRRC_{comment_id}", "pull_request_review_id": review["id"],
            "path": comment["path"], "body": comment["body"], "diff_hunk": hunk, "user": review["user"],
            "commit_id": review["commit_id"], "original_commit_id": review["commit_id"],
            "line": comment.get("line"), "original_line": comment.get("line"), "side": side,
            "start_line": start, "original_start_line": start, "start_side": None if start is None else side,
            "subject_type": comment.get("subject_type", "line"), "author_association": "NONE",
            **dict.fromkeys(("position", "original_position", "in_reply_to_id"), None),
            **dict.fromkeys(("created_at", "updated_at"), _stamp(self._now())),
            "url": url, "html_url": html, "pull_request_url": pr_url,
            "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pr_url}},
        }  # fmt: skip

    def _delete_review(self, call: _Call) -> httpx.Response:
        reviews = self._reviews_of(call)
        review = next((r for r in reviews if r["id"] == int(call.args["review_id"])), None)
        if review is None:
            raise _Fail(404)
        if review["state"] != "PENDING":
            raise _unprocessable(NOT_PENDING)
        reviews.remove(review)
        return self._json(200, _without_comments(review))

    def _create_check_run(self, call: _Call) -> httpx.Response:
        name, head_sha = call.body.get("name"), call.body.get("head_sha")
        if not isinstance(name, str) or not name or not isinstance(head_sha, str) or not head_sha:
            raise _invalid("name and head_sha are required")
        pulls = [pull for (o, r, _), pull in self._pulls.items() if (o, r) == (call.repo.owner, call.repo.name)]
        if head_sha not in {*call.repo.files, *(sha for pull in pulls for sha in [*pull.files, pull.base_sha])}:
            raise _unprocessable(f"No commit found for SHA: {head_sha}")
        run: dict[str, Any] = {
            "id": next(self._ids), "name": name, "head_sha": head_sha, "full_name": call.repo.full_name,
            "status": "queued", "conclusion": None, "started_at": _stamp(self._now()), "completed_at": None,
            "details_url": None, "external_id": None,
            "output": {"title": None, "summary": None, "text": None, "annotations": []},
        }  # fmt: skip
        self._update_check_run(run, call.body, creating=True)
        self.check_runs[run["id"]] = run
        return self._json(201, self._check_run_json(run))

    def _list_check_runs(self, call: _Call) -> httpx.Response:
        """GET /commits/{ref}/check-runs: this App's runs on the commit (the only app here), filtered as GitHub
        filters them (`check_name`, `status`, `app_id`), newest first."""
        params = call.request.url.params
        runs = [
            run
            for run in self.check_runs.values()
            if run["full_name"] == call.repo.full_name
            and run["head_sha"] == call.args["ref"]
            and params.get("check_name", run["name"]) == run["name"]
            and params.get("status", run["status"]) == run["status"]
            and params.get("app_id", str(self.app_id)) == str(self.app_id)
        ]
        runs.sort(key=lambda run: run["id"], reverse=True)
        return self._json(200, {"total_count": len(runs), "check_runs": [self._check_run_json(r) for r in runs]})

    def _patch_check_run(self, call: _Call) -> httpx.Response:
        run = self.check_runs.get(int(call.args["run_id"]))
        if run is None or run["full_name"] != call.repo.full_name:
            raise _Fail(404)
        self._update_check_run(run, call.body, creating=False)
        return self._json(200, self._check_run_json(run))

    def _update_check_run(self, run: dict[str, Any], body: dict[str, Any], *, creating: bool) -> None:
        """Validate everything first, then change `run`: a rejected request changes nothing."""
        status, conclusion, output = body.get("status"), body.get("conclusion"), body.get("output")
        if status is not None and status not in CHECK_STATUSES:
            raise _invalid(f"status must be one of {sorted(CHECK_STATUSES)}")
        if conclusion is not None and conclusion not in CONCLUSIONS:
            raise _invalid(f"conclusion must be one of {sorted(CONCLUSIONS)}")
        if status == "completed" and conclusion is None:
            raise _invalid("conclusion is required when status is completed")
        annotations = [] if output is None else _check_output(output, creating=creating)
        run.update({key: body[key] for key in ("name", "details_url", "external_id") if key in body})
        if conclusion is not None:  # GitHub: a conclusion sets the status to completed
            run.update(status="completed", conclusion=conclusion, completed_at=_stamp(self._now()))
        elif status is not None:
            run["status"] = status
        if output is not None:
            run["output"].update({key: output[key] for key in ("title", "summary", "text") if key in output})
            run["output"]["annotations"].extend(annotations)

    def _check_run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/repos/{run['full_name']}/check-runs/{run['id']}"
        output = {key: value for key, value in run["output"].items() if key != "annotations"}
        output.update(annotations_count=len(run["output"]["annotations"]), annotations_url=f"{url}/annotations")
        fields = {key: value for key, value in run.items() if key not in ("full_name", "output")}
        html = f"{self.web_url}/{run['full_name']}/runs/{run['id']}"
        extra: dict[str, Any] = {"check_suite": {"id": run["id"]}, "app": self._app_json(), "pull_requests": []}
        return {**fields, "node_id": f"CR_{run['id']}", "url": url, "html_url": html, "output": output, **extra}

    def _create_reaction(self, call: _Call) -> httpx.Response:
        content = call.body.get("content")
        if content not in REACTIONS:
            raise _invalid(f"content must be one of {sorted(REACTIONS)}")
        reaction = ((call.repo.owner, call.repo.name), int(call.args["comment_id"]), content)
        existed = reaction in self.reactions  # GitHub answers 200 with the existing reaction
        if not existed:
            self.reactions.append(reaction)
        reaction_id = zlib.crc32(repr(reaction).encode())
        body = {"id": reaction_id, "node_id": f"REA_{reaction_id}", "user": self._bot(), "content": content}
        return self._json(200 if existed else 201, {**body, "created_at": _stamp(self._now())})


def _without_comments(review: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in review.items() if key != "comments"}


def _check_comment(diffs: dict[str, FileDiff], comment: Any) -> tuple[dict[str, Any], str]:
    """A review comment GitHub would accept, and its `diff_hunk`; else the 422 GitHub answers."""
    if not isinstance(comment, dict):
        raise _invalid("comments must be objects")
    text, path = comment.get("body"), comment.get("path")
    if not isinstance(text, str) or not text.strip():
        raise _unprocessable("Body can't be blank")
    if len(text) > MAX_BODY:
        raise _unprocessable(f"Body is too long (maximum is {MAX_BODY} characters)")
    if not isinstance(path, str) or path not in diffs:
        raise _unprocessable(PATH_UNRESOLVED)
    diff = diffs[path]
    if comment.get("subject_type") == "file":
        return comment, ""
    line, side = comment.get("line"), comment.get("side", "RIGHT")
    start, start_side = comment.get("start_line"), comment.get("start_side", side)
    if side not in ("RIGHT", "LEFT") or not _is_int(line) or not diff.in_diff(line, side):
        raise _unprocessable(LINE_UNRESOLVED)
    if start is not None:
        if not _is_int(start) or start_side != side or not diff.in_diff(start, side):
            raise _unprocessable(LINE_UNRESOLVED)
        if start >= line:
            raise _unprocessable(START_LINE_ORDER)
        if not diff.can_span(start, line, side):
            raise _unprocessable(START_LINE_HUNK)
    return comment, _diff_hunk(diff, line, side)


def _diff_hunk(diff: FileDiff, line: int, side: Side) -> str:
    """The `diff_hunk` of a comment: its hunk's header and lines, up to the commented line."""
    hunk = diff.hunk_for(line, side)
    assert hunk is not None  # the line was checked to be in the diff
    shown = [f"@@ -{hunk.old_start},{hunk.old_len} +{hunk.new_start},{hunk.new_len} @@"]
    for item in hunk.lines:
        shown.append({"added": "+", "removed": "-", "context": " "}[item.kind] + item.text)
        if (item.new_no if side == "RIGHT" else item.old_no) == line:
            break
    return "\n".join(shown)


def _check_output(output: Any, *, creating: bool) -> list[dict[str, Any]]:
    """A check run's `output`, validated; returns its annotations."""
    if not isinstance(output, dict) or not isinstance(output.get("summary"), str):
        raise _invalid("output needs a summary")
    if creating and not isinstance(output.get("title"), str):
        raise _invalid("output needs a title")
    if not isinstance(output.get("text") or "", str):
        raise _invalid("output text must be a string")
    if any(len(output.get(key) or "") > MAX_SUMMARY for key in ("summary", "text")):
        raise _invalid(f"output summary and text are limited to {MAX_SUMMARY} characters")
    annotations = output.get("annotations") or []
    if not isinstance(annotations, list) or len(annotations) > MAX_ANNOTATIONS:
        raise _invalid(TOO_MANY_ANNOTATIONS)
    for annotation in annotations:
        _check_annotation(annotation)
    return annotations


def _check_annotation(annotation: Any) -> None:
    if not isinstance(annotation, dict):
        raise _invalid("annotations must be objects")
    start, end = annotation.get("start_line"), annotation.get("end_line")
    if not isinstance(annotation.get("path"), str) or not _is_int(start) or not _is_int(end) or start > end:
        raise _invalid("annotation needs path, start_line and end_line (start_line <= end_line)")
    if annotation.get("annotation_level") not in ANNOTATION_LEVELS:
        raise _invalid(f"annotation_level must be one of {sorted(ANNOTATION_LEVELS)}")
    if not isinstance(annotation.get("message"), str) or not annotation["message"]:
        raise _invalid("annotation needs a message")
    if start != end and ({"start_column", "end_column"} & annotation.keys()):
        raise _invalid("start_column and end_column are only allowed when start_line equals end_line")


_Handler = Callable[[FakeGitHub, _Call], httpx.Response]
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    ("GET", re.compile(r"/pulls/(?P<number>\d+)"), FakeGitHub._get_pull),
    ("GET", re.compile(r"/pulls/(?P<number>\d+)/files"), FakeGitHub._list_files),
    ("GET", re.compile(r"/pulls/(?P<number>\d+)/reviews"), FakeGitHub._list_reviews),
    ("POST", re.compile(r"/pulls/(?P<number>\d+)/reviews"), FakeGitHub._create_review),
    ("DELETE", re.compile(r"/pulls/(?P<number>\d+)/reviews/(?P<review_id>\d+)"), FakeGitHub._delete_review),
    ("GET", re.compile(r"/pulls/(?P<number>\d+)/comments"), FakeGitHub._list_comments),
    ("GET", re.compile(r"/compare/(?P<base>.+?)\.\.\.(?P<head>.+)"), FakeGitHub._compare),
    ("GET", re.compile(r"/contents/(?P<path>.+)"), FakeGitHub._get_contents),
    ("GET", re.compile(r"/collaborators/(?P<login>[^/]+)/permission"), FakeGitHub._get_permission),
    ("POST", re.compile(r"/check-runs"), FakeGitHub._create_check_run),
    ("GET", re.compile(r"/commits/(?P<ref>[^/]+)/check-runs"), FakeGitHub._list_check_runs),
    ("PATCH", re.compile(r"/check-runs/(?P<run_id>\d+)"), FakeGitHub._patch_check_run),
    ("POST", re.compile(r"/issues/comments/(?P<comment_id>\d+)/reactions"), FakeGitHub._create_reaction),
]
