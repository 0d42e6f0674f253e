"""Publish a review on GitHub: the check run, one PR review with inline comments, reactions.

Every function takes `gh`, an installation-scoped githubkit client (authenticated, retry policy set by the
caller), and reads responses with `.json()` (githubkit's strict models reject some real payloads).

Check run conclusions, one meaning each:
- `success`: no finding at or above the repository's `fail_on`.
- `failure`: at least one finding at or above `fail_on`. Only the code under review fails a check.
- `neutral`: no verdict. The review was throttled (`neutral_check`), the LLM could not review all of it
  (`Review.llm_incomplete`) and the rules found nothing at or above `fail_on`, the caller asked for it, or
  the review job itself failed (`fail_check`). A GitHub or internal error is not the code's fault, so it must
  not block a merge the way `failure` does; the title "Review failed" and the summary say what went wrong and
  how to retry.

A PR review is posted once per job. When GitHub answers 422 for it, the comments it rejects are found by
bisection with PENDING reviews (a pending review is invisible to the PR's readers and is deleted right after
each probe), then the review is posted once with the accepted comments and the rejected ones listed in its
body. One bad comment never fails the job.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from githubkit.exception import RequestFailed
from githubkit.utils import UNSET

from reviewer.models import Finding, Review, Severity
from reviewer.render import MAX_BODY_CHARS, SEVERITY_ICON, comment_body, fingerprint_comment, review_body, truncate

if TYPE_CHECKING:
    from githubkit import GitHub
    from githubkit_schemas.latest.types import (
        ReposOwnerRepoCheckRunsCheckRunIdPatchBodyPropOutputPropAnnotationsItemsType as Annotation,
    )
    from githubkit_schemas.latest.types import (
        ReposOwnerRepoPullsPullNumberReviewsPostBodyPropCommentsItemsType as ReviewComment,
    )

log = logging.getLogger("bot.github")

CHECK_NAME = "AI Dev Companion"
# GitHub takes at most 50 annotations per check-run request; more go in further updates (it appends them).
MAX_ANNOTATIONS_PER_REQUEST = 50
# Inline comments in one review at most; the rest are listed in the review body.
MAX_INLINE_COMMENTS = 30
# PENDING-review probes after a 422 at most (each one request, two when accepted): enough to isolate two
# rejected comments among MAX_INLINE_COMMENTS (two probes a halving at worst). Comments left unchecked go to the body.
MAX_BISECT_PROBES = 4 * math.ceil(math.log2(MAX_INLINE_COMMENTS))
# GitHub's limits on an annotation's title and message (the message limit is 64 KB; keep clear of it).
MAX_ANNOTATION_TITLE_CHARS = 255
MAX_ANNOTATION_MESSAGE_CHARS = 16_000
# The engine says this in Review.mode_note when the LLM part failed as a whole.

Conclusion = Literal["success", "failure", "neutral"]
AnnotationLevel = Literal["notice", "warning", "failure"]

STARTED_TITLE = "Reviewing"
STARTED_SUMMARY = "The review of this commit is running; the result will appear here."
NO_FINDINGS_TITLE = "No findings"
FINDINGS_TITLE = "{count} finding(s): {counts}"
SUCCESS_TEXT = "No finding at or above `{fail_on}` (the `fail_on` of `.github/ai-review.yml`)."
SUCCESS_NEVER_TEXT = "`fail_on: never` in `.github/ai-review.yml`: findings never fail this check."
FAILURE_TEXT = "{count} finding(s) at or above `{fail_on}` (the `fail_on` of `.github/ai-review.yml`)."
NEUTRAL_TEXT = "No verdict: this review is incomplete, so the check neither passes nor fails."
FAILED_TITLE = "Review failed"
FAILED_SUMMARY = (
    "The review job failed: {message}\n\n"
    "This is an error of the reviewer (GitHub or internal), not of the code, so the check is neutral and "
    "does not block merging. Comment `/review` on the pull request to try again."
)
CANCELLED_TITLE = "Review cancelled"
CANCELLED_SUMMARY = (
    "This review was stopped before it was published: a newer push replaced it, or it ran out of time "
    "(JOB_TIMEOUT_SECONDS). Comment `/review` on the pull request to review the current head."
)
SUPERSEDED_TITLE = "Superseded by a newer commit"
SUPERSEDED_SUMMARY = (
    "The pull request moved on to {head} while this commit was being reviewed, so nothing was posted for it: "
    "the newer commit has its own review."
)
THROTTLED_TITLE = "Review postponed (rate limit)"
THROTTLED_SUMMARY = (
    "This installation has reached its limit of automatic reviews. The next review is possible at "
    "{when} UTC; comment `/review` on the pull request then to start one."
)
ALREADY_POSTED_NOTE = "{count} finding(s) already commented on earlier are not repeated."
OVER_CAP_NOTE = "{count} finding(s) over the limit of {limit} inline comments per review are listed in this body."
REJECTED_NOTE = "{count} finding(s) that GitHub did not accept as inline comments are listed in this body."
OVER_CAP_REASON = f"over the limit of {MAX_INLINE_COMMENTS} inline comments per review"
REJECTED_REASON = "GitHub did not accept it as an inline comment"
UNCHECKED_REASON = "GitHub rejected part of the review and this comment could not be checked in time"


@dataclass(frozen=True, slots=True)
class PostedReview:
    review_id: int
    inline: int
    # Over the inline cap, or rejected by GitHub: listed in the review body instead.
    moved_to_body: int
    skipped_already_posted: int


# Check runs.


async def start_check(
    gh: GitHub[Any],
    owner: str,
    repo: str,
    head_sha: str,
    *,
    app_id: int | None = None,
    details_url: str | None = None,
) -> int:
    """An `in_progress` check run on head_sha; returns its id. With `app_id`, this App's run that is still in
    progress on the commit is taken over instead of adding a second one: a job run again after its worker died
    finishes the run the dead worker started."""
    if app_id is not None:
        found = await gh.rest.checks.async_list_for_ref(
            owner, repo, head_sha, check_name=CHECK_NAME, status="in_progress", app_id=app_id, per_page=1
        )
        runs = found.json().get("check_runs") or []
        if runs:
            return int(runs[0]["id"])
    response = await gh.rest.checks.async_create(
        owner,
        repo,
        name=CHECK_NAME,
        head_sha=head_sha,
        status="in_progress",
        details_url=UNSET if details_url is None else details_url,
        output={"title": STARTED_TITLE, "summary": STARTED_SUMMARY},
    )
    return response.json()["id"]


def conclusion_for(review: Review, fail_on: Severity | Literal["never"], *, neutral: bool = False) -> Conclusion:
    """`failure` beats `neutral` beats `success`, except that `neutral=True` (the caller's word) wins."""
    if neutral:
        return "neutral"
    if fail_on != "never" and review.fails(fail_on):
        return "failure"
    if review.llm_incomplete:
        return "neutral"
    return "success"


def annotation_level(severity: Severity, fail_on: Severity | Literal["never"]) -> AnnotationLevel:
    """`failure` for findings that fail the check, `warning` for other blocker to minor ones, `notice` for nits."""
    if fail_on != "never" and severity.at_least(fail_on):
        return "failure"
    return "notice" if severity == Severity.NIT else "warning"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def annotation(finding: Finding, fail_on: Severity | Literal["never"]) -> Annotation:
    message = finding.message + (f"\n\n{finding.rationale}" if finding.rationale else "")
    return {
        "path": finding.path,
        "start_line": finding.line,
        "end_line": finding.end_line,
        "annotation_level": annotation_level(finding.severity, fail_on),
        "title": _clip(f"{finding.title} ({finding.rule_id})", MAX_ANNOTATION_TITLE_CHARS),
        "message": _clip(message, MAX_ANNOTATION_MESSAGE_CHARS),
    }


def check_title(review: Review) -> str:
    if not review.findings:
        return NO_FINDINGS_TITLE
    counts = review.counts()
    listed = ", ".join(f"{counts[s]} {s.value}" for s in Severity if counts[s])
    return FINDINGS_TITLE.format(count=len(review.findings), counts=listed)


def check_summary(review: Review, conclusion: Conclusion, fail_on: Severity | Literal["never"]) -> str:
    if conclusion == "neutral":
        verdict = NEUTRAL_TEXT
    elif conclusion == "failure":
        failing = sum(1 for f in review.findings if fail_on != "never" and f.severity.at_least(fail_on))
        verdict = FAILURE_TEXT.format(count=failing, fail_on=fail_on)
    else:
        verdict = SUCCESS_NEVER_TEXT if fail_on == "never" else SUCCESS_TEXT.format(fail_on=fail_on)
    lines = [verdict, ""]
    if review.mode_note:
        lines += [f"> {review.mode_note}", ""]
    counts = review.counts()
    lines += ["| severity | findings |", "|---|---|"]
    lines += [f"| {SEVERITY_ICON[s]} {s.value} | {counts[s]} |" for s in Severity]
    lines += ["", f"Reviewed {review.files_reviewed} file(s), {review.lines_reviewed} line(s)."]
    if review.omitted:
        lines.append(f"{review.omitted} more finding(s) were not listed (limit reached).")
    if review.notes:
        lines.append(f"{len(review.notes)} file(s) not reviewed or reviewed in part (see the PR review).")
    if review.llm_summary:
        lines += ["", review.llm_summary]
    return truncate("\n".join(lines))


async def finish_check(
    gh: GitHub[Any],
    owner: str,
    repo: str,
    check_id: int,
    review: Review,
    *,
    fail_on: Severity | Literal["never"],
    title: str | None = None,
    neutral: bool = False,
) -> Conclusion:
    """Complete the check run with the review's conclusion and one annotation a finding; returns the conclusion.

    Annotations go 50 a request. The batches before the last are sent with the run still in progress and the
    last one with the completing update, so a completed run always has all of its annotations (a failure
    half-way leaves it in progress, for `fail_check`).
    """
    conclusion = conclusion_for(review, fail_on, neutral=neutral)
    output_title = title or check_title(review)
    summary = check_summary(review, conclusion, fail_on)
    annotations = [annotation(f, fail_on) for f in review.findings]
    batches = [
        annotations[start : start + MAX_ANNOTATIONS_PER_REQUEST]
        for start in range(0, len(annotations), MAX_ANNOTATIONS_PER_REQUEST)
    ] or [[]]
    for batch in batches[:-1]:
        await gh.rest.checks.async_update(
            owner, repo, check_id, output={"title": output_title, "summary": summary, "annotations": batch}
        )
    await gh.rest.checks.async_update(
        owner,
        repo,
        check_id,
        status="completed",
        conclusion=conclusion,
        output={"title": output_title, "summary": summary, "annotations": batches[-1]},
    )
    return conclusion


async def neutral_check(gh: GitHub[Any], owner: str, repo: str, head_sha: str, *, title: str, summary: str) -> int:
    """A check run created completed and neutral (e.g. a throttled review); returns its id."""
    response = await gh.rest.checks.async_create(
        owner,
        repo,
        name=CHECK_NAME,
        head_sha=head_sha,
        status="completed",
        conclusion="neutral",
        output={"title": title, "summary": truncate(summary)},
    )
    return response.json()["id"]


def throttled_summary(retry_at: datetime) -> str:
    """For `neutral_check(title=THROTTLED_TITLE, ...)`: when (UTC; naive = UTC) and how to start the next review."""
    when = retry_at.astimezone(UTC) if retry_at.tzinfo else retry_at
    return THROTTLED_SUMMARY.format(when=when.strftime("%Y-%m-%d %H:%M"))


async def _complete_neutral(gh: GitHub[Any], owner: str, repo: str, check_id: int, *, title: str, summary: str) -> None:
    await gh.rest.checks.async_update(
        owner,
        repo,
        check_id,
        status="completed",
        conclusion="neutral",
        output={"title": title, "summary": truncate(summary)},
    )


async def fail_check(gh: GitHub[Any], owner: str, repo: str, check_id: int, message: str) -> None:
    """Complete the check run as `neutral`, "Review failed": the job failed, not the code (module docstring)."""
    await _complete_neutral(
        gh, owner, repo, check_id, title=FAILED_TITLE, summary=FAILED_SUMMARY.format(message=message)
    )


async def superseded_check(gh: GitHub[Any], owner: str, repo: str, check_id: int, new_head: str) -> None:
    """Complete the check run as `neutral`: the head moved on during the review and nothing was published."""
    await _complete_neutral(
        gh, owner, repo, check_id, title=SUPERSEDED_TITLE, summary=SUPERSEDED_SUMMARY.format(head=new_head[:12])
    )


async def cancelled_check(gh: GitHub[Any], owner: str, repo: str, check_id: int) -> None:
    """Complete the check run as `neutral`: the job was cancelled (superseded by a newer head, or timed out)."""
    await _complete_neutral(gh, owner, repo, check_id, title=CANCELLED_TITLE, summary=CANCELLED_SUMMARY)


# The PR review.


def review_comment(finding: Finding) -> ReviewComment:
    """One inline comment on the new side: `line`, and `start_line` too when the finding spans lines."""
    body = comment_body(finding)
    if len(body) > MAX_BODY_CHARS:  # cut the text, keep the fingerprint that makes re-runs idempotent
        marker = fingerprint_comment(finding)
        body = truncate(body, MAX_BODY_CHARS - len(marker) - 2) + "\n\n" + marker
    comment: ReviewComment = {"path": finding.path, "body": body, "line": finding.end_line, "side": "RIGHT"}
    if finding.end_line > finding.line:
        comment["start_line"] = finding.line
        comment["start_side"] = "RIGHT"
    return comment


@dataclass(frozen=True, slots=True)
class _Pull:
    gh: GitHub[Any]
    owner: str
    repo: str
    number: int
    commit_id: str

    async def submit(self, body: str, comments: list[ReviewComment]) -> int:
        response = await self.gh.rest.pulls.async_create_review(
            self.owner, self.repo, self.number, commit_id=self.commit_id, body=body, event="COMMENT", comments=comments
        )
        return response.json()["id"]

    async def accepts(self, comments: list[ReviewComment]) -> bool:
        """Whether GitHub takes these comments: a PENDING review (no `event`), deleted at once."""
        try:
            response = await self.gh.rest.pulls.async_create_review(
                self.owner, self.repo, self.number, commit_id=self.commit_id, comments=comments
            )
        except RequestFailed as exc:
            if exc.response.status_code == 422:
                return False
            raise
        await self.gh.rest.pulls.async_delete_pending_review(self.owner, self.repo, self.number, response.json()["id"])
        return True


async def _find_rejected(pull: _Pull, comments: list[ReviewComment]) -> dict[int, str]:
    """Positions of the comments to move to the body (GitHub rejects them, or MAX_BISECT_PROBES ran out first).

    The whole list is known to be rejected. A rejected group is halved and its first half probed: accepted means
    the second half holds the culprit (no probe needed); rejected means the second half is unknown and is probed
    on its own. One rejected comment among n costs at most 2·log2(n) probes, each one or two requests.
    """
    moved: dict[int, str] = {}
    # (positions, known to hold a rejected comment)
    stack: list[tuple[list[int], bool]] = [(list(range(len(comments))), True)]
    probes = 0
    while stack:
        group, known_bad = stack.pop()
        if known_bad and len(group) == 1:
            moved[group[0]] = REJECTED_REASON
        elif probes >= MAX_BISECT_PROBES:
            moved.update(dict.fromkeys(group, UNCHECKED_REASON))
        elif not known_bad:
            probes += 1
            if not await pull.accepts([comments[i] for i in group]):
                stack.append((group, True))
        else:
            probes += 1
            first, second = group[: len(group) // 2], group[len(group) // 2 :]
            if await pull.accepts([comments[i] for i in first]):
                stack.append((second, True))
            else:
                stack += [(second, False), (first, True)]
    log.info("review comments checked with %d probe(s): %d moved to the body", probes, len(moved))
    return moved


@dataclass(slots=True)
class _Plan:
    """The review to post: findings as placed, which of them go inline (indices), and the body's notes."""

    review: Review
    findings: list[Finding]
    inline: list[int]
    comments: list[ReviewComment]
    skipped: int
    over_cap: int

    async def post(self, pull: _Pull, moved: dict[int, str]) -> PostedReview:
        """Post with the comments at the `moved` positions listed in the body instead (with their reason)."""
        findings = list(self.findings)
        for position, reason in moved.items():
            findings[self.inline[position]] = findings[self.inline[position]].placed("body", reason)
        notes = [ALREADY_POSTED_NOTE.format(count=self.skipped)] if self.skipped else []
        if self.over_cap:
            notes.append(OVER_CAP_NOTE.format(count=self.over_cap, limit=MAX_INLINE_COMMENTS))
        if moved:
            notes.append(REJECTED_NOTE.format(count=len(moved)))
        notes += [self.review.llm_summary] if self.review.llm_summary else []  # the usage line stays last
        body = truncate("\n\n".join([review_body(replace(self.review, findings=findings, llm_summary="")), *notes]))
        kept = [comment for position, comment in enumerate(self.comments) if position not in moved]
        review_id = await pull.submit(body, kept)
        return PostedReview(review_id, len(kept), self.over_cap + len(moved), self.skipped)


def _plan(review: Review, already_posted: set[str]) -> _Plan:
    plan = _Plan(review, list(review.findings), [], [], 0, 0)
    for index, finding in enumerate(review.findings):
        if finding.placement != "inline":
            continue
        if finding.fingerprint in already_posted:
            plan.skipped += 1
        elif len(plan.inline) >= MAX_INLINE_COMMENTS:
            plan.findings[index] = finding.placed("body", OVER_CAP_REASON)
            plan.over_cap += 1
        else:
            plan.inline.append(index)
            plan.comments.append(review_comment(finding))
    return plan


async def post_review(
    gh: GitHub[Any],
    owner: str,
    repo: str,
    number: int,
    *,
    commit_id: str,
    review: Review,
    already_posted: set[str],
) -> PostedReview:
    """One COMMENT review on commit_id: the summary body and up to MAX_INLINE_COMMENTS inline comments.

    Inline findings whose fingerprint is in already_posted are skipped (counted in the body); those over the
    cap, and those GitHub rejects (422), are listed in the body. Should the accepted comments still be refused
    together, the review is posted with none. A 422 with no comment left to move is raised (RequestFailed).
    """
    pull = _Pull(gh, owner, repo, number, commit_id)
    plan = _plan(review, already_posted)
    try:
        return await plan.post(pull, {})
    except RequestFailed as exc:
        if exc.response.status_code != 422 or not plan.comments:
            raise
        log.warning("GitHub answered 422 to the review of %s/%s#%d; checking its comments", owner, repo, number)
    moved = await _find_rejected(pull, plan.comments)
    try:
        return await plan.post(pull, moved)
    except RequestFailed as exc:
        if exc.response.status_code != 422 or len(moved) == len(plan.comments):
            raise
        log.warning("GitHub answered 422 to the checked comments together; posting the review without them")
    return await plan.post(pull, {p: moved.get(p, UNCHECKED_REASON) for p in range(len(plan.comments))})


# Reactions.


async def react(
    gh: GitHub[Any], owner: str, repo: str, comment_id: int, content: Literal["eyes", "rocket", "confused"]
) -> None:
    """A reaction on an issue (PR conversation) comment, e.g. `eyes` when a `/review` is queued."""
    await gh.rest.reactions.async_create_for_issue_comment(owner, repo, comment_id, content=content)
