"""The LLM half of the review: the real CrewAI crew (`reviewer.crew.CrewReviewer`) and `reviewer.engine.review`
against the fake OpenAI server (real HTTP on 127.0.0.1, the real OpenAI SDK under CrewAI), on real Kotlin and
real diffs (tests/fixtures, see SOURCES.md).

The fake answers as the two agents: a call whose system prompt carries REVIEWER_ROLE is the Android reviewer
(it proposes findings for the files of its chunk), one with LEAD_ROLE is the review lead (by default it keeps
every proposal it is shown). Faults (429, 500, hangs, broken output) are scripted ahead of those answers.

CrewAI writes files at import and on every kickoff (a key under ~/.local/share/crewai, ~/.config/crewai, a
SQLite file of task inputs and outputs under XDG_DATA_HOME, lock files in the temp dir) and takes its lock
backend from REDIS_URL at import: the module-scoped `crewai_sandbox` points all of that at a temporary
directory before the first import, and checks afterwards that nothing new appeared in the real home.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bot.app import create_app
from bot.jobs.cache import REDIS_PREFIX, ChunkStore
from bot.jobs.queue import JobPolicy, Jobs
from bot.jobs.redis_backend import RedisBackend
from bot.settings import DEFAULT_PRICES
from reviewer.crew import LEAD_ROLE, REVIEWER_ROLE, CrewReviewer, LLMConfig, Usage, load_crewai, prompt_overhead
from reviewer.diff import parse_diff
from reviewer.engine import Change, ChangedFile, LLMBudget, Price, review, usage_line
from reviewer.files import RepoConfig
from reviewer.models import Category, FileNote, Finding, Review, Severity
from reviewer.proposals import CREW_RULE_ID
from tests.conftest import FIXTURES, SettingsFactory
from tests.e2e.conftest import free_port
from tests.fakes.lead_prompt import shown_proposals, verdicts
from tests.fakes.openai_server import FakeOpenAI, Reply

# CrewAI 1.15 reads its own deprecated fields (`function_calling_llm` and others) on every Agent and Crew it builds.
pytestmark = pytest.mark.filterwarnings(r"ignore::DeprecationWarning:crewai\.")

KEY = "sk-crew-test-Vq8Lm3Rt"
MODEL = "gpt-4o-mini"
PRICE = Price(*DEFAULT_PRICES[MODEL])
CREW_ATTEMPTS = 2  # Agent(max_retry_limit=1) in reviewer.crew: the first run and one repair
WITHIN = 30.0  # seconds any one review may take here (every wait in this module is bounded)
ONE_AT_A_TIME = LLMBudget(concurrency=1)  # chunks in a fixed order
STORAGE_DIR = "crew-tests"  # CREWAI_STORAGE_DIR: CrewAI's data folder under XDG_DATA_HOME

DIFFS = FIXTURES / "diffs"
# GalleryFragment.diff's new side is this smell fixture, byte for byte (android/sunflower @ cd57be5).
GALLERY = "app/src/main/java/com/google/samples/apps/sunflower/GalleryFragment.kt"
GALLERY_DIFF = DIFFS / "android__sunflower__GalleryFragment.diff"
GALLERY_SOURCE = FIXTURES / "kotlin" / "smells" / "collect_without_lifecycle__android__sunflower__GalleryFragment.kt"
GALLERY_RULE_LINE = 66  # collect-without-lifecycle (category lifecycle), an added line
# ForYouViewModel.diff's new side is this corpus file (android/nowinandroid @ ee43207).
FOR_YOU = "feature/foryou/src/main/kotlin/com/google/samples/apps/nowinandroid/feature/foryou/ForYouViewModel.kt"
FOR_YOU_DIFF = DIFFS / "android__nowinandroid__ForYouViewModel.diff"
FOR_YOU_SOURCE = FIXTURES / "kotlin" / "corpus" / "android__nowinandroid__ForYouViewModel.kt"
FOR_YOU_LINE = 131  # `if (newsResourceId == deepLinkedNewsResource.value?.id) {`, an added line
KOIN_DIFF = DIFFS / "android__nowinandroid__koin-migration-build-files.diff"  # build.gradle.kts + libs.versions.toml
PLAYER = "Jetcaster/app/src/main/java/com/example/jetcaster/ui/player/PlayerViewModel.kt"
PLAYER_SOURCE = FIXTURES / "kotlin" / "smells" / "not_null_assertion__android__compose-samples__PlayerViewModel.kt"

SECTION = re.compile(r"^--- (\S+) \(lines \d+-\d+\)$", re.MULTILINE)  # a chunk's section header in the prompt


# CrewAI, kept inside a temporary directory.

# Where CrewAI writes in a home unless told otherwise (see /tmp/crewai_probe/REPORT.md, section 2).
HOME_TRACES = (".local/share/crewai", ".config/crewai", f".local/share/{Path.cwd().name}", ".crewai")


def _crewai_traces(home: Path) -> set[str]:
    return {relative for relative in HOME_TRACES if (home / relative).exists()}


@pytest.fixture(scope="module", autouse=True)
def crewai_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """HOME, XDG dirs, CrewAI's storage dir and the temp dir in a tmp folder, set before CrewAI is imported."""
    if "crewai" in sys.modules:
        pytest.fail(
            "crewai was imported before this module's sandbox, so its import-time files went to the real HOME: "
            "import it only under this fixture (or move the fixture to tests/conftest.py, session-scoped)"
        )
    root = tmp_path_factory.mktemp("crewai-sandbox")
    real_home = Path.home()
    before = _crewai_traces(real_home)
    paths = {
        "HOME": root / "home",
        "XDG_DATA_HOME": root / "data",
        "XDG_CONFIG_HOME": root / "config",
        "TMPDIR": root / "tmp",
    }
    for path in paths.values():
        path.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for name, path in paths.items():
            patch.setenv(name, str(path))
        patch.setenv("CREWAI_STORAGE_DIR", STORAGE_DIR)
        # tempfile caches its directory on first use (pytest has used it): CrewAI's lock files follow this.
        patch.setattr(tempfile, "tempdir", str(paths["TMPDIR"]))
        # CrewAI reads REDIS_URL once, at import, to put its locks in Redis: hide it for the import only
        # (the `redis_url` fixture reads it later).
        redis_url = os.environ.pop("REDIS_URL", None)
        try:
            with warnings.catch_warnings():
                # crewai 1.15's own lazy `crewai.rag` package refuses a child attribute on import (harmless).
                warnings.filterwarnings("ignore", "Cannot set an attribute on 'crewai", ImportWarning)
                load_crewai()
        finally:
            if redis_url is not None:
                os.environ["REDIS_URL"] = redis_url
        yield root
    # The real temp dir is not compared: other processes on the machine may use CrewAI (its locks land there).
    assert _crewai_traces(real_home) == before, f"CrewAI wrote in the real home {real_home}"


# Real changes.


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def changed(diff_file: Path, sources: dict[str, Path] | None = None) -> list[ChangedFile]:
    """Every file of a real diff, with the whole new source where the fixtures have it."""
    sources = sources or {}
    return [
        ChangedFile(diff, sources[diff.path].read_bytes() if diff.path in sources else None)
        for diff in parse_diff(diff_file.read_bytes())
    ]


def gallery(*, edit: bool = False) -> ChangedFile:
    """GalleryFragment.kt; `edit` is a second push that changes one added line (diff and file alike)."""
    diff, source = text_of(GALLERY_DIFF), text_of(GALLERY_SOURCE)
    if edit:
        old, new = "        search(args.plantName)\n", "        search(args.plantName.trim())\n"
        assert diff.count("+" + old) == 1
        assert source.count(old) == 1
        diff, source = diff.replace("+" + old, "+" + new), source.replace(old, new)
    [file_diff] = parse_diff(diff.encode())
    return ChangedFile(file_diff, source.encode())


def for_you() -> ChangedFile:
    [file_changed] = changed(FOR_YOU_DIFF, {FOR_YOU: FOR_YOU_SOURCE})
    return file_changed


def line_of(path: Path, number: int) -> str:
    return text_of(path).splitlines()[number - 1]


def proposal(
    path: str,
    line: int,
    quote: str,
    *,
    end_line: int | None = None,
    severity: str = "major",
    category: str = "lifecycle",
    title: str = "Collection outlives the view",
    body: str = "The job is tied to the fragment, not to its view; collect with viewLifecycleOwner instead.",
    suggestion: str | None = None,
    confidence: float = 0.8,
) -> dict[str, Any]:
    """One finding in the exact shape of `reviewer.proposals.Proposal`."""
    return {
        "path": path,
        "line": line,
        "end_line": line if end_line is None else end_line,
        "quote": quote.strip(),
        "severity": severity,
        "category": category,
        "title": title,
        "body": body,
        "suggestion": suggestion,
        "confidence": confidence,
    }


def gallery_at(line: int, **fields: Any) -> dict[str, Any]:
    """A proposal on GalleryFragment.kt quoting its real line `line`."""
    return proposal(GALLERY, line, line_of(GALLERY_SOURCE, line), **fields)


def for_you_at(line: int) -> dict[str, Any]:
    return proposal(
        FOR_YOU,
        line,
        line_of(FOR_YOU_SOURCE, line),
        category="concurrency",
        title="Reads a StateFlow that may not be collected",
        body="deepLinkedNewsResource is WhileSubscribed: with no collector its value is the initial null.",
    )


# The two agents, as the fake's responder.


@dataclass
class Seen:
    """One call as the fake saw it: which agent, the files of its chunk, its user prompt."""

    role: str  # "reviewer" or "lead"
    paths: list[str]
    prompt: str
    proposals: list[dict[str, Any]] = field(default_factory=list)  # what the lead was shown


Answer = Reply | list[dict[str, Any]]  # a list is the `findings` of a valid answer


@dataclass
class Agents:
    """Answers every call as the agent its system prompt names; records the calls (thread-safe appends)."""

    propose: Callable[[Seen], Answer] = lambda seen: []
    verify: Callable[[Seen], Answer] = lambda seen: seen.proposals
    seen: list[Seen] = field(default_factory=list)

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        prompt = "\n".join(m["content"] for m in messages if m["role"] == "user")
        if REVIEWER_ROLE in system and LEAD_ROLE not in system:
            seen = Seen("reviewer", list(dict.fromkeys(SECTION.findall(prompt))), prompt)
            answer = self.propose(seen)
        elif LEAD_ROLE in system and REVIEWER_ROLE not in system:
            shown = shown_proposals(prompt)
            seen = Seen("lead", list(dict.fromkeys(p["path"] for p in shown)), prompt, shown)
            kept = self.verify(seen)
            answer = kept if isinstance(kept, Reply) else Reply.json(verdicts(kept))
        else:
            raise AssertionError(f"a call from neither agent: {system[:120]!r}")
        self.seen.append(seen)
        return answer if isinstance(answer, Reply) else Reply.json({"findings": answer})

    def calls(self, role: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.role == role]


def by_path(proposals: dict[str, list[dict[str, Any]]]) -> Callable[[Seen], Answer]:
    """A reviewer that proposes, for each file of its chunk, the findings listed for that file."""
    return lambda seen: [p for path in seen.paths for p in proposals.get(path, [])]


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake with a required key and every scripted answer checked against the request's strict schema."""
    fake_openai.api_key = KEY
    fake_openai.check_schema = True
    return fake_openai


def crew(base_url: str, *, timeout: float = 5.0, max_retries: int = 0) -> CrewReviewer:
    return CrewReviewer(
        LLMConfig(model=MODEL, api_key=KEY, base_url=base_url, timeout=timeout, max_retries=max_retries)
    )


async def run(
    files: list[ChangedFile],
    llm: CrewReviewer,
    *,
    config: RepoConfig | None = None,
    budget: LLMBudget = ONE_AT_A_TIME,
    cache: Any = None,
) -> Review:
    return await asyncio.wait_for(review(Change(files), config, llm, cache=cache, budget=budget, price=PRICE), WITHIN)


def answered(fake: FakeOpenAI) -> int:
    """Completions the fake answered with a usage (what the API bills), faults and hangs not counted."""
    return sum(1 for request in fake.requests if request.usage is not None)


def expected_usage(fake: FakeOpenAI, *, files: int, hunks: int, cached: int = 0) -> str:
    """The review's last line, from what the fake reported, and the cost checked by hand against the table."""
    total = fake.usage_total
    line = usage_line(
        MODEL,
        files=files,
        hunks=hunks,
        cached=cached,
        usage=Usage(total.prompt_tokens, total.completion_tokens, answered(fake)),
        price=PRICE,
    )
    dollars = (total.prompt_tokens * 0.15 + total.completion_tokens * 0.60) / 1_000_000
    assert line.endswith(
        f"{total.prompt_tokens:,} prompt + {total.completion_tokens:,} completion tokens; ${dollars:.4f}."
    )
    return line


def crew_findings(result: Review) -> list[Finding]:
    return [f for f in result.findings if f.rule_id == CREW_RULE_ID]


def rule_lines(result: Review) -> list[tuple[str, int]]:
    return [(f.rule_id, f.line) for f in result.findings if f.source == "rules"]


def statuses(fake: FakeOpenAI) -> list[int | None]:
    return [request.status for request in fake.requests]


def per_file_budget() -> LLMBudget:
    """Room for ForYouViewModel.kt's five hunks (2,286 tokens) in one call, not for a GalleryFragment hunk too."""
    return LLMBudget(call_tokens=prompt_overhead() + 2600, review_tokens=100_000, concurrency=2)


# The happy path.


async def test_the_reviewer_proposes_the_lead_verifies_and_the_review_ends_with_the_cost(fake: FakeOpenAI) -> None:
    fix = "        searchJob = viewLifecycleOwner.lifecycleScope.launch {"
    kept = gallery_at(65, suggestion=fix)
    petty = gallery_at(64, severity="nit", category="style", title="Name", body="Rename searchJob.")
    agents = Agents(
        propose=by_path({GALLERY: [kept, petty]}),
        verify=lambda seen: [{**seen.proposals[0], "severity": "minor", "confidence": 0.9}],
    )
    fake.responder = agents

    result = await run([gallery()], crew(fake.base_url))

    assert fake.calls == 2
    assert [(seen.role, seen.paths) for seen in agents.seen] == [("reviewer", [GALLERY]), ("lead", [GALLERY])]
    reviewer_prompt, lead_prompt = agents.seen[0].prompt, agents.seen[1].prompt
    assert "   65 +         searchJob = lifecycleScope.launch {" in reviewer_prompt  # the chunk, numbered
    shown = [(p["id"], p["path"], p["line"], p["severity"], p["title"]) for p in agents.seen[1].proposals]
    assert shown == [(1, GALLERY, 65, "major", kept["title"]), (2, GALLERY, 64, "nit", "Name")]  # both, in order...
    assert "   62     private fun search(query: String) {" in lead_prompt  # ...each with lines around it,
    assert ">  65         searchJob = lifecycleScope.launch {" in lead_prompt  # its own lines marked,
    assert f"Suggested code:\n{fix}\n" in lead_prompt  # and its suggestion
    assert '"quote"' not in lead_prompt  # no JSON to repeat: the lead answers by number
    assert "CHANGED CODE" not in lead_prompt  # ...but not the chunk itself
    for request in fake.requests:
        assert request.body["model"] == MODEL
        assert request.body["response_format"]["json_schema"]["strict"] is True
    [finding] = crew_findings(result)
    assert (finding.path, finding.line, finding.end_line, finding.placement) == (GALLERY, 65, 65, "inline")
    assert (finding.severity, finding.category, finding.source) == (Severity.MINOR, Category.LIFECYCLE, "crew")
    assert finding.suggestion == fix  # inside one hunk, still parses: a one-click suggestion
    assert finding.title == kept["title"]
    assert finding.message == kept["body"]
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    assert result.reviewer == "crew"
    assert result.mode_note == ""
    assert not result.llm_incomplete
    assert result.notes == []
    assert result.llm_summary == expected_usage(fake, files=1, hunks=3)
    assert "2 call(s), 0 file(s) from cache" in result.llm_summary


async def test_when_the_reviewer_proposes_nothing_the_lead_is_not_called(fake: FakeOpenAI) -> None:
    agents = Agents()
    fake.responder = agents

    result = await run([gallery()], crew(fake.base_url))

    assert fake.calls == 1
    assert [seen.role for seen in agents.seen] == ["reviewer"]
    assert crew_findings(result) == []
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    assert result.reviewer == "crew"
    assert result.mode_note == ""
    assert result.llm_summary == expected_usage(fake, files=1, hunks=3)
    assert "1 call(s)" in result.llm_summary


async def test_the_lead_may_drop_every_proposal(fake: FakeOpenAI) -> None:
    fake.responder = Agents(propose=by_path({GALLERY: [gallery_at(65)]}), verify=lambda seen: [])

    result = await run([gallery()], crew(fake.base_url))

    assert fake.calls == 2
    assert crew_findings(result) == []
    assert result.mode_note == ""


# Anchoring: the quote decides the line.


async def test_a_misnumbered_finding_is_moved_to_the_line_it_quotes(fake: FakeOpenAI) -> None:
    quoted = line_of(GALLERY_SOURCE, 64)  # `searchJob?.cancel()`, reported six lines off
    fake.responder = Agents(propose=by_path({GALLERY: [proposal(GALLERY, 58, quoted, category="concurrency")]}))

    result = await run([gallery()], crew(fake.base_url))

    [finding] = crew_findings(result)
    assert (finding.line, finding.end_line, finding.placement) == (64, 64, "inline")


async def test_a_finding_whose_quote_is_not_in_the_file_is_dropped_and_counted(fake: FakeOpenAI) -> None:
    invented = proposal(GALLERY, 64, "val cache = mutableMapOf<String, Bitmap>()", category="performance")
    fake.responder = Agents(propose=by_path({GALLERY: [invented, gallery_at(65)]}))

    result = await run([gallery()], crew(fake.base_url))

    assert [f.line for f in crew_findings(result)] == [65]
    assert FileNote("(LLM)", "1 finding(s) dropped: their quoted line is not in the file") in result.notes


async def test_a_finding_outside_the_diff_goes_to_the_body_never_inline(fake: FakeOpenAI) -> None:
    outside = gallery_at(47, category="correctness", title="Unused parameter")  # between hunks 1 and 2
    across = proposal(  # lines 55-60: the end of hunk 2, two unchanged lines, the start of hunk 3
        GALLERY,
        55,
        "\n".join(line_of(GALLERY_SOURCE, n) for n in range(55, 61)),
        end_line=60,
        category="correctness",
        title="Navigation set up on every view",
        suggestion="        return binding.root\n    }",
    )
    fake.responder = Agents(propose=by_path({GALLERY: [outside, across]}))

    result = await run([gallery()], crew(fake.base_url), config=RepoConfig(filter="file"))

    by_line = {f.line: f for f in crew_findings(result)}
    assert set(by_line) == {47, 55}
    assert (by_line[47].placement, by_line[47].placement_reason) == ("body", "its lines are not part of the diff")
    spanning = by_line[55]
    assert (spanning.placement, spanning.end_line) == ("inline", 55)  # on the first line the diff shows
    assert spanning.placement_reason == "anchored to the first line of its range that the diff shows"
    assert spanning.suggestion is None
    assert "```diff\n-        binding.toolbar.setNavigationOnClickListener { view ->\n" in spanning.message


async def test_a_suggestion_that_would_not_parse_becomes_a_diff_block(fake: FakeOpenAI) -> None:
    broken = gallery_at(67, category="correctness", suggestion="                adapter.submitData(it")
    fake.responder = Agents(propose=by_path({GALLERY: [broken]}))

    result = await run([gallery()], crew(fake.base_url))

    [finding] = crew_findings(result)
    assert finding.suggestion is None
    assert finding.placement == "inline"
    assert finding.message == (
        f"{broken['body']}\n\n"
        "```diff\n-                adapter.submitData(it)\n+                adapter.submitData(it\n```"
    )


# The rules and the crew together.


async def test_the_rules_findings_reach_both_agents_and_a_crew_duplicate_is_dropped(fake: FakeOpenAI) -> None:
    duplicate = gallery_at(GALLERY_RULE_LINE)  # same line, same category (lifecycle) as the rule
    overlapping = proposal(  # lines 65-67 cover the rule's line, same category
        GALLERY, 65, "\n".join(line_of(GALLERY_SOURCE, n) for n in range(65, 68)), end_line=67
    )
    other = gallery_at(GALLERY_RULE_LINE, category="concurrency", title="collectLatest cancels submitData")
    agents = Agents(propose=by_path({GALLERY: [duplicate, overlapping, other]}))
    fake.responder = agents

    result = await run([gallery()], crew(fake.base_url))

    rule_line = f"{GALLERY}\n  {GALLERY_RULE_LINE} [collect-without-lifecycle] `.collectLatest` inside"  # by file
    reviewer, lead = agents.seen
    assert rule_line in reviewer.prompt.split("Already reported by rules (do not repeat):")[1]
    assert rule_line in lead.prompt.split("RULE FINDINGS:")[1]
    assert [(f.line, f.category) for f in crew_findings(result)] == [(GALLERY_RULE_LINE, Category.CONCURRENCY)]
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]


# Large PRs: several calls, most important first, what is left out named.


async def test_a_pr_larger_than_the_budget_is_split_and_what_is_left_out_is_named(fake: FakeOpenAI) -> None:
    files = [*changed(KOIN_DIFF), gallery(), for_you()]
    overhead = prompt_overhead()
    # 1,500 tokens of code a call; in all, three calls' overhead and 4,000 tokens of code.
    budget = LLMBudget(call_tokens=overhead + 1500, review_tokens=3 * overhead + 4000, concurrency=1)
    agents = Agents()
    fake.responder = agents

    result = await run(files, crew(fake.base_url), budget=budget)

    # Production Kotlin first (the file with more added lines first), then the build script.
    calls = [seen.paths for seen in agents.calls("reviewer")]
    order = [path for paths in calls for path in paths]
    assert list(dict.fromkeys(order)) == [FOR_YOU, GALLERY, "app/build.gradle.kts"]
    assert calls[:2] == [[FOR_YOU], [FOR_YOU]], "ForYouViewModel alone fills two calls"
    assert fake.calls == len(calls) >= 3
    not_sent = {note.path: note.reason for note in result.notes if note.reason.startswith("not reviewed by the LLM")}
    too_large = "not reviewed by the LLM: hunk larger than one call"
    over = "not reviewed by the LLM: over the review's token budget"
    assert {path for path, why in not_sent.items() if why.startswith(too_large)} == {
        "gradle/libs.versions.toml:1-88",
        "gradle/libs.versions.toml:91-214",
    }
    over_budget = [path for path, why in not_sent.items() if why == over]
    assert over_budget, "the review's budget ran out before the build script's last hunks"
    assert all(path.startswith("app/build.gradle.kts:") for path in over_budget), "least important file last"
    for seen in agents.calls("reviewer"):  # every call is told what it does not see
        assert "Not shown (budget), do not guess about: " in seen.prompt
        assert all(path in seen.prompt for path in not_sent)
    assert result.mode_note == ""
    hunks = sum(len(SECTION.findall(seen.prompt)) for seen in agents.calls("reviewer"))
    assert result.llm_summary == expected_usage(fake, files=3, hunks=hunks)


# The chunk cache in the job store's backend.


@dataclass
class Stores:
    """Opens ChunkStores on one backend (each on its own Jobs, as separate jobs would) and closes them."""

    url: str
    opened: list[Jobs] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    async def open(self) -> Recording:
        jobs = Jobs.from_url(self.url, JobPolicy(), capacity=10, name=f"test-crew-{uuid.uuid4().hex[:12]}")
        await jobs.connect()
        self.opened.append(jobs)
        return Recording(ChunkStore(jobs, ttl=3600), self.keys)

    async def close(self) -> None:
        for jobs in self.opened:
            if isinstance(jobs.backend, RedisBackend) and self.keys:
                await jobs.backend.redis.delete(*(REDIS_PREFIX + key for key in self.keys))
                self.keys.clear()
            await jobs.close()


@dataclass
class Recording:
    """A ChunkStore that remembers the keys it wrote (to delete exactly those from a shared Redis)."""

    store: ChunkStore
    keys: set[str]
    hits: int = 0

    async def get(self, key: str) -> list[dict[str, Any]] | None:
        value = await self.store.get(key)
        self.hits += value is not None
        return value

    async def put(self, key: str, value: list[dict[str, Any]]) -> None:
        self.keys.add(key)
        await self.store.put(key, value)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    url = f"sqlite:///{tmp_path}/jobs.sqlite3" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    opened = Stores(url)
    try:
        yield opened
    finally:
        await opened.close()


def cache_config() -> RepoConfig:
    """Instructions unique to this run: its cache keys are its own in a Redis that other runs share."""
    return RepoConfig(instructions=f"Cache test {uuid.uuid4().hex}: review as usual.")


def two_file_agents() -> Agents:
    return Agents(propose=by_path({FOR_YOU: [for_you_at(FOR_YOU_LINE)]}))


async def test_a_second_review_of_the_same_change_costs_nothing(fake: FakeOpenAI, stores: Stores) -> None:
    agents = two_file_agents()
    fake.responder = agents
    config, llm = cache_config(), crew(fake.base_url)

    first = await run([for_you(), gallery()], llm, config=config, budget=per_file_budget(), cache=await stores.open())
    calls, usage = fake.calls, fake.usage_total
    again = await stores.open()  # another job, another connection: only the backend is shared
    second = await run([for_you(), gallery()], llm, config=config, budget=per_file_budget(), cache=again)

    assert sorted(seen.paths[0] for seen in agents.calls("reviewer")) == sorted([FOR_YOU, GALLERY])
    assert calls == 3  # two reviewer calls, one lead call (only ForYouViewModel.kt had a proposal)
    assert fake.calls == calls
    assert fake.usage_total == usage
    assert again.hits == 2
    assert len(stores.keys) == 2
    assert second.findings == first.findings
    assert [(f.path, f.line) for f in crew_findings(second)] == [(FOR_YOU, FOR_YOU_LINE)]
    assert second.llm_summary == (
        f"LLM ({MODEL}): 2 file(s), 8 hunk(s), 0 call(s), 2 file(s) from cache; 0 prompt + 0 completion tokens; "
        "$0.0000."
    )
    if stores.url.startswith("redis"):
        store = again.store
        assert isinstance(store.backend, RedisBackend)
        for key in stores.keys:
            assert 0 < await store.backend.redis.ttl(REDIS_PREFIX + key) <= 3600


async def test_a_push_touching_one_file_re_sends_only_that_file(fake: FakeOpenAI, stores: Stores) -> None:
    agents = two_file_agents()
    fake.responder = agents
    config, llm = cache_config(), crew(fake.base_url)
    await run([for_you(), gallery()], llm, config=config, budget=per_file_budget(), cache=await stores.open())
    first_calls = len(agents.seen)
    fake_before = fake.usage_total

    second = await run(
        [for_you(), gallery(edit=True)], llm, config=config, budget=per_file_budget(), cache=await stores.open()
    )

    resent = agents.seen[first_calls:]
    assert [(seen.role, seen.paths) for seen in resent] == [("reviewer", [GALLERY])]
    assert "   53 +         search(args.plantName.trim())" in resent[0].prompt
    assert [(f.path, f.line) for f in crew_findings(second)] == [(FOR_YOU, FOR_YOU_LINE)]  # from the cache
    spent = fake.usage_total
    one_call = Usage(
        spent.prompt_tokens - fake_before.prompt_tokens, spent.completion_tokens - fake_before.completion_tokens, 1
    )
    assert second.llm_summary == usage_line(MODEL, files=2, hunks=8, cached=1, usage=one_call, price=PRICE)


async def test_files_that_shared_a_call_are_cached_each_on_its_own(fake: FakeOpenAI, stores: Stores) -> None:
    # With the default budget both files go in one call; the cache is per file all the same.
    agents = two_file_agents()
    fake.responder = agents
    config, llm = cache_config(), crew(fake.base_url)
    await run([for_you(), gallery()], llm, config=config, cache=await stores.open())
    first = agents.calls("reviewer")
    assert [sorted(seen.paths) for seen in first] == [sorted([FOR_YOU, GALLERY])]
    first_calls = len(agents.seen)

    second = await run([for_you(), gallery(edit=True)], llm, config=config, cache=await stores.open())

    resent = agents.seen[first_calls:]
    assert [(seen.role, seen.paths) for seen in resent] == [("reviewer", [GALLERY])]
    assert [(f.path, f.line) for f in crew_findings(second)] == [(FOR_YOU, FOR_YOU_LINE)]  # from the cache
    assert "1 file(s) from cache" in second.llm_summary


# Failures: the SDK retries 429/5xx/timeouts (bounded), CrewAI repairs a bad answer once.


async def test_a_429_is_retried_after_its_retry_after(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply.fault(429, retry_after=1))
    fake.responder = Agents(propose=by_path({GALLERY: [gallery_at(65)]}))

    result = await run([gallery()], crew(fake.base_url, max_retries=2))

    assert statuses(fake) == [429, 200, 200]
    first, retried = fake.requests[:2]
    assert retried.at - first.at >= 0.95  # the SDK waited as told
    assert [f.line for f in crew_findings(result)] == [65]
    assert result.mode_note == ""
    assert result.llm_summary == expected_usage(fake, files=1, hunks=3)


async def test_a_500_is_retried(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply.fault(500))
    fake.responder = Agents(propose=by_path({GALLERY: [gallery_at(65)]}))

    result = await run([gallery()], crew(fake.base_url, max_retries=2))

    assert statuses(fake) == [500, 200, 200]
    assert [f.line for f in crew_findings(result)] == [65]
    assert result.mode_note == ""
    assert result.llm_summary == expected_usage(fake, files=1, hunks=3)


async def test_a_request_that_hangs_past_the_timeout_is_retried(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply.hang(20))
    fake.responder = Agents(propose=by_path({GALLERY: [gallery_at(65)]}))
    started = time.monotonic()

    result = await run([gallery()], crew(fake.base_url, timeout=0.5, max_retries=1))

    assert time.monotonic() - started < 5  # 0.5 s timeout, one back-off of about a second, two answers
    assert statuses(fake) == [None, 200, 200]
    assert [f.line for f in crew_findings(result)] == [65]
    assert result.mode_note == ""


async def test_requests_that_keep_hanging_fail_within_bounds(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply.hang(20)
    started = time.monotonic()

    result = await run([gallery()], crew(fake.base_url, timeout=0.5, max_retries=1))

    assert time.monotonic() - started < 10  # 4 x 0.5 s timeouts plus the SDK's short back-offs
    assert len(fake.requests) == CREW_ATTEMPTS * (1 + 1)  # each attempt: the request and one SDK retry
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    assert crew_findings(result) == []
    assert result.mode_note.startswith("The LLM part of this review failed (")
    assert "timed out" in result.mode_note
    assert result.mode_note.endswith("only the rules' findings are shown. This is not a clean pass.")
    assert result.llm_incomplete
    assert [note.path for note in result.notes] == [GALLERY]


async def test_the_llm_part_stops_at_its_deadline_and_the_rules_review_stands(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: Reply.hang(20)
    budget = LLMBudget(concurrency=1, deadline=0.5)
    started = time.monotonic()

    result = await run([gallery()], crew(fake.base_url, timeout=0.5, max_retries=0), budget=budget)

    assert time.monotonic() - started < 2
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    assert result.mode_note == (
        "The LLM part of this review failed (LLMDeadline: the LLM part took longer than its 0.5 s); "
        "only the rules' findings are shown. This is not a clean pass."
    )
    # The cancelled kickoff's HTTP call runs on in its thread until its 0.5 s timeout: let it end here.
    await asyncio.sleep(1)
    assert statuses(fake) == [None]  # and nothing more is sent for a review that is over


async def test_an_answer_failing_the_schema_is_repaired_once(fake: FakeOpenAI) -> None:
    # Valid JSON, wrong shape: a finding without most of its required fields.
    fake.enqueue(Reply.malformed(json.dumps({"findings": [{"path": GALLERY, "line": 65}]})))
    agents = Agents(propose=by_path({GALLERY: [gallery_at(65)]}))
    fake.responder = agents

    result = await run([gallery()], crew(fake.base_url))

    assert fake.calls == 3  # the bad answer, the repaired one, the lead
    assert [seen.role for seen in agents.seen] == ["reviewer", "lead"]
    assert [f.line for f in crew_findings(result)] == [65]
    assert result.mode_note == ""
    assert result.notes == []
    # The broken answer was billed too: the usage line counts every answered call.
    assert result.llm_summary == expected_usage(fake, files=1, hunks=3)
    assert "3 call(s)" in result.llm_summary


async def test_every_review_on_a_reused_agent_gets_its_own_repair_attempt(fake: FakeOpenAI) -> None:
    # One LLM slot (and so one reviewer agent, kept between kickoffs): each review's bad answer is repaired.
    agents = Agents(propose=by_path({GALLERY: [gallery_at(65)]}))
    fake.responder = agents
    llm = crew(fake.base_url)
    for review_number in range(3):
        fake.enqueue(Reply.malformed(json.dumps({"findings": [{"path": GALLERY, "line": 65}]})))
        result = await run([gallery()], llm)
        assert [f.line for f in crew_findings(result)] == [65], review_number
        assert result.notes == []
    assert len(llm._idle) == 1  # the same slot every time
    assert fake.calls == 3 * 3  # per review: the bad answer, the repaired one, the lead


async def test_an_answer_failing_the_schema_twice_skips_its_chunk_and_names_it(fake: FakeOpenAI) -> None:
    proposals = {FOR_YOU: [for_you_at(FOR_YOU_LINE)]}
    reviewer = by_path(proposals)
    agents = Agents(propose=lambda seen: Reply.malformed() if GALLERY in seen.paths else reviewer(seen))
    fake.responder = agents

    result = await run([for_you(), gallery()], crew(fake.base_url), budget=per_file_budget())

    gallery_calls = [seen for seen in agents.calls("reviewer") if seen.paths == [GALLERY]]
    assert len(gallery_calls) == CREW_ATTEMPTS
    assert [(f.path, f.line) for f in crew_findings(result)] == [(FOR_YOU, FOR_YOU_LINE)]  # the other chunk is reviewed
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    [note] = result.notes
    assert note.path == GALLERY
    assert note.reason.startswith("not reviewed by the LLM (ValidationError: 1 validation error for Proposals")
    assert result.mode_note == "The LLM could not review 1 of 2 part(s) of this change; see the notes."
    assert result.llm_summary == expected_usage(fake, files=2, hunks=8)


async def test_an_unreachable_server_leaves_the_rules_and_says_why_the_llm_failed() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.monotonic()

    result = await run([gallery()], crew(closed, max_retries=1))

    assert time.monotonic() - started < 10
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    assert crew_findings(result) == []
    assert result.mode_note == (
        "The LLM part of this review failed (ConnectionError: Failed to connect to OpenAI API: Connection error.); "
        "only the rules' findings are shown. This is not a clean pass."
    )
    assert result.notes == [
        FileNote(
            GALLERY, "not reviewed by the LLM (ConnectionError: Failed to connect to OpenAI API: Connection error.)"
        )
    ]
    assert "0 call(s)" in result.llm_summary


async def test_a_refused_key_leaves_the_rules_and_says_why_the_llm_failed(fake: FakeOpenAI) -> None:
    fake.api_key = "sk-another-key"
    started = time.monotonic()

    result = await run([gallery()], crew(fake.base_url, max_retries=2))

    assert time.monotonic() - started < 10
    assert [request.status for request in fake.requests] == [401] * CREW_ATTEMPTS  # a 401 is not retried by the SDK
    assert fake.calls == 0
    assert rule_lines(result) == [("collect-without-lifecycle", GALLERY_RULE_LINE)]
    assert result.mode_note.startswith("The LLM part of this review failed (")
    assert "Incorrect API key provided" in result.mode_note
    assert result.mode_note.endswith("This is not a clean pass.")


# The chat job, through the app.


def test_the_chat_job_reviews_with_the_crew(fake: FakeOpenAI, make_settings: SettingsFactory) -> None:
    quoted = line_of(PLAYER_SOURCE, 65)
    finding = proposal(
        PLAYER,
        65,
        quoted,
        category="concurrency",
        title="Side effect inside a Flow operator",
        body="flatMapConcat mutates the player on every emission; move the assignment into collect.",
    )
    fake.responder = Agents(propose=by_path({PLAYER: [finding]}))
    settings = make_settings(
        openai_api_key=KEY,
        openai_base_url=fake.base_url,
        model=MODEL,
        llm_timeout_seconds=5,
        llm_max_retries=0,
        chat_timeout_seconds=WITHIN,
    )
    body = {"source_code": text_of(PLAYER_SOURCE), "file_path": PLAYER}

    with TestClient(app=create_app(settings), raise_server_exceptions=False, timeout=WITHIN) as client:
        response = client.post("/chat", json=body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["reviewer"] == "crew"
    found = sorted((issue["rule"], issue["line"]) for issue in answer["issues"])
    assert found == [("crew", 65), ("not-null-assertion", 58)]
    [crew_issue] = [issue for issue in answer["issues"] if issue["rule"] == "crew"]
    assert (crew_issue["category"], crew_issue["message"]) == ("concurrency", finding["body"])
    assert fake.calls == 2
    price = Price(*settings.price_table()[MODEL])
    total = fake.usage_total
    line = usage_line(
        MODEL, files=1, hunks=1, cached=0, usage=Usage(total.prompt_tokens, total.completion_tokens, 2), price=price
    )
    assert answer["summary"].startswith("2 issues (")
    assert answer["summary"].endswith(line)


# Where CrewAI wrote.


async def test_crewai_writes_only_inside_the_sandbox_and_never_the_reviewed_code(
    fake: FakeOpenAI, crewai_sandbox: Path
) -> None:
    fake.responder = Agents(propose=by_path({GALLERY: [gallery_at(65)]}))
    await run([gallery()], crew(fake.base_url))

    # CrewAI's own files and the places it computes are in the sandbox (the fixture checks the real home)...
    assert (crewai_sandbox / "home" / ".local" / "share" / "crewai").is_dir()
    assert list((crewai_sandbox / "tmp").glob("crewai:*.lock"))
    from crewai_core.paths import db_storage_path  # noqa: PLC0415 - CrewAI is imported by the sandbox
    from crewai_core.settings import DEFAULT_CONFIG_PATH  # noqa: PLC0415

    assert Path(db_storage_path()) == crewai_sandbox / "data" / STORAGE_DIR
    assert DEFAULT_CONFIG_PATH.is_relative_to(crewai_sandbox)
    # ...but not the code under review: no prompt reaches CrewAI's kickoff log (reviewer.crew._NoTaskLog).
    written, holding = files_holding(crewai_sandbox, line_of(GALLERY_SOURCE, 65).strip())
    assert written
    assert holding == []


def files_holding(root: Path, text: str) -> tuple[list[Path], list[Path]]:
    """Every file under `root`, and those whose bytes contain `text`."""
    written = [path for path in root.rglob("*") if path.is_file()]
    return written, [path for path in written if text.encode() in path.read_bytes()]


# The same crew with the OpenAI API mocked at the httpx seam (respx) instead of a server.


def completion(payload: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps(payload)}}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def test_the_crew_against_the_api_mocked_with_respx() -> None:
    import httpx  # noqa: PLC0415
    import respx  # noqa: PLC0415

    base = "http://llm.invalid/v1"
    found = gallery_at(65)
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(f"{base}/chat/completions").mock(
            side_effect=[
                httpx.Response(200, json=completion({"findings": [found]}, 1200, 90)),
                httpx.Response(200, json=completion(verdicts([{"id": 1, "severity": "major"}]), 700, 80)),
            ]
        )
        result = await run([gallery()], crew(base))

    assert route.call_count == 2
    sent = json.loads(route.calls[0].request.content)
    assert sent["model"] == MODEL
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert route.calls[0].request.headers["authorization"].startswith("Bearer ")
    assert [(f.path, f.line, f.source) for f in crew_findings(result)] == [(GALLERY, 65, "crew")]
    assert result.llm_summary == usage_line(MODEL, files=1, hunks=3, cached=0, usage=Usage(1900, 170, 2), price=PRICE)
