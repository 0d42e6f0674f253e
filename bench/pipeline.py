"""Pipeline: PR-sized changes through the whole reviewer (rules, token budget, CrewAI reviewer and lead, anchoring)
against the fake OpenAI server of tests/fakes, at 0 s and 1 s of simulated LLM latency. No chunk cache.

PRs: every real diff in tests/fixtures/diffs with something for the LLM to review (parsed with parse_diff; the
rules and the prompts see the diff's lines only), then synthetic PRs made from the real Kotlin corpus: in one or
two files a block of 20-60 lines becomes added lines, and the whole new file is given as `new_source`.
The fake's reviewer answers with one proposal quoting a real added line of its chunk (so anchoring runs); the
fake's lead returns every proposal it was shown. So every chunk costs two calls, one after the other.

Figures, each beside its target:
  overhead    per-review wall time minus the LLM's own time: the length of the union of [arrival, arrival +
              latency] over the review's requests as the fake recorded them (each request carries its review's
              number in a header). Conservative: the fake runs in this process, so its own work (JSON, request
              checks, answers; ~5 ms a call) counts as overhead.
  throughput  C workers, each reviewing K PRs one after the other (all start together, as on a backlog), at 1 s;
              once with asyncio's default executor and once with a larger one (CrewAI calls the sync OpenAI
              client through asyncio.to_thread, so every waiting call holds one of its threads).
  tokens      LLM calls and prompt tokens per review from the fake's records (it reports
              reviewer.budget.estimate_tokens of each request's messages, the budget's own estimator), and prompt
              tokens / estimate_tokens of the changed lines (added and removed lines of the files the LLM reviews).
The machine is shared and noisy: the ratios are measured in one run. The run is bounded by --timeout; it exits
non-zero only when a review's LLM part failed or CrewAI's token counts disagree with the fake's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import itertools
import logging
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.jobs.worker import THREAD_HEADROOM
from reviewer.budget import estimate_tokens
from reviewer.crew import LEAD_ROLE, REVIEWER_ROLE, CrewReviewer, LLMConfig, load_crewai, prompt_overhead
from reviewer.diff import FileDiff, Hunk, Line, parse_diff
from reviewer.engine import Change, ChangedFile, LLMBudget, review
from reviewer.files import classify
from reviewer.models import Review

TARGET_OVERHEAD_MS = 100.0  # median per review, outside the LLM's own time
TARGET_THROUGHPUT_SHARE = 0.9  # of the ideal reviews/s at a concurrency
TARGET_PROMPT_RATIO = 3.0  # prompt tokens / tokens of the changed lines, median per review

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
MODEL = "fake-model"
API_KEY = "sk-bench"
SEED = 5
CONTEXT_LINES = 3  # unchanged lines around each synthetic block, as git shows them
BLOCK_LINES = (20, 60)

_SECTION = re.compile(r"^--- (\S+) \(lines \d+-\d+\)$")
_ADDED = re.compile(r"^ *(\d+) \+ (.*)$")
_SUMMARY = re.compile(r"(\d+) call\(s\).*?; ([\d,]+) prompt \+")


# The work: PRs from real diffs and from real Kotlin.


@dataclass(slots=True)
class PR:
    name: str
    source: str  # "real diff" or "synthetic"
    change: Change
    changed_tokens: int  # estimate_tokens of the added and removed lines of the files the LLM may review


def _changed_tokens(change: Change) -> int:
    texts = [
        line.text
        for changed in change.files
        if changed.diff.status != "removed" and classify(changed.diff.path)[0] is not None
        for line in changed.diff.lines()
        if line.kind in ("added", "removed")
    ]
    return estimate_tokens("\n".join(texts))


def real_prs() -> list[PR]:
    prs = []
    for path in sorted((FIXTURES / "diffs").glob("*.diff")):
        change = Change([ChangedFile(diff) for diff in parse_diff(path.read_bytes())])
        reviewable = [
            c for c in change.files if c.diff.status != "removed" and c.diff.added_lines() and classify(c.diff.path)[0]
        ]
        if reviewable:  # a deletion-only PR gives the LLM nothing to do
            prs.append(PR(path.stem, "real diff", change, _changed_tokens(change)))
    return prs


def _synthetic_file(name: str, source: bytes, rng: random.Random) -> ChangedFile:
    """`source` as the new version of a file whose base lacked one block of 20-60 lines."""
    lines = source.decode("utf-8", "replace").splitlines()
    size = min(rng.randint(*BLOCK_LINES), len(lines))
    start = rng.randint(1, len(lines) - size + 1)  # first added line, 1-based
    end = start + size - 1
    first, last = max(1, start - CONTEXT_LINES), min(len(lines), end + CONTEXT_LINES)
    hunk_lines = []
    for number in range(first, last + 1):
        text = lines[number - 1]
        if start <= number <= end:
            hunk_lines.append(Line("added", None, number, text))
        else:
            old = number if number < start else number - size
            hunk_lines.append(Line("context", old, number, text))
    old_len = (last - first + 1) - size
    hunk = Hunk(first if old_len else first - 1, old_len, first, last - first + 1, "", hunk_lines)
    path = f"app/src/main/java/{name}"
    return ChangedFile(FileDiff(path, path, "modified", hunks=[hunk]), source)


def synthetic_prs(count: int, rng: random.Random) -> list[PR]:
    corpus = sorted(p for p in (FIXTURES / "kotlin" / "corpus").glob("*.kt") if len(p.read_bytes().splitlines()) > 40)
    prs = []
    for index in range(count):
        picked = rng.sample(corpus, rng.choice((1, 1, 2)))
        change = Change([_synthetic_file(p.name, p.read_bytes(), rng) for p in picked])
        prs.append(PR(f"synthetic-{index + 1}", "synthetic", change, _changed_tokens(change)))
    return prs


# The fake LLM's answers.


class Responder:
    """The reviewer proposes one finding on an added line of its chunk; the lead keeps every proposal."""

    def __init__(self) -> None:
        self.reviewer_calls = 0
        self.lead_calls = 0
        self._lock = threading.Lock()  # the fake answers from one thread per connection

    def __call__(self, body: dict[str, Any]) -> Any:
        from tests.fakes.lead_prompt import shown_proposals, verdicts  # noqa: PLC0415 - with the fake
        from tests.fakes.openai_wire import Reply, prompt_text  # noqa: PLC0415

        text = prompt_text(body["messages"])
        if f"You are {LEAD_ROLE}" in text:
            with self._lock:
                self.lead_calls += 1
            answer = verdicts(shown_proposals(text))
        elif f"You are {REVIEWER_ROLE}" in text:
            with self._lock:
                self.reviewer_calls += 1
            answer = {"findings": _propose(text)}
        else:
            raise ValueError("a request from neither agent")
        return Reply.json(answer, prompt_tokens=estimate_tokens(text))


def _propose(prompt: str) -> list[dict[str, Any]]:
    path, candidates = None, []
    for line in prompt.splitlines():
        if section := _SECTION.match(line):
            path = section.group(1)
        elif (added := _ADDED.match(line)) and path is not None:
            candidates.append((path, int(added.group(1)), added.group(2)))
    if not candidates:
        return []
    # The first added line with some substance (not a brace or a blank), else the first one.
    path, number, quote = next(((p, n, q) for p, n, q in candidates if len(q.strip()) >= 20), candidates[0])
    return [
        {
            "path": path,
            "line": number,
            "end_line": number,
            "quote": quote,
            "severity": "minor",
            "category": "correctness",
            "title": "This line may not do what the change intends",
            "body": "The value computed here is used below without a check. Handle the empty case explicitly.",
            "suggestion": None,
            "confidence": 0.6,
        }
    ]


def _is_lead(body: dict[str, Any]) -> bool:
    return any(f"You are {LEAD_ROLE}" in str(m.get("content")) for m in body["messages"])


# Measuring.


# Each review's HTTP requests carry its number in a header, so the fake's records can be split by review even when
# several run at once. Set in the task that awaits review(); asyncio.to_thread (CrewAI's way to its sync OpenAI
# client) copies it into the worker thread.
TAG_HEADER = "x-bench-review"
_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("bench_review", default="")
_numbers = itertools.count(1)


def _tag_requests() -> None:
    """Wrap httpx.Client.send (the sync client CrewAI uses) to add TAG_HEADER; the benchmark's only patch."""
    import httpx  # noqa: PLC0415

    send = httpx.Client.send

    def tagged(self: httpx.Client, request: httpx.Request, **options: Any) -> httpx.Response:
        if tag := _TAG.get():
            request.headers[TAG_HEADER] = tag
        return send(self, request, **options)

    httpx.Client.send = tagged  # type: ignore[method-assign]


@dataclass(slots=True)
class Sample:
    pr: PR
    tag: str
    wall: float  # seconds
    result: Review
    llm: float = 0.0  # seconds during which at least one of its calls was waiting on the fake's latency
    prompts: list[tuple[str, int]] = field(default_factory=list)  # (agent, prompt tokens) per call, as the fake saw

    @property
    def calls(self) -> int:
        return len(self.prompts)

    @property
    def prompt_tokens(self) -> int:
        return sum(tokens for _, tokens in self.prompts)

    @property
    def overhead(self) -> float:
        return self.wall - self.llm

    @property
    def ratio(self) -> float:
        return self.prompt_tokens / self.pr.changed_tokens

    @property
    def counted(self) -> tuple[int, int]:
        """(calls, prompt tokens) as CrewAI counted them, from the review's usage line."""
        found = _SUMMARY.search(self.result.llm_summary or "")
        return (int(found.group(1)), int(found.group(2).replace(",", ""))) if found else (0, 0)

    @property
    def crew_findings(self) -> int:
        return sum(1 for f in self.result.findings if f.source == "crew")

    @property
    def failed(self) -> bool:
        return bool(self.result.mode_note) or self.result.reviewer != "crew"


@dataclass(slots=True)
class Phase:
    samples: list[Sample]
    seconds: float
    cpu: float  # this process's CPU seconds (every thread, the fake's included)
    threads: int  # the default executor's size
    peak_calls: int  # calls waiting on the fake at once, at most


async def _review(pr: PR, llm: CrewReviewer) -> Sample:
    tag = f"{next(_numbers)}"
    _TAG.set(tag)  # this task's context only
    started = time.monotonic()
    result = await review(pr.change, llm=llm, cache=None, budget=LLMBudget())
    return Sample(pr, tag, time.monotonic() - started, result)


def _busy(starts: Sequence[float], latency: float) -> float:
    """The length of the union of the waits [arrival, arrival + latency]."""
    total, end = 0.0, float("-inf")
    for start in sorted(starts):
        stop = start + latency
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _peak(starts: Sequence[float], latency: float) -> int:
    events = sorted([(at, 1) for at in starts] + [(at + latency, -1) for at in starts])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


async def phase(prs: Sequence[PR], fake: Any, llm: CrewReviewer, *, workers: int = 1, each: int | None = None) -> Phase:
    """`workers` reviewing at once, each `each` PRs one after the other (worker w starts at PR w * each)."""
    each = len(prs) if each is None else each
    loop = asyncio.get_running_loop()
    executor = loop._default_executor  # type: ignore[attr-defined]
    threads = executor._max_workers if executor is not None else min(32, (os.cpu_count() or 1) + 4)
    before = len(fake.requests)

    async def worker(w: int) -> list[Sample]:
        return [await asyncio.create_task(_review(prs[(w * each + j) % len(prs)], llm)) for j in range(each)]

    started, cpu = time.monotonic(), time.process_time()
    done = await asyncio.gather(*(worker(w) for w in range(workers)))
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    samples = [sample for batch in done for sample in batch]
    requests = [r for r in fake.requests[before:] if r.call is not None]
    for sample in samples:
        mine = [r for r in requests if r.headers.get(TAG_HEADER) == sample.tag]
        sample.llm = _busy([r.at for r in mine], fake.latency)
        sample.prompts = [
            ("lead" if _is_lead(r.body) else "reviewer", r.usage.prompt_tokens if r.usage else 0) for r in mine
        ]
    return Phase(samples, seconds, cpu, threads, _peak([r.at for r in requests], fake.latency))


async def phase_warm(llm: CrewReviewer, count: int) -> Phase:
    await llm.warm(count)
    return Phase([], 0.0, 0.0, 0, 0)


def _run(work: Callable[[], Awaitable[Phase]], timeout: float, threads: int | None = None) -> Phase:
    """One phase on its own event loop, bounded in time; `threads` sizes the default executor."""

    async def bounded() -> Phase:
        if threads is not None:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))
        return await asyncio.wait_for(work(), timeout)

    return asyncio.run(bounded())


# Reporting.


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _row(figure: str, value: str, target: str = "", ok: bool | None = None) -> None:
    status = "" if ok is None else ("OK" if ok else "MISS")
    print(f"  {figure:<58} {value:>16}   {target:<34} {status}")


def _sandbox() -> Path:
    """CrewAI writes under HOME, XDG_DATA_HOME, its storage dir and TMPDIR: all of them here, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "TMPDIR"):
        os.environ[name] = str(root / name.lower())
        (root / name.lower()).mkdir()
    os.environ["CREWAI_STORAGE_DIR"] = "bench-pipeline"
    tempfile.tempdir = os.environ["TMPDIR"]
    os.environ.pop("REDIS_URL", None)  # CrewAI would keep its locks in Redis
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"]))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=20, help="PRs in the set (real diffs first)")
    parser.add_argument("--latency", type=float, default=1.0, help="the fake LLM's latency, seconds")
    parser.add_argument("--concurrency", type=int, default=8, help="reviews at once for the throughput run")
    parser.add_argument("--each", type=int, default=3, help="reviews per concurrent worker in the throughput run")
    parser.add_argument("--timeout", type=float, default=150.0, help="bound on the whole run, seconds")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    root = _sandbox()
    logging.basicConfig(level=logging.WARNING)  # before CrewAI's providers call basicConfig themselves
    wide_threads = args.concurrency * LLMBudget().concurrency + THREAD_HEADROOM  # as size_thread_pool
    try:
        started = time.monotonic()
        crewai = load_crewai()
        imported = time.monotonic() - started
        _tag_requests()
        from tests.fakes.openai_server import FakeOpenAI  # noqa: PLC0415 - imports pytest

        prs = real_prs()
        prs += synthetic_prs(max(0, args.reviews - len(prs)), random.Random(SEED))
        prs = prs[: args.reviews]
        responder = Responder()
        with FakeOpenAI(responder=responder, api_key=API_KEY, check_schema=True) as fake:
            llm = CrewReviewer(LLMConfig(MODEL, API_KEY, base_url=fake.base_url, timeout=30.0, max_retries=0))

            def run(work: Callable[[], Awaitable[Phase]], threads: int | None = None) -> Phase:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SystemExit(f"over the run's bound of {args.timeout:g} s")
                try:
                    return _run(work, remaining, threads)
                except TimeoutError:
                    raise SystemExit(f"over the run's bound of {args.timeout:g} s") from None

            warm = run(lambda: phase(prs[:1], fake, llm))  # the first kickoff pays ~0.1-0.7 s once
            fast = run(lambda: phase(prs, fake, llm))
            fake.latency = args.latency
            slow = run(lambda: phase(prs, fake, llm))
            # As `python -m bot worker` does at start: one LLM object per call that may be in flight.
            run(lambda: phase_warm(llm, args.concurrency * LLMBudget().concurrency))
            loads = [
                (label, run(lambda: phase(prs, fake, llm, workers=args.concurrency, each=args.each), threads))
                for label, threads in (
                    ("default executor", None),
                    ("executor sized as the workers size it", wide_threads),
                )
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.monotonic() - started
    report(
        args,
        prs,
        crewai.__version__,
        imported=imported,
        total=total,
        responder=responder,
        phases=(warm, fast, slow),
        loads=loads,
    )


def report(
    args: argparse.Namespace,
    prs: Sequence[PR],
    version: str,
    *,
    imported: float,
    total: float,
    responder: Responder,
    phases: tuple[Phase, Phase, Phase],  # warm-up, latency 0, latency > 0: one review at a time
    loads: Sequence[tuple[str, Phase]],
) -> None:
    warm, fast, slow = phases
    every = [s for p in (warm, fast, slow, *(load for _, load in loads)) for s in p.samples]
    failures = sum(s.failed for s in every)
    agree = all(s.counted == (s.calls, s.prompt_tokens) for s in every)
    real = sum(1 for pr in prs if pr.source == "real diff")
    print(
        f"PRs: {len(prs)} = {real} real diffs from tests/fixtures/diffs (parse_diff; deletion-only ones left out) + "
        f"{len(prs) - real} synthetic\n  (real Kotlin from tests/fixtures/kotlin/corpus: in 1-2 files a block of "
        f"{BLOCK_LINES[0]}-{BLOCK_LINES[1]} lines made added lines, whole new file known; seed {SEED})"
    )
    print(
        f"run: CrewAI {version} (import {imported:.1f} s), fake OpenAI server in this process, no cache, default "
        f"LLMBudget (chunk concurrency {LLMBudget().concurrency}),\n  {os.cpu_count()} cores, one warm-up review "
        f"not counted, {total:.0f} s in all; the fake answered {responder.reviewer_calls} reviewer and "
        f"{responder.lead_calls} lead calls; {failures} review(s) with a failed LLM part"
    )
    print()
    _row("figure", "value", "target")
    lat = f"{args.latency:g} s"
    for latency, run in (("0 s", fast), (lat, slow)):
        print(f"  latency {latency}, one review at a time:")
        overheads = [s.overhead for s in run.samples]
        median = statistics.median(overheads)
        _row(
            "overhead per review (wall - LLM time), median", _ms(median), f"<= {TARGET_OVERHEAD_MS:g} ms", median <= 0.1
        )
        _row("overhead per review (wall - LLM time), p90", _ms(_p90(overheads)))
    llm_time = {s.pr.name: s.llm for s in slow.samples}
    _row("LLM time per review (its calls one after the other), mean", f"{statistics.mean(llm_time.values()):.2f} s")
    for label, load in loads:
        print(
            f"  latency {lat}, {args.concurrency} reviews at once x {args.each} each = {len(load.samples)} reviews, "
            f"{label} ({load.threads} threads):"
        )
        _load(load, prs, llm_time, workers=args.concurrency, each=args.each, judged=label != "default executor")
    print("  per review (latency 0 s run):")
    _tokens(fast.samples)
    _row("the review's usage line = the fake's records (calls, tokens)", "yes" if agree else "NO")
    crew = statistics.mean(s.crew_findings for s in fast.samples)
    _row("crew findings anchored and kept, per review, mean", f"{crew:.1f}")
    print(
        "\nIdeal reviews/s: each chunk costs a reviewer call then a lead call, 2 x latency one after the other, and a\n"
        "review's chunks run side by side, so C reviews at once give at most C / (2 x latency) = "
        f"{args.concurrency / (2 * args.latency):.1f}/s. The target\n"
        "uses each review's measured LLM time instead of 2 x latency: ideal = reviews / the busiest worker's summed\n"
        "LLM time, which covers a PR whose chunks queue behind LLMBudget.concurrency (more than 2 x latency)."
    )
    if failures or not agree:
        sys.exit("the pipeline misbehaved: see the figures above")


def _load(load: Phase, prs: Sequence[PR], llm_time: dict[str, float], *, workers: int, each: int, judged: bool) -> None:
    """`judged`: the run set up as the workers are (their thread pool); the stock executor is for comparison."""
    ideal = max(sum(llm_time[prs[(w * each + j) % len(prs)].name] for j in range(each)) for w in range(workers))
    rate, ideal_rate = len(load.samples) / load.seconds, len(load.samples) / ideal
    goal = TARGET_THROUGHPUT_SHARE * ideal_rate
    if judged:
        _row("reviews per second", f"{rate:.2f}/s", f">= {goal:.2f}/s (0.9 x {ideal_rate:.2f} ideal)", rate >= goal)
    else:
        _row("reviews per second (reference: not how workers run)", f"{rate:.2f}/s")
    overheads = [s.overhead for s in load.samples]
    _row("  overhead per review (wall - LLM time), median", _ms(statistics.median(overheads)))
    _row("  overhead per review (wall - LLM time), p90", _ms(_p90(overheads)))
    _row("  most LLM calls waiting at once", f"{load.peak_calls}")
    _row("  CPU busy (process CPU seconds / wall seconds)", f"{load.cpu / load.seconds:.2f} cores")


def _tokens(samples: Sequence[Sample]) -> None:
    calls = [s.calls for s in samples]
    prompts = [s.prompt_tokens for s in samples]
    _row("LLM calls, mean (min-max)", f"{statistics.mean(calls):.1f} ({min(calls)}-{max(calls)})")
    _row("prompt tokens, median (min-max)", f"{statistics.median(prompts):,.0f} ({min(prompts):,}-{max(prompts):,})")
    ratio = statistics.median(s.ratio for s in samples)
    _row(
        "prompt tokens / changed-line tokens, median",
        f"{ratio:.2f}",
        f"<= {TARGET_PROMPT_RATIO:g}",
        ratio <= TARGET_PROMPT_RATIO,
    )
    for source in ("real diff", "synthetic"):
        ratios = [s.ratio for s in samples if s.pr.source == source]
        if ratios:
            spread = f"{statistics.median(ratios):.1f} ({min(ratios):.1f}-{max(ratios):.1f})"
            _row(f"  {source}s, median (min-max)", spread)
    for agent in ("reviewer", "lead"):
        tokens = [t for s in samples for a, t in s.prompts if a == agent]
        _row(f"  prompt tokens per {agent} call, median", f"{statistics.median(tokens):,.0f}")
    _row("  fixed part of a reviewer call the budget assumes", f"{prompt_overhead():,}")


if __name__ == "__main__":
    main()
