"""The GitHub App as an operator runs it: `python -m bot serve` as a real process (embedded SQLite queue, its
in-process workers), GitHub played by the strict fake served on 127.0.0.1 (tests/fakes/github_server.py) and the
LLM by the fake OpenAI server (tests/fakes/openai_server.py). Signed deliveries go in over HTTP; what arrives at
the fake GitHub is checked: the review (rules and crew), the check run, the reactions to `/review`, and every
API call the App made. Real diff and real Kotlin: android/sunflower's GalleryFragment.kt (tests/fixtures).

Every wait is bounded. The first review imports CrewAI in the served process (a few seconds), hence WITHIN.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.api.webhooks import WEBHOOK_PATH, signature
from bot.github.publish import ALREADY_POSTED_NOTE, CHECK_NAME
from bot.settings import DEFAULT_PRICES
from reviewer.crew import LEAD_ROLE, REVIEWER_ROLE, Usage
from reviewer.engine import Price, usage_line
from reviewer.proposals import CREW_RULE_ID
from tests.conftest import FIXTURES
from tests.e2e.conftest import ROOT, clean_environ, free_port
from tests.fakes.github import FakeGitHub
from tests.fakes.github_server import FakeGitHubServer, serve_fake_github
from tests.fakes.lead_prompt import shown_proposals, verdicts
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.integration.test_pull_review import (
    BASE_SHA,
    CONFIG,
    GALLERY,
    GALLERY_DIFF,
    GALLERY_SOURCE,
    HEAD,
    INSTALLATION,
    NUMBER,
    OWNER,
    REPO,
    RULE_LINE,
    github_files,
    pull_request_event,
)

pytestmark = pytest.mark.slow

APP_ID = 4242
SECRET = "whsec-e2e-github-app-5Kp9"
OPENAI_KEY = "sk-e2e-github-app-Zr7Tn2"
MODEL = "gpt-4o-mini"
RULE_ID = "collect-without-lifecycle"
CREW_LINE = 65  # `searchJob = lifecycleScope.launch {`, an added line the fake reviewer quotes
CREW_FIX = "        searchJob = viewLifecycleOwner.lifecycleScope.launch {"
OPENED, COMMAND = "delivery-e2e-opened", "delivery-e2e-review"
STARTUP = 30.0  # seconds for `serve` to answer /readyz
WITHIN = 45.0  # seconds for one review to arrive (the first one imports CrewAI in the served process)
STOP_WITHIN = 20.0  # seconds for `serve` to exit after SIGTERM
NO_PROXY = "127.0.0.1,localhost"

REPO_PATH = f"/repos/{OWNER}/{REPO}"
PULL_PATH = f"{REPO_PATH}/pulls/{NUMBER}"
# Every call the App may make here, by kind: (method, path relative to the API's base URL).
CALLS = {
    "installation token": ("POST", rf"/app/installations/{INSTALLATION}/access_tokens"),
    "pull request": ("GET", PULL_PATH),
    "repository config": ("GET", rf"{REPO_PATH}/contents/{re.escape(CONFIG)}"),
    "check runs in progress": ("GET", rf"{REPO_PATH}/commits/[0-9a-f]{{40}}/check-runs"),
    "check run created": ("POST", rf"{REPO_PATH}/check-runs"),
    "check run updated": ("PATCH", rf"{REPO_PATH}/check-runs/\d+"),
    "changed files": ("GET", rf"{PULL_PATH}/files"),
    "whole file": ("GET", rf"{REPO_PATH}/contents/{re.escape(GALLERY)}"),
    "earlier reviews": ("GET", rf"{PULL_PATH}/reviews"),
    "earlier comments": ("GET", rf"{PULL_PATH}/comments"),
    "review posted": ("POST", rf"{PULL_PATH}/reviews"),
    "reaction": ("POST", rf"{REPO_PATH}/issues/comments/(?P<comment>\d+)/reactions"),
}
REVIEW_CALLS = set(CALLS) - {"installation token", "reaction"}  # what every review job makes


def key_pair() -> tuple[str, str]:
    """The App's private key (PEM, for GITHUB_PRIVATE_KEY) and its public key (for the fake to verify JWTs)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


# The LLM: the crew's two agents as the fake OpenAI server's responder.


def crew_proposal() -> dict[str, Any]:
    """The reviewer's finding, in the shape of reviewer.proposals.Proposal, quoting line CREW_LINE exactly."""
    quote = GALLERY_SOURCE.read_text(encoding="utf-8").splitlines()[CREW_LINE - 1].strip()
    return {
        "path": GALLERY,
        "line": CREW_LINE,
        "end_line": CREW_LINE,
        "quote": quote,
        "severity": "major",
        "category": "lifecycle",
        "title": "Collection outlives the view",
        "body": "The job is tied to the fragment, not to its view; launch it in viewLifecycleOwner.lifecycleScope.",
        "suggestion": CREW_FIX,
        "confidence": 0.8,
    }


class Crew:
    """Answers a call whose system prompt names REVIEWER_ROLE with crew_proposal() (for a chunk that shows
    GalleryFragment.kt), one that names LEAD_ROLE by keeping every proposal shown; records who was called."""

    def __init__(self) -> None:
        self.roles: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        prompt = "\n".join(m["content"] for m in messages if m["role"] == "user")
        if REVIEWER_ROLE in system and LEAD_ROLE not in system:
            role, answer = "reviewer", {"findings": [crew_proposal()] if GALLERY in prompt else []}
        elif LEAD_ROLE in system and REVIEWER_ROLE not in system:
            role, answer = "lead", verdicts(shown_proposals(prompt))
        else:
            raise AssertionError(f"a call from neither agent: {system[:120]!r}")
        with self._lock:
            self.roles.append(role)
        return Reply.json(answer)


# The served bot.


@contextmanager
def serve_bot(env: dict[str, str], cwd: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`python -m bot serve` on a free loopback port, its output in `log` (a file: a pipe nobody reads could
    fill up and stall the server); yields its base URL once /readyz answers 200. Killed if still running."""
    port = free_port()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            assert process.poll() is None, f"serve exited early ({process.returncode}):\n{tail(log)}"
            try:
                if httpx.get(f"{base}/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve was not ready within {STARTUP} s:\n{tail(log)}"
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_WITHIN)


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def bot_environ(tmp_path: Path, github: FakeGitHubServer, llm: FakeOpenAI, private_key: str) -> dict[str, str]:
    """The settings of a deployed App, pointed at the fakes; HOME, XDG dirs and the temp dir in tmp_path (CrewAI
    writes there at import and at every kickoff); no REDIS_URL (CrewAI puts its locks in Redis if it is set)."""
    sandbox = {name: tmp_path / name.lower() for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "TMPDIR")}
    for path in sandbox.values():
        path.mkdir()
    env = clean_environ(
        QUEUE_URL=f"sqlite:///{tmp_path}/jobs.sqlite3",
        GITHUB_APP_ID=str(APP_ID),
        GITHUB_PRIVATE_KEY=private_key,
        GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_API_URL=github.base_url,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=llm.base_url,
        MODEL=MODEL,
        LLM_TIMEOUT_SECONDS="20",
        CREWAI_STORAGE_DIR="e2e-github-app",
        **{name: str(path) for name, path in sandbox.items()},
    )
    env.pop("REDIS_URL", None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):  # everything stays on 127.0.0.1
        env.pop(name, None)
        env.pop(name.lower(), None)
    env.update(NO_PROXY=NO_PROXY, no_proxy=NO_PROXY)
    return env


# The deliveries.


def deliver(client: httpx.Client, event: str, payload: dict[str, Any], delivery_id: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": signature(SECRET.encode(), body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/e2e",
    }
    return client.post(WEBHOOK_PATH, content=body, headers=headers)


def review_command_event() -> dict[str, Any]:
    """GitHub's example issue_comment payload (on a plain issue), made a `/review` by the owner on the fake's PR:
    `issue.pull_request` is what GitHub adds when the issue is a pull request."""
    payload: dict[str, Any] = json.loads((FIXTURES / "webhooks" / "issue_comment.created.json").read_text())
    pr_url = f"https://api.github.com/repos/{OWNER}/{REPO}/pulls/{NUMBER}"
    payload["issue"].update(number=NUMBER, state="open")
    payload["issue"]["pull_request"] = {
        "url": pr_url,
        "html_url": f"https://github.com/{OWNER}/{REPO}/pull/{NUMBER}",
        "diff_url": f"https://github.com/{OWNER}/{REPO}/pull/{NUMBER}.diff",
        "patch_url": f"https://github.com/{OWNER}/{REPO}/pull/{NUMBER}.patch",
        "merged_at": None,
    }
    payload["comment"].update(body="/review", author_association="OWNER")
    payload["repository"].update(name=REPO, full_name=f"{OWNER}/{REPO}")
    payload["repository"]["owner"]["login"] = OWNER
    payload["installation"] = {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    return payload


# What arrived at the fake GitHub.


def reviews(fake: FakeGitHub) -> list[dict[str, Any]]:
    posted = fake.reviews.get((OWNER, REPO, NUMBER), [])
    return [{**r, "comments": list(r["comments"])} for r in posted if r["state"] != "PENDING"]


def check_runs(fake: FakeGitHub) -> list[dict[str, Any]]:
    return [{**run, "output": dict(run["output"])} for run in fake.check_runs.values()]


def reactions(comment_id: int) -> Callable[[FakeGitHub], list[str]]:
    return lambda fake: [content for _, on, content in fake.reactions if on == comment_id]


def wait_for(
    github: FakeGitHubServer, done: Callable[[FakeGitHub], bool], what: str, process: subprocess.Popen[str], log: Path
) -> None:
    deadline = time.monotonic() + WITHIN
    while not github.read(done):
        assert process.poll() is None, f"serve exited ({process.returncode}) while waiting for {what}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {what} within {WITHIN} s:\n{tail(log)}"
        time.sleep(0.1)


def kind_of(method: str, path: str) -> str:
    kinds = [kind for kind, (m, pattern) in CALLS.items() if m == method and re.fullmatch(pattern, path)]
    assert len(kinds) == 1, f"an unexpected call to GitHub: {method} {path}"
    return kinds[0]


def test_deliveries_to_the_served_app_become_a_review_a_check_run_and_reactions(tmp_path: Path) -> None:
    private_key, public_key = key_pair()
    comment_id = int(review_command_event()["comment"]["id"])
    crew = Crew()
    with (
        serve_fake_github(app_id=APP_ID, public_key=public_key) as github,
        FakeOpenAI(responder=crew, api_key=OPENAI_KEY, check_schema=True) as llm,
    ):
        fake = github.fake  # set up before the bot starts; read only through github.read(...) from then on
        fake.add_installation(INSTALLATION)
        fake.add_repo(
            OWNER, REPO, installation_id=INSTALLATION, files={"main": {}, HEAD: {GALLERY: GALLERY_SOURCE.read_bytes()}}
        )
        fake.add_pull(OWNER, REPO, NUMBER, head_sha=HEAD, base_sha=BASE_SHA, files=github_files(GALLERY_DIFF))
        env, log = bot_environ(tmp_path, github, llm, private_key), tmp_path / "serve.log"

        with serve_bot(env, tmp_path, log) as (base, process), httpx.Client(base_url=base, trust_env=False) as client:
            # 1. A pull request is opened: one review of its head, by the rules and the crew, and the check run.
            opened = deliver(client, "pull_request", pull_request_event("opened", HEAD), OPENED)
            assert opened.status_code == 202, opened.text

            def first_review_done(fake: FakeGitHub) -> bool:
                return len(reviews(fake)) == 1 and [r["status"] for r in check_runs(fake)] == ["completed"]

            wait_for(github, first_review_done, "first review and completed check run", process, log)
            [review] = github.read(reviews)
            [check] = github.read(check_runs)
            usage = llm.usage_total  # what the fake LLM reported for the first review
            assert crew.roles == ["reviewer", "lead"]
            assert (review["commit_id"], review["state"]) == (HEAD, "COMMENTED")
            comments = {(c["path"], c["line"], c["side"]): c["body"] for c in review["comments"]}
            assert sorted(comments) == [(GALLERY, CREW_LINE, "RIGHT"), (GALLERY, RULE_LINE, "RIGHT")]
            assert f"`{RULE_ID}`" in comments[GALLERY, RULE_LINE, "RIGHT"]
            crew_comment = comments[GALLERY, CREW_LINE, "RIGHT"]
            assert f"`{CREW_RULE_ID}`" in crew_comment
            assert f"```suggestion\n{CREW_FIX}\n```" in crew_comment
            assert all("ai-dev-companion:fp=" in body for body in comments.values())  # the hidden fingerprints
            calls = Usage(usage.prompt_tokens, usage.completion_tokens, llm.calls)
            price = Price(*DEFAULT_PRICES[MODEL])
            last_line = usage_line(MODEL, files=1, hunks=3, cached=0, usage=calls, price=price)
            assert review["body"].endswith(last_line), review["body"]
            assert re.search(r" prompt \+ [\d,]+ completion tokens; \$\d+\.\d{4}\.$", review["body"])
            assert (check["name"], check["head_sha"], check["status"]) == (CHECK_NAME, HEAD, "completed")
            assert check["conclusion"] == "success"  # two major findings; fail_on defaults to blocker
            assert sorted(a["start_line"] for a in check["output"]["annotations"]) == [CREW_LINE, RULE_LINE]

            # 2. The owner comments `/review`: eyes, then rocket once the second review is posted, repeating nothing.
            command = deliver(client, "issue_comment", review_command_event(), COMMAND)
            assert command.status_code == 202, command.text

            def second_review_done(fake: FakeGitHub) -> bool:
                return reactions(comment_id)(fake) == ["eyes", "rocket"] and len(reviews(fake)) == 2

            wait_for(github, second_review_done, "second review and rocket reaction", process, log)
            first, second = github.read(reviews)
            assert first == review
            assert (second["commit_id"], second["comments"]) == (HEAD, [])
            assert ALREADY_POSTED_NOTE.format(count=2) in second["body"]
            assert crew.roles == ["reviewer", "lead"]  # the same chunk again: the LLM's answer came from the cache
            from_cache = usage_line(MODEL, files=1, hunks=3, cached=1, usage=Usage(0, 0, 0), price=price)
            assert second["body"].endswith(from_cache), second["body"]
            assert [(r["status"], r["conclusion"]) for r in github.read(check_runs)] == [("completed", "success")] * 2

            # 3. Every call the App made: the expected kinds, each answered, traced to its delivery.
            requests = github.read(lambda fake: list(fake.requests))
            tokens_issued = github.read(lambda fake: fake.tokens_issued)

            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=STOP_WITHIN)
        output = log.read_text(encoding="utf-8")

    # uvicorn shuts down gracefully, then re-raises SIGTERM so that the exit status tells how it ended.
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    assert " ERROR " not in output
    assert SECRET not in output
    assert OPENAI_KEY not in output

    by_delivery: dict[str, set[str]] = {OPENED: set(), COMMAND: set()}
    for request in requests:
        kind = kind_of(request.method, request.path)
        answered = request.status == 404 if kind == "repository config" else 200 <= request.status < 300
        assert answered, (kind, request.path, request.status)  # only the missing config is a 4xx
        assert request.headers.get("x-request-id") in by_delivery, (kind, request.headers.get("x-request-id"))
        by_delivery[request.headers["x-request-id"]].add(kind)
        if kind == "repository config":
            assert request.params.get("ref") == "main"  # the default branch's, never the PR's own
        if kind == "whole file":
            assert request.params.get("ref") == HEAD
        if kind == "reaction":
            assert request.path.endswith(f"/comments/{comment_id}/reactions")
    assert by_delivery[OPENED] == REVIEW_CALLS | {"installation token"}
    assert by_delivery[COMMAND] == REVIEW_CALLS | {"reaction"}  # the installation token was cached
    assert tokens_issued == 1
