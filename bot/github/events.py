"""Webhook events -> decisions, with no I/O: what to review, or why nothing is done.

Payloads are read with our own lenient models of the few fields used (githubkit's strict webhook models reject
GitHub's own example payloads). A small router maps (event, action) to one handler each, in the manner of
gidgethub's `Router`. Everything that needs GitHub (the repo config, the collaborator permission, the PR's
current head for `/review`) is decided by the worker, never in the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Trigger = Literal["opened", "reopened", "synchronize", "ready_for_review", "comment"]
# Who may start a review with a comment without asking the permission API.
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
REVIEW_COMMAND = "/review"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class User(_Lenient):
    login: str
    type: str = "User"

    @property
    def is_bot(self) -> bool:
        return self.type == "Bot" or self.login.endswith("[bot]")


class Installation(_Lenient):
    id: int


class Repository(_Lenient):
    name: str
    owner: User
    full_name: str


class Ref(_Lenient):
    sha: str


class PullRequest(_Lenient):
    number: int
    state: str
    draft: bool = False
    user: User
    head: Ref


class PullRequestEvent(_Lenient):
    action: str
    pull_request: PullRequest
    repository: Repository
    installation: Installation | None = None
    before: str | None = None  # synchronize: the head before the push


class Issue(_Lenient):
    number: int
    state: str = "open"
    pull_request: dict[str, Any] | None = None  # present only when the issue is a pull request


class Comment(_Lenient):
    id: int
    body: str = ""
    user: User
    author_association: str = "NONE"


class IssueCommentEvent(_Lenient):
    action: str
    issue: Issue
    comment: Comment
    repository: Repository
    installation: Installation | None = None


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """Review this pull request. `head_sha` is None for `/review` (the worker reads the PR's head)."""

    installation_id: int
    owner: str
    repo: str
    number: int
    trigger: Trigger
    head_sha: str | None = None
    before_sha: str | None = None  # synchronize: review what changed since this head
    full: bool = False  # `/review full`: everything, not only what changed since the last review
    draft: bool = False
    comment_id: int | None = None
    commenter: str | None = None
    trusted: bool = True  # False: the worker asks the permission API before anything else

    @property
    def pr_key(self) -> str:
        """`owner/repo#12@`: every job of this pull request has a key under it."""
        return f"{self.owner}/{self.repo}#{self.number}@"

    @property
    def key(self) -> str:
        """One job per diff: `owner/repo#12@<head sha>`; a `/review` comment is its own job."""
        return self.pr_key + (self.head_sha if self.head_sha else f"comment-{self.comment_id}")

    def job_kwargs(self) -> dict[str, Any]:
        return {
            "installation_id": self.installation_id,
            "owner": self.owner,
            "repo": self.repo,
            "number": self.number,
            "trigger": self.trigger,
            "head_sha": self.head_sha,
            "before_sha": self.before_sha,
            "full": self.full,
            "draft": self.draft,
            "comment_id": self.comment_id,
            "commenter": self.commenter,
            "trusted": self.trusted,
        }


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


@dataclass(frozen=True, slots=True)
class Pong:
    """`ping`: GitHub checks the hook."""


Decision = ReviewRequest | Ignored | Pong


class PayloadError(ValueError):
    """The payload is not the shape its event promises (the message names the fields)."""


Handler = Callable[[dict[str, Any]], Decision]


class Router:
    """(event, action) -> one handler. An action of None registers the handler for every action."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str | None], Handler] = {}

    def register(self, event: str, *actions: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            for action in actions or (None,):
                if (event, action) in self._handlers:
                    raise ValueError(f"{event}.{action} already has a handler")
                self._handlers[(event, action)] = handler
            return handler

        return add

    def events(self) -> set[str]:
        """The events with a handler (what the App must subscribe to, besides `ping`, which GitHub always sends)."""
        return {event for event, _ in self._handlers} - {"ping"}

    def dispatch(self, event: str, payload: dict[str, Any]) -> Decision:
        action = payload.get("action")
        handler = self._handlers.get((event, action if isinstance(action, str) else None)) or self._handlers.get(
            (event, None)
        )
        if handler is None:
            return Ignored(f"{event}.{action}" if isinstance(action, str) else event)
        try:
            return handler(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
            )
            raise PayloadError(f"not a {event} payload: {problems}") from None


router = Router()


@router.register("ping")
def _ping(payload: dict[str, Any]) -> Decision:
    return Pong()


def _installation(installation: Installation | None, what: str) -> int:
    if installation is None:
        raise PayloadError(f"{what} without `installation`: is this delivery from the GitHub App's webhook?")
    return installation.id


@router.register("pull_request", "opened", "reopened", "synchronize", "ready_for_review")
def _pull_request(payload: dict[str, Any]) -> Decision:
    event = PullRequestEvent.model_validate(payload)
    pull = event.pull_request
    if pull.state != "open":
        return Ignored(f"pull request #{pull.number} is {pull.state}")
    if pull.user.is_bot:
        return Ignored(f"pull request #{pull.number} is by a bot ({pull.user.login})")
    trigger: Trigger = event.action  # type: ignore[assignment]  # one of the registered actions
    return ReviewRequest(
        installation_id=_installation(event.installation, "pull_request"),
        owner=event.repository.owner.login,
        repo=event.repository.name,
        number=pull.number,
        trigger=trigger,
        head_sha=pull.head.sha,
        before_sha=event.before if event.action == "synchronize" else None,
        draft=pull.draft,
    )


def parse_command(body: str) -> bool | None:
    """The comment's first line: `/review` -> False, `/review full` -> True (full), anything else -> None."""
    first = body.strip().splitlines()[0].strip() if body.strip() else ""
    words = first.split()
    if not words or words[0] != REVIEW_COMMAND:
        return None
    if words[1:] == []:
        return False
    return True if words[1:] == ["full"] else None


@router.register("issue_comment", "created")
def _comment(payload: dict[str, Any]) -> Decision:
    event = IssueCommentEvent.model_validate(payload)
    comment = event.comment
    if comment.user.is_bot:
        return Ignored("comment by a bot")
    full = parse_command(comment.body)
    if full is None:
        return Ignored("comment is not a /review command")
    if event.issue.pull_request is None:
        return Ignored(f"#{event.issue.number} is an issue, not a pull request")
    if event.issue.state != "open":
        return Ignored(f"pull request #{event.issue.number} is {event.issue.state}")
    return ReviewRequest(
        installation_id=_installation(event.installation, "issue_comment"),
        owner=event.repository.owner.login,
        repo=event.repository.name,
        number=event.issue.number,
        trigger="comment",
        full=full,
        comment_id=comment.id,
        commenter=comment.user.login,
        trusted=comment.author_association in TRUSTED_ASSOCIATIONS,
    )


__all__ = [
    "REVIEW_COMMAND",
    "TRUSTED_ASSOCIATIONS",
    "Decision",
    "Ignored",
    "PayloadError",
    "Pong",
    "ReviewRequest",
    "Router",
    "parse_command",
    "router",
]
