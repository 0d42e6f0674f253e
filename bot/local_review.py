"""`python -m bot review`: the review engine on a local diff or file, for terminals, CI and pre-commit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reviewer.diff import FileDiff, parse_diff
from reviewer.engine import Change, ChangedFile, review_change, whole_file_change
from reviewer.files import CONFIG_PATH, parse_repo_config
from reviewer.models import Severity
from reviewer.render import dumps, review_body, to_json, to_sarif, to_text

EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"review: {message}", file=sys.stderr)  # noqa: T201
    return EXIT_USAGE


def _working_tree_source(root: Path, diff: FileDiff) -> bytes | None:
    """The file from the working tree, only if it is the version the diff describes."""
    if diff.new_path is None:
        return None
    candidate = root / diff.new_path
    try:
        data = candidate.read_bytes()
    except OSError:
        return None
    lines = data.decode("utf-8", errors="replace").splitlines()
    for number, text in diff.new_side_text().items():
        if number > len(lines) or lines[number - 1].rstrip("\r") != text:
            return None
    return data


def run_review(args: argparse.Namespace) -> int:
    root = Path(args.root)
    config_file = Path(args.config) if args.config else root / CONFIG_PATH
    config_text = None
    if config_file.is_file():
        config_text = config_file.read_text(encoding="utf-8", errors="replace")
    elif args.config:
        return _fail(f"no config file at {config_file}")
    config, config_error = parse_repo_config(config_text)
    if config_error:
        print(f"review: warning: {config_error}", file=sys.stderr)  # noqa: T201

    if args.whole_file:
        path = Path(args.whole_file)
        try:
            source = path.read_bytes()
        except OSError as exc:
            return _fail(f"cannot read {path}: {exc.strerror}")
        change = whole_file_change(args.whole_file, source)
    else:
        if args.diff is None:
            return _fail("give a DIFF_FILE, - for stdin, or --file PATH")
        try:
            raw = sys.stdin.buffer.read() if args.diff == "-" else Path(args.diff).read_bytes()
        except OSError as exc:
            return _fail(f"cannot read {args.diff}: {exc.strerror}")
        diffs = parse_diff(raw)
        if raw.strip() and not diffs:
            return _fail("the input is not a unified diff")
        catalog = (root / "gradle" / "libs.versions.toml").is_file()
        change = Change([ChangedFile(d, _working_tree_source(root, d)) for d in diffs], has_version_catalog=catalog)

    review = review_change(change, config)
    if args.format == "json":
        output = dumps(to_json(review))
    elif args.format == "sarif":
        output = dumps(to_sarif(review))
    elif args.format == "markdown":
        output = review_body(review)
    else:
        output = to_text(review)
    print(output)  # noqa: T201
    threshold = None if args.fail_on == "never" else Severity(args.fail_on)
    return EXIT_FINDINGS if threshold is not None and review.fails(threshold) else 0
