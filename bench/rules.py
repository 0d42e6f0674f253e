"""Rules throughput: Kotlin lines per second for the whole rule set, one core, each file parsed once.

Corpus: the real open-source Kotlin files in tests/fixtures/kotlin (see tests/fixtures/SOURCES.md),
reviewed whole, repeated until about `--seconds` of work. Target: >= 50,000 lines/s.
Also prints parse-only throughput in the same run, so the rules' own cost is visible as a ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from reviewer.engine import review_change, whole_file_change
from reviewer.kotlin import check_kotlin
from reviewer.kotlin.source import parse

TARGET_LINES_PER_SECOND = 50_000
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "kotlin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="approximate time per measurement")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    # Some smell fixtures are copies of corpus files: count each distinct file once.
    unique = {p.read_bytes(): p.name for p in sorted(CORPUS.rglob("*.kt"))}
    files = [(name, data) for data, name in unique.items()]
    lines = sum(len(data.splitlines()) for _, data in files)
    if not files:
        raise SystemExit(f"no Kotlin files under {CORPUS}")

    def measure(work: str) -> float:
        rounds, started = 0, time.perf_counter()
        while True:
            for name, data in files:
                if work == "parse":
                    parse(data)
                elif work == "rules":
                    for _ in check_kotlin(name, data, is_test=False):
                        pass
                else:
                    review_change(whole_file_change(f"app/src/main/java/{name}", data))
            rounds += 1
            elapsed = time.perf_counter() - started
            if elapsed >= args.seconds:
                return rounds * lines / elapsed

    parse_rate = measure("parse")
    rules_rate = measure("rules")
    engine_rate = measure("engine")
    print(f"corpus: {len(files)} real Kotlin files, {lines} lines (one core)")
    print(f"parse only (tree-sitter)      {parse_rate:>10,.0f} lines/s")
    status = "OK" if rules_rate >= TARGET_LINES_PER_SECOND else "BELOW TARGET"
    target = f"target >= {TARGET_LINES_PER_SECOND:,}"
    print(f"parse + all Kotlin rules      {rules_rate:>10,.0f} lines/s   {target}  {status}")
    print(f"whole engine (review_change)  {engine_rate:>10,.0f} lines/s")
    print(f"rules cost over parsing: x{parse_rate / rules_rate:.2f}")


if __name__ == "__main__":
    main()
