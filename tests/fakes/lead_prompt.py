"""Reads the review lead's prompt (reviewer.crew.lead_prompt) back into the proposals it shows, and writes the
lead's answer: what the fake OpenAI server's responders need to play the lead."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_FILE = re.compile(r"^FILE (\S+)$")
_HEADER = re.compile(r"^#(\d+) line (\d+)(?:-(\d+))? (\w+) (\w+): (.*)$")


def shown_proposals(prompt: str) -> list[dict[str, Any]]:
    """Each numbered proposal of the prompt: id, path, line, end_line, severity, category, title."""
    path: str | None = None
    shown: list[dict[str, Any]] = []
    for line in prompt.splitlines():
        if found := _FILE.match(line):
            path = found.group(1)
        elif (found := _HEADER.match(line)) and path is not None:
            number, first, last, severity, category, title = found.groups()
            shown.append(
                {
                    "id": int(number),
                    "path": path,
                    "line": int(first),
                    "end_line": int(last or first),
                    "severity": severity,
                    "category": category,
                    "title": title,
                }
            )
    return shown


def verdicts(kept: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The lead's answer keeping these shown proposals (their `severity`, `confidence`, `title`, `body` as given;
    a missing body or confidence: keep the proposal's body, 0.8)."""
    return {
        "keep": [
            {
                "id": p["id"],
                "severity": p["severity"],
                "title": p.get("title"),
                "body": p.get("body"),
                "confidence": p.get("confidence", 0.8),
            }
            for p in kept
        ]
    }
