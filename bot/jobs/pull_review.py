"""The pull-request review job: read the PR from GitHub, review it (rules, then the crew when configured),
publish one review and the check run. Queued by the webhook (one job per PR head, or per `/review` comment).

The order, and why:
1. a `/review` from someone the payload does not vouch for: the collaborator permission API first; then `eyes`;
2. the PR itself: closed, or (for a push) its head moved on -> nothing (the newer push has its own job);
3. `.github/ai-review.yml` from the default branch: `enabled: false`, or a draft without `review_drafts` -> nothing;
   an automatic review of a head this App reviewed already (a retried job) -> nothing;
4. the installation's limit (INSTALLATION_RATE_LIMIT): over it, a completed neutral check run says when the
   next review is possible and that `/review` can start it then;
5. the check run goes in_progress; files and patches are read (a push or a `/review` reviews only the files
   changed since the last head this App reviewed, unless `/review full`), Kotlin and Gradle files also whole at
   the head, for the rules and the LLM's context;
6. the review; then the head is read again: if it moved on, nothing is published (the newer job will);
7. one PR review (what is already on the PR is not repeated), the check run completed; `rocket` (or `confused`).
A failure completes the check run as "Review failed" with the reason, reacts `confused`, and re-raises: the
queue retries what is transient (GitHub 5xx, network) and records the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from githubkit import GitHub

from bot.chat_review import LLMOptions
from bot.github.client import TRACE_ID, GitHubApp, GitHubError, GitHubUnavailable, github_errors
from bot.github.publish import (
    THROTTLED_TITLE,
    cancelled_check,
    fail_check,
    finish_check,
    neutral_check,
    post_review,
    react,
    start_check,
    superseded_check,
    throttled_summary,
)
from bot.github.pulls import (
    MAX_COMPARE_FILES,
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
from bot.jobs.worker import describe
from bot.metrics import Metrics
from bot.throttle import InstallationThrottle
from reviewer.diff import FileStatus, parse_patch
from reviewer.engine import Change, ChangedFile, review
from reviewer.files import FileKind, RepoConfig, classify
from reviewer.models import FileNote, Review

log = logging.getLogger("bot.jobs.pull_review")

MAX_WHOLE_FILES = 60  # files read whole at the head per review (the rest get the diff's lines only)
MAX_WHOLE_FILE_BYTES = 512 * 1024
FETCH_CONCURRENCY = 4
VERSION_CATALOG = "gradle/libs.versions.toml"
WHOLE = frozenset(
    {FileKind.KOTLIN, FileKind.KOTLIN_SCRIPT, FileKind.GRADLE_GROOVY, FileKind.GRADLE_KTS, FileKind.VERSION_CATALOG}
)
NO_PATCH = "GitHub gives no patch for it (a binary file, or a diff too large to show)"
UNCHANGED_SINCE = "not changed since the last review (comment `/review full` to review every file)"
CONFIG_INVALID = ".github/ai-review.yml on {branch} is invalid, so the defaults were used: {error}"
_STATUSES: dict[str, FileStatus] = {
    "added": "added",
    "removed": "removed",
    "modified": "modified",
    "renamed": "renamed",
    "copied": "copied",
}

Outcome = Literal["posted", "skipped", "throttled"]


@dataclass(slots=True)
class PullReviewer:
    """What the job needs, built once per worker: the App client (lazily: a worker without GitHub settings
    still runs chat jobs), the LLM (None: rules only, said by `mode_note`), the installation throttle, the
    metrics (outcomes, throttled reviews, the LLM's usage)."""

    github_factory: Callable[[], GitHubApp]
    throttle: InstallationThrottle
    llm: Any = None  # reviewer.engine.LLMReviewer
    options: LLMOptions | None = None
    mode_note: str = ""
    metrics: Metrics = field(default_factory=Metrics)
    _github: GitHubApp | None = field(default=None, init=False)

    def github(self) -> GitHubApp:
        if self._github is None:
            self._github = self.github_factory()
        return self._github

    async def aclose(self) -> None:
        if self._github is not None:
            await self._github.aclose()

    async def run(
        self,
        *,
        installation_id: int,
        owner: str,
        repo: str,
        number: int,
        trigger: str,
        head_sha: str | None = None,
        before_sha: str | None = None,
        full: bool = False,
        draft: bool = False,
        comment_id: int | None = None,
        commenter: str | None = None,
        trusted: bool = True,
        delivery: str | None = None,
    ) -> dict[str, Any]:
        # The PR is read again: its draft flag now is what counts. And what changed is counted from the last head
        # this App reviewed (read from GitHub), not from a push's `before`, which may never have been reviewed.
        del draft, before_sha
        trace = TRACE_ID.set(delivery or f"{owner}/{repo}#{number}")
        try:
            with github_errors():
                gh = await self.github().installation(installation_id)
                if comment_id is not None:
                    if not trusted and not (commenter and await can_write(gh, owner, repo, commenter)):
                        self.metrics.pull_review("skipped")
                        return _result("skipped", f"{commenter} may not write to {owner}/{repo}")
                    await react(gh, owner, repo, comment_id, "eyes")
                job = _Job(self, gh, owner, repo, number, trigger, head_sha, full, installation_id)
                try:
                    result = await job.run()
                except BaseException:
                    if comment_id is not None:
                        await _quietly(react(gh, owner, repo, comment_id, "confused"))
                    raise
                if comment_id is not None:
                    await react(gh, owner, repo, comment_id, "rocket" if result["outcome"] == "posted" else "confused")
                self.metrics.pull_review(result["outcome"])
                return result
        finally:
            TRACE_ID.reset(trace)


def _result(outcome: Outcome, reason: str = "", **details: Any) -> dict[str, Any]:
    if outcome != "posted":
        log.info("pull request review %s: %s", outcome, reason)
    return {"outcome": outcome, "reason": reason, **details}


async def _quietly(call: Awaitable[Any]) -> None:
    """A courtesy call (a reaction, closing a check run) while a failure is on its way up: its own failure is
    logged, never raised over the first one."""
    try:
        with github_errors():
            await call
    except GitHubError as exc:
        log.warning("could not tell GitHub about a failed review: %s", exc)


@dataclass(slots=True)
class _Job:  # one review, start to end
    parent: PullReviewer
    gh: GitHub[Any]
    owner: str
    repo: str
    number: int
    trigger: str
    head_sha: str | None
    full: bool
    installation_id: int

    async def run(self) -> dict[str, Any]:
        pr = await get_pull(self.gh, self.owner, self.repo, self.number)
        if pr.state != "open":
            return _result("skipped", f"pull request #{self.number} is {pr.state}")
        if self.head_sha is not None and pr.head_sha != self.head_sha:
            return _result("skipped", f"the head moved on to {pr.head_sha[:12]}: that push has its own review")
        config, config_error = await repo_config(self.gh, self.owner, self.repo, pr.default_branch)
        if not config.enabled:
            return _result("skipped", "`enabled: false` in .github/ai-review.yml")
        if pr.draft and not config.review_drafts and self.trigger != "comment":
            return _result("skipped", "a draft (set `review_drafts: true` to review drafts)")
        heads = await reviewed_heads(self.gh, self.owner, self.repo, self.number)
        if self.trigger != "comment" and pr.head_sha in heads:
            # A retried job whose review was posted, or an event for a head reviewed before: never twice.
            return _result("skipped", f"{pr.head_sha[:12]} was reviewed already")
        retry_at = await self.parent.throttle.take(self.installation_id)
        if retry_at is not None:
            self.parent.metrics.rejected("installation")
            await neutral_check(
                self.gh, self.owner, self.repo, pr.head_sha, title=THROTTLED_TITLE, summary=throttled_summary(retry_at)
            )
            return _result("throttled", f"INSTALLATION_RATE_LIMIT reached until {retry_at:%H:%M} UTC")
        app_id = self.parent.github().app_id
        check_id = await start_check(self.gh, self.owner, self.repo, pr.head_sha, app_id=app_id)
        try:
            return await self._review(pr, config, config_error, check_id, heads)
        except asyncio.CancelledError:
            # Superseded by a newer head, or out of time: say so rather than leave the run in progress.
            await _quietly(cancelled_check(self.gh, self.owner, self.repo, check_id))
            raise
        except BaseException as exc:
            # One line, no traceback: the check run is public to everyone who can read the PR.
            await _quietly(fail_check(self.gh, self.owner, self.repo, check_id, describe(exc)))
            raise

    async def _review(
        self, pr: PullRequest, config: RepoConfig, config_error: str | None, check_id: int, heads: list[str]
    ) -> dict[str, Any]:
        files = await list_files(self.gh, self.owner, self.repo, self.number)
        changed = await self._changed_since_review(pr, heads)
        change, notes = await self._change(pr, files, changed)
        result = await self._run_reviewer(change, config)
        result.notes[:0] = notes
        if config_error:
            result.notes.insert(
                0,
                FileNote(".github/ai-review.yml", CONFIG_INVALID.format(branch=pr.default_branch, error=config_error)),
            )
        latest = await get_pull(self.gh, self.owner, self.repo, self.number)
        if latest.head_sha != pr.head_sha:
            await superseded_check(self.gh, self.owner, self.repo, check_id, latest.head_sha)
            return _result("skipped", f"the head moved on to {latest.head_sha[:12]} during the review")
        # Read again now, not reused from the start of the job (reviewed_heads): a review posted meanwhile by
        # another job of this PR (a `/review` beside the automatic one) must not be repeated.
        posted_before = await earlier_fingerprints(self.gh, self.owner, self.repo, self.number)
        posted = await post_review(
            self.gh,
            self.owner,
            self.repo,
            self.number,
            commit_id=pr.head_sha,
            review=result,
            already_posted=posted_before,
        )
        conclusion = await finish_check(self.gh, self.owner, self.repo, check_id, result, fail_on=config.fail_on)
        return _result(
            "posted",
            head_sha=pr.head_sha,
            review_id=posted.review_id,
            inline=posted.inline,
            in_body=posted.moved_to_body,
            not_repeated=posted.skipped_already_posted,
            findings=len(result.findings),
            conclusion=conclusion,
        )

    async def _changed_since_review(self, pr: PullRequest, heads: list[str]) -> set[str] | None:
        """The paths changed since the last head this App reviewed, when only those are to be reviewed (a push,
        or `/review` without `full`); None: review every file (the first review, `/review full`, the same head
        asked again, or a history GitHub cannot compare, e.g. after a force-push)."""
        if self.trigger not in ("synchronize", "comment") or self.full:
            return None
        if not heads or heads[-1] == pr.head_sha:
            return None
        try:
            files = await compare_files(self.gh, self.owner, self.repo, heads[-1], pr.head_sha)
        except GitHubUnavailable:
            raise
        except GitHubError as exc:
            log.info("no compare of %s...%s (%s): reviewing every file", heads[-1][:12], pr.head_sha[:12], exc)
            return None
        if len(files) >= MAX_COMPARE_FILES:  # GitHub lists at most 300 files of a comparison: not all of them
            return None
        return {f.path for f in files}

    async def _change(
        self, pr: PullRequest, files: list[PullFile], changed: set[str] | None
    ) -> tuple[Change, list[FileNote]]:
        notes: list[FileNote] = []
        diffs = []
        for pull_file in files:
            if pull_file.status == "removed":
                continue
            if changed is not None and pull_file.path not in changed:
                notes.append(FileNote(pull_file.path, UNCHANGED_SINCE))
                continue
            if pull_file.patch is None:
                notes.append(FileNote(pull_file.path, NO_PATCH))
                continue
            status = _STATUSES.get(pull_file.status, "modified")
            diffs.append(
                parse_patch(pull_file.patch, path=pull_file.path, status=status, previous_path=pull_file.previous_path)
            )
        wanted = [d.path for d in diffs if classify(d.path)[0] in WHOLE][:MAX_WHOLE_FILES]
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def whole(path: str) -> bytes | None:
            """The file at the head, or None (then the rules and the LLM see the diff's lines only)."""
            try:
                async with gate:
                    data = await read_file(self.gh, self.owner, self.repo, path, pr.head_sha)
            except GitHubUnavailable:
                raise  # GitHub is down: the job is retried
            except GitHubError as exc:
                log.info("reviewing %s from its diff only: %s", path, exc)
                return None
            return data if data is not None and len(data) <= MAX_WHOLE_FILE_BYTES else None

        sources = dict(zip(wanted, await asyncio.gather(*(whole(path) for path in wanted)), strict=True))
        catalog = any(f.path == VERSION_CATALOG for f in files)
        if not catalog and any(classify(d.path)[0] in (FileKind.GRADLE_GROOVY, FileKind.GRADLE_KTS) for d in diffs):
            catalog = await read_file(self.gh, self.owner, self.repo, VERSION_CATALOG, pr.head_sha) is not None
        change = Change([ChangedFile(d, sources.get(d.path)) for d in diffs], has_version_catalog=catalog)
        return change, notes

    async def _run_reviewer(self, change: Change, config: RepoConfig) -> Review:
        parent = self.parent
        if parent.llm is None or parent.options is None:
            return await review(change, config, mode_note=parent.mode_note)
        options = parent.options
        result = await review(
            change, config, parent.llm, cache=options.cache, budget=options.budget, price=options.price
        )
        parent.metrics.llm_review(result)  # spent even if the head moves on and nothing is published
        return result


__all__ = ["PullReviewer"]
