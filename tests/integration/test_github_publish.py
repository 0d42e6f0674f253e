"""bot.github.publish against a respx-faked GitHub: the exact JSON of every check-run, review and reaction request.

Findings come from the real engine: the GalleryFragment diff of android/sunflower with its real new side, and
real smell files added as new files (a whole-file diff, as GitHub shows an added file).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import httpx
import pytest
import respx
from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from bot.github.publish import (
    ALREADY_POSTED_NOTE,
    CHECK_NAME,
    FAILED_TITLE,
    MAX_ANNOTATION_TITLE_CHARS,
    MAX_ANNOTATIONS_PER_REQUEST,
    MAX_BISECT_PROBES,
    MAX_INLINE_COMMENTS,
    NEUTRAL_TEXT,
    OVER_CAP_NOTE,
    OVER_CAP_REASON,
    REJECTED_NOTE,
    STARTED_SUMMARY,
    STARTED_TITLE,
    SUCCESS_TEXT,
    THROTTLED_TITLE,
    PostedReview,
    fail_check,
    finish_check,
    neutral_check,
    post_review,
    react,
    review_comment,
    start_check,
    throttled_summary,
)
from reviewer.diff import FileDiff, parse_diff
from reviewer.engine import Change, ChangedFile, review_change, whole_file_change
from reviewer.files import RepoConfig
from reviewer.models import Finding, Review, Severity
from reviewer.render import MAX_BODY_CHARS, comment_body, fingerprint_comment, review_body
from tests.conftest import FIXTURES

BASE = "https://ghe.test/api/v3"
OWNER, REPO, NUMBER = "acme", "app", 7
SHA = "cd57be5ad686aaad30b3e560d9cd858c952ff5bf"
CHECKS = f"/repos/{OWNER}/{REPO}/check-runs"
REVIEWS = f"/repos/{OWNER}/{REPO}/pulls/{NUMBER}/reviews"
SMELLS = FIXTURES / "kotlin" / "smells"
# What the engine writes in mode_note when every LLM call of a review failed (reviewer/engine.py); it also sets
# Review.llm_incomplete, which is what the conclusion reads.
LLM_FAILED_NOTE = (
    "The LLM part of this review failed (timeout); only the rules' findings are shown. This is not a clean pass."
)
# GitHub's answer to a review comment on a line outside the diff.
LINE_NOT_IN_DIFF = {
    "message": "Unprocessable Entity",
    "errors": ["Pull request review thread line must be part of the diff"],
    "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request",
    "status": "422",
}


def gallery_change() -> Change:
    """android/sunflower GalleryFragment.kt: the real diff and its real new side (same commit)."""
    (diff,) = parse_diff((FIXTURES / "diffs" / "android__sunflower__GalleryFragment.diff").read_bytes())
    source = (SMELLS / "collect_without_lifecycle__android__sunflower__GalleryFragment.kt").read_bytes()
    return Change([ChangedFile(diff, source)])


def added_smells(copies: int = 1) -> Change:
    """Every smell file (not the ok_ ones) added as a new file, in `copies` modules."""
    files: list[ChangedFile] = []
    for module in range(copies):
        for path in sorted(SMELLS.glob("*.kt")):
            if path.name.startswith("ok_"):
                continue
            smell, name = path.name.split("__")[0], path.name.rsplit("__", 1)[1]
            files += whole_file_change(
                f"feature{module}/src/main/java/com/example/{smell}/{name}", path.read_bytes()
            ).files
    return Change(files)


def review_of(change: Change, **config: Any) -> Review:
    return review_change(change, RepoConfig(max_comments=100, **config))


def diffs_of(change: Change) -> dict[str, FileDiff]:
    return {changed.diff.path: changed.diff for changed in change.files}


def sent(route: respx.Route) -> list[Any]:
    return [json.loads(call.request.content) for call in route.calls]


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def gh() -> AsyncIterator[GitHub[TokenAuthStrategy]]:
    async with GitHub(TokenAuthStrategy("ghs_test"), base_url=BASE, http_cache=False, auto_retry=False) as client:
        yield client


class FakeReviews:
    """GitHub's review endpoints: comments must be on the diff's lines, one PENDING review per user at a time."""

    def __init__(
        self, diffs: dict[str, FileDiff], *, refuse_all: bool = False, refuse_inline_reviews: bool = False
    ) -> None:
        self.diffs = diffs
        self.refuse_all = refuse_all  # e.g. a commit_id that is no longer part of the PR
        self.refuse_inline_reviews = refuse_inline_reviews  # comments accepted one by one, never together
        self.next_id = 100
        self.pending: int | None = None
        self.pending_bodies: list[dict[str, Any]] = []
        self.deleted: list[int] = []
        self.submitted: list[dict[str, Any]] = []
        self.requests = 0

    def _on_diff(self, comment: dict[str, Any]) -> bool:
        diff = self.diffs.get(comment["path"])
        if diff is None or comment.get("side") != "RIGHT":
            return False
        if "start_line" in comment:
            return comment.get("start_side") == "RIGHT" and diff.can_span(comment["start_line"], comment["line"])
        return diff.in_diff(comment["line"])

    def create(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = json.loads(request.content)
        if self.pending is not None:
            return httpx.Response(422, json={"message": "Unprocessable Entity", "errors": ["one pending review"]})
        if self.refuse_all or not all(self._on_diff(c) for c in body.get("comments", [])):
            return httpx.Response(422, json=LINE_NOT_IN_DIFF)
        if "event" in body and self.refuse_inline_reviews and body["comments"]:
            return httpx.Response(422, json={"message": "Unprocessable Entity", "errors": ["Something went wrong"]})
        self.next_id += 1
        if "event" in body:
            self.submitted.append(body)
            return httpx.Response(200, json={"id": self.next_id, "state": "COMMENTED", "commit_id": SHA})
        self.pending = self.next_id
        self.pending_bodies.append(body)
        return httpx.Response(200, json={"id": self.next_id, "state": "PENDING", "commit_id": SHA})

    def delete(self, request: httpx.Request, review_id: str) -> httpx.Response:
        self.requests += 1
        assert int(review_id) == self.pending, "only our own pending review is deleted"
        self.pending = None
        self.deleted.append(int(review_id))
        return httpx.Response(200, json={"id": int(review_id), "state": "PENDING"})

    def mount(self, api: respx.MockRouter, *, deletes: bool = True) -> None:
        api.post(REVIEWS).mock(side_effect=self.create)
        if deletes:
            api.delete(path__regex=rf"{REVIEWS}/(?P<review_id>\d+)$").mock(side_effect=self.delete)


# Check runs.


async def test_start_check_creates_an_in_progress_run(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    route = api.post(CHECKS).respond(201, json={"id": 42, "status": "in_progress"})

    assert await start_check(gh, OWNER, REPO, SHA, details_url="https://bot.example/jobs/1") == 42
    assert await start_check(gh, OWNER, REPO, SHA) == 42

    output = {"title": STARTED_TITLE, "summary": STARTED_SUMMARY}
    assert sent(route) == [
        {
            "name": CHECK_NAME,
            "head_sha": SHA,
            "status": "in_progress",
            "details_url": "https://bot.example/jobs/1",
            "output": output,
        },
        {"name": CHECK_NAME, "head_sha": SHA, "status": "in_progress", "output": output},
    ]


async def test_finish_check_success_one_request_with_the_annotation(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    review = review_of(gallery_change())
    (finding,) = review.findings
    assert (finding.severity, finding.line, finding.end_line) == (Severity.MAJOR, 66, 66)
    route = api.patch(f"{CHECKS}/42").respond(200, json={"id": 42})

    assert await finish_check(gh, OWNER, REPO, 42, review, fail_on=Severity.BLOCKER) == "success"

    (body,) = sent(route)
    summary = body["output"].pop("summary")
    assert body == {
        "status": "completed",
        "conclusion": "success",
        "output": {
            "title": "1 finding(s): 1 major",
            "annotations": [
                {
                    "path": "app/src/main/java/com/google/samples/apps/sunflower/GalleryFragment.kt",
                    "start_line": 66,
                    "end_line": 66,
                    "annotation_level": "warning",
                    "title": f"{finding.title} (collect-without-lifecycle)",
                    "message": f"{finding.message}\n\n{finding.rationale}",
                }
            ],
        },
    }
    assert summary.startswith(SUCCESS_TEXT.format(fail_on="blocker"))
    assert "| 🟠 major | 1 |" in summary
    assert f"> {review.mode_note}" in summary


async def test_finish_check_failure_at_or_above_fail_on(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    review = review_of(added_smells())
    route = api.patch(f"{CHECKS}/42").respond(200, json={"id": 42})

    assert await finish_check(gh, OWNER, REPO, 42, review, fail_on=Severity.MAJOR, title="Custom") == "failure"

    (body,) = sent(route)
    assert (body["conclusion"], body["output"]["title"]) == ("failure", "Custom")
    assert [a["annotation_level"] for a in body["output"]["annotations"]] == [
        "failure" if f.severity == Severity.MAJOR else "warning" for f in review.findings
    ]
    majors = review.counts()[Severity.MAJOR]
    assert body["output"]["summary"].startswith(f"{majors} finding(s) at or above `major`")


async def test_finish_check_batches_annotations_50_at_a_time(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    full = review_of(added_smells(copies=5))
    review = replace(full, findings=full.findings[:120])
    route = api.patch(f"{CHECKS}/42").respond(200, json={"id": 42})

    assert await finish_check(gh, OWNER, REPO, 42, review, fail_on=Severity.BLOCKER) == "success"

    bodies = sent(route)
    assert [len(b["output"]["annotations"]) for b in bodies] == [50, 50, 20]
    assert MAX_ANNOTATIONS_PER_REQUEST == 50
    # Earlier batches keep the run in progress; the last one completes it, so a completed run has them all.
    assert [("status" in b, "conclusion" in b) for b in bodies] == [(False, False), (False, False), (True, True)]
    assert all(b["output"].keys() == {"title", "summary", "annotations"} for b in bodies)
    assert len({(b["output"]["title"], b["output"]["summary"]) for b in bodies}) == 1
    annotations = [a for b in bodies for a in b["output"]["annotations"]]
    assert [(a["path"], a["start_line"], a["end_line"]) for a in annotations] == [
        (f.path, f.line, f.end_line) for f in review.findings
    ]
    assert any(a["end_line"] > a["start_line"] for a in annotations)
    assert not any("start_column" in a or "end_column" in a for a in annotations)
    assert all(len(a["title"]) <= MAX_ANNOTATION_TITLE_CHARS for a in annotations)


async def test_finish_check_without_findings_sends_one_completing_update(
    api: respx.MockRouter, gh: GitHub[Any]
) -> None:
    route = api.patch(f"{CHECKS}/42").respond(200, json={"id": 42})
    diff = (FIXTURES / "diffs" / "android__nowinandroid__ForYouViewModel.diff").read_bytes()
    review = review_of(Change([ChangedFile(d) for d in parse_diff(diff)]))
    assert review.findings == []

    assert await finish_check(gh, OWNER, REPO, 42, review, fail_on="never") == "success"

    (body,) = sent(route)
    assert body["output"]["title"] == "No findings"
    assert body["output"]["annotations"] == []


@pytest.mark.parametrize(
    ("fail_on", "mode_note", "neutral", "expected"),
    [
        (Severity.MINOR, "", False, "failure"),
        ("never", "", False, "success"),
        (Severity.BLOCKER, LLM_FAILED_NOTE, False, "neutral"),  # the LLM failed and the rules fail nothing
        (Severity.MAJOR, LLM_FAILED_NOTE, False, "failure"),  # what the rules found still fails the check
        (Severity.MAJOR, "", True, "neutral"),  # the caller's word wins
    ],
)
async def test_finish_check_conclusions(
    api: respx.MockRouter,
    gh: GitHub[Any],
    *,
    fail_on: Severity | Literal["never"],
    mode_note: str,
    neutral: bool,
    expected: str,
) -> None:
    review = replace(review_of(gallery_change()), mode_note=mode_note, llm_incomplete=bool(mode_note))
    route = api.patch(f"{CHECKS}/42").respond(200, json={"id": 42})

    conclusion = await finish_check(gh, OWNER, REPO, 42, review, fail_on=fail_on, neutral=neutral)

    (body,) = sent(route)
    assert conclusion == body["conclusion"] == expected
    if expected == "neutral":
        assert body["output"]["summary"].startswith(NEUTRAL_TEXT)


async def test_neutral_check_for_a_throttled_review(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    route = api.post(CHECKS).respond(201, json={"id": 43})
    retry_at = datetime(2030, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=2)))
    summary = throttled_summary(retry_at)

    assert await neutral_check(gh, OWNER, REPO, SHA, title=THROTTLED_TITLE, summary=summary) == 43

    assert sent(route) == [
        {
            "name": CHECK_NAME,
            "head_sha": SHA,
            "status": "completed",
            "conclusion": "neutral",
            "output": {"title": THROTTLED_TITLE, "summary": summary},
        }
    ]
    assert "2030-01-02 01:04 UTC" in summary
    assert "comment `/review` on the pull request" in summary
    assert throttled_summary(datetime(2030, 1, 2, 1, 4)) == summary  # naive = UTC
    assert throttled_summary(datetime(2030, 1, 2, 1, 4, tzinfo=UTC)) == summary


async def test_fail_check_is_neutral_and_says_why(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    route = api.patch(f"{CHECKS}/42").respond(200, json={"id": 42})

    await fail_check(gh, OWNER, REPO, 42, "GitHub answered 502 while reading the diff")

    (body,) = sent(route)
    summary = body["output"].pop("summary")
    assert body == {"status": "completed", "conclusion": "neutral", "output": {"title": FAILED_TITLE}}
    assert summary.startswith("The review job failed: GitHub answered 502 while reading the diff")
    assert "not of the code" in summary
    assert "`/review`" in summary


# The PR review.


async def test_post_review_payload_single_and_multi_line(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    change = Change([*gallery_change().files, *added_smells().files])
    review = review_of(change)
    single = next(f for f in review.findings if f.path.endswith("GalleryFragment.kt"))
    multi = next(f for f in review.findings if f.end_line > f.line)
    fake = FakeReviews(diffs_of(change))
    fake.mount(api, deletes=False)

    posted = await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=set())

    assert posted == PostedReview(101, inline=len(review.findings), moved_to_body=0, skipped_already_posted=0)
    (body,) = fake.submitted
    assert body["event"] == "COMMENT"
    assert body["commit_id"] == SHA
    assert body["body"] == review_body(review)
    assert len(body["comments"]) == len(review.findings) <= MAX_INLINE_COMMENTS
    assert {
        "path": single.path,
        "body": comment_body(single),
        "line": single.line,
        "side": "RIGHT",
    } in body["comments"]
    assert {
        "path": multi.path,
        "body": comment_body(multi),
        "line": multi.end_line,
        "side": "RIGHT",
        "start_line": multi.line,
        "start_side": "RIGHT",
    } in body["comments"]
    assert "```suggestion" in comment_body(multi)
    assert fake.deleted == []


async def test_inline_comments_are_capped_and_the_rest_listed_in_the_body(
    api: respx.MockRouter, gh: GitHub[Any]
) -> None:
    change = added_smells(copies=2)
    review = review_of(change)
    inline = [f for f in review.findings if f.placement == "inline"]
    assert len(inline) > MAX_INLINE_COMMENTS
    fake = FakeReviews(diffs_of(change))
    fake.mount(api, deletes=False)

    posted = await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=set())

    over = len(inline) - MAX_INLINE_COMMENTS
    assert posted == PostedReview(101, MAX_INLINE_COMMENTS, moved_to_body=over, skipped_already_posted=0)
    (body,) = fake.submitted
    assert [c["body"] for c in body["comments"]] == [comment_body(f) for f in inline[:MAX_INLINE_COMMENTS]]
    moved = [f.placed("body", OVER_CAP_REASON) for f in inline[MAX_INLINE_COMMENTS:]]
    expected = replace(review, findings=[*review.findings[:MAX_INLINE_COMMENTS], *moved])
    assert body["body"] == review_body(expected) + "\n\n" + OVER_CAP_NOTE.format(count=over, limit=MAX_INLINE_COMMENTS)
    for finding in moved:
        assert f"`{finding.path}:{finding.line}" in body["body"]


async def test_already_posted_findings_are_skipped_and_counted(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    change = added_smells()
    review = replace(review_of(change), llm_summary="LLM: 3 file(s), 4 hunk(s), 1,200 tokens")
    earlier = {review.findings[0].fingerprint, review.findings[3].fingerprint}
    fake = FakeReviews(diffs_of(change))
    fake.mount(api, deletes=False)

    posted = await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=earlier)

    assert posted == PostedReview(101, len(review.findings) - 2, moved_to_body=0, skipped_already_posted=2)
    (body,) = fake.submitted
    markers = [fingerprint_comment(f) for f in review.findings]
    assert [m for m in markers if any(m in c["body"] for c in body["comments"])] == [
        m for i, m in enumerate(markers) if i not in (0, 3)
    ]
    assert body["body"].endswith(f"{ALREADY_POSTED_NOTE.format(count=2)}\n\n{review.llm_summary}")


async def test_422_bisects_with_pending_reviews_and_moves_the_bad_comment(
    api: respx.MockRouter, gh: GitHub[Any]
) -> None:
    change = added_smells()
    review = review_of(change)
    assert len(review.findings) >= 20
    # A finding anchored on a line the PR's diff does not have (say, computed against an older push).
    stale = replace(review.findings[13], line=5000, end_line=5000)
    findings = [*review.findings[:13], stale, *review.findings[14:]]
    review = replace(review, findings=findings)
    fake = FakeReviews(diffs_of(change))
    fake.mount(api)

    posted = await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=set())

    n = len(findings)
    (body,) = fake.submitted
    assert [c["body"] for c in body["comments"]] == [comment_body(f) for f in findings if f is not stale]
    assert body["event"] == "COMMENT"
    assert f"`{stale.path}:5000` **{stale.title}**" in body["body"]
    assert REJECTED_NOTE.format(count=1) in body["body"]
    assert posted == PostedReview(posted.review_id, n - 1, moved_to_body=1, skipped_already_posted=0)
    # Every pending review was deleted, none carried an event or a body, and the probes stayed logarithmic.
    assert fake.pending is None
    assert len(fake.deleted) == len(fake.pending_bodies) > 0
    assert all(set(b) == {"commit_id", "comments"} for b in fake.pending_bodies)
    probes = fake.requests - len(fake.deleted) - 2  # minus the deletes, the first and the final review
    assert probes <= 2 * math.ceil(math.log2(n))
    assert fake.requests <= 2 + 3 * math.ceil(math.log2(n))


async def test_422_with_two_bad_comments(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    change = added_smells()
    review = review_of(change)
    bad = {2, 17}
    findings = [replace(f, line=9000 + i, end_line=9000 + i) if i in bad else f for i, f in enumerate(review.findings)]
    fake = FakeReviews(diffs_of(change))
    fake.mount(api)

    posted = await post_review(
        gh, OWNER, REPO, NUMBER, commit_id=SHA, review=replace(review, findings=findings), already_posted=set()
    )

    (body,) = fake.submitted
    assert [c["body"] for c in body["comments"]] == [comment_body(f) for i, f in enumerate(findings) if i not in bad]
    assert posted.moved_to_body == 2
    assert fake.pending is None
    assert fake.requests - 2 <= 2 * MAX_BISECT_PROBES


async def test_422_on_every_comment_is_bounded_and_still_posts_the_review(
    api: respx.MockRouter, gh: GitHub[Any]
) -> None:
    change = added_smells(copies=2)
    review = review_of(change)
    findings = [replace(f, line=9000 + i, end_line=9000 + i) for i, f in enumerate(review.findings)]
    fake = FakeReviews(diffs_of(change))
    fake.mount(api, deletes=False)  # no probe is accepted, so nothing is ever pending

    posted = await post_review(
        gh, OWNER, REPO, NUMBER, commit_id=SHA, review=replace(review, findings=findings), already_posted=set()
    )

    over = len(findings) - MAX_INLINE_COMMENTS
    assert posted == PostedReview(posted.review_id, 0, moved_to_body=len(findings), skipped_already_posted=0)
    assert fake.requests == 1 + MAX_BISECT_PROBES + 1
    (body,) = fake.submitted
    assert body["comments"] == []
    assert OVER_CAP_NOTE.format(count=over, limit=MAX_INLINE_COMMENTS) in body["body"]
    assert REJECTED_NOTE.format(count=MAX_INLINE_COMMENTS) in body["body"]


async def test_422_not_caused_by_comments_is_raised(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    change = gallery_change()
    fake = FakeReviews(diffs_of(change), refuse_all=True)
    fake.mount(api, deletes=False)
    review = review_of(change)

    with pytest.raises(RequestFailed) as raised:
        await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=set())

    assert raised.value.response.status_code == 422
    assert fake.requests == 2  # the review with its one comment, then the same review without it
    assert fake.submitted == []


async def test_comments_refused_together_are_moved_to_the_body(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    change = added_smells()
    review = review_of(change)
    fake = FakeReviews(diffs_of(change), refuse_inline_reviews=True)
    fake.mount(api)

    posted = await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=set())

    n = len(review.findings)
    assert posted == PostedReview(posted.review_id, 0, moved_to_body=n, skipped_already_posted=0)
    (body,) = fake.submitted
    assert body["comments"] == []
    assert REJECTED_NOTE.format(count=n) in body["body"]
    assert fake.pending is None


async def test_other_errors_are_not_bisected(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    route = api.post(REVIEWS).respond(502, json={"message": "Bad gateway"})

    with pytest.raises(RequestFailed):
        await post_review(
            gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review_of(gallery_change()), already_posted=set()
        )

    assert route.call_count == 1


async def test_bodies_stay_under_githubs_limit(api: respx.MockRouter, gh: GitHub[Any]) -> None:
    change = gallery_change()
    review = review_of(change)
    (finding,) = review.findings
    huge: Finding = replace(finding, message="x" * 70_000)
    review = replace(review, findings=[huge], mode_note="y" * 70_000)
    fake = FakeReviews(diffs_of(change))
    fake.mount(api, deletes=False)

    await post_review(gh, OWNER, REPO, NUMBER, commit_id=SHA, review=review, already_posted=set())

    (body,) = fake.submitted
    assert len(body["body"]) <= MAX_BODY_CHARS
    (comment,) = body["comments"]
    assert comment == review_comment(huge)
    assert len(comment["body"]) <= MAX_BODY_CHARS
    assert comment["body"].endswith(fingerprint_comment(huge))


# Reactions.


@pytest.mark.parametrize("content", ["eyes", "rocket", "confused"])
async def test_react_on_an_issue_comment(
    api: respx.MockRouter, gh: GitHub[Any], content: Literal["eyes", "rocket", "confused"]
) -> None:
    route = api.post(f"/repos/{OWNER}/{REPO}/issues/comments/991/reactions").respond(201, json={"id": 1})

    await react(gh, OWNER, REPO, 991, content)

    assert sent(route) == [{"content": content}]
