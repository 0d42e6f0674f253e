"""Review -> markdown (PR review body and inline comment bodies), plain text, JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
from typing import Any

from reviewer.models import Finding, Review, Severity

TOOL_NAME = "AI Dev Companion"
TOOL_URI = "https://github.com/apps/ai-dev-companion"
FINGERPRINT_MARKER = "ai-dev-companion:fp="
# GitHub rejects bodies over 65,536 characters.
MAX_BODY_CHARS = 65_000

SEVERITY_ICON = {Severity.BLOCKER: "🔴", Severity.MAJOR: "🟠", Severity.MINOR: "🟡", Severity.NIT: "⚪"}
_SARIF_LEVEL = {
    Severity.BLOCKER: "error",
    Severity.MAJOR: "error",
    Severity.MINOR: "warning",
    Severity.NIT: "note",
}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def fingerprint_comment(finding: Finding) -> str:
    return f"<!-- {FINGERPRINT_MARKER}{finding.fingerprint} -->"


def comment_body(finding: Finding) -> str:
    """The body of one inline comment: severity, rule, message, why, and a suggestion when it is exact."""
    parts = [
        f"{SEVERITY_ICON[finding.severity]} **{finding.severity.value}** · {finding.category.value} · "
        f"`{finding.rule_id}`",
        "",
        f"**{finding.title}**: {finding.message}",
    ]
    if finding.rationale:
        parts += ["", f"<details><summary>Why</summary>\n\n{finding.rationale}\n</details>"]
    if finding.suggestion is not None and finding.placement == "inline":
        parts += ["", "```suggestion", finding.suggestion, "```"]
    parts += ["", fingerprint_comment(finding)]
    return "\n".join(parts)


def review_body(review: Review) -> str:
    """The PR review's summary: mode, counts, findings that are not inline, files not reviewed."""
    counts = review.counts()
    lines = [f"## {TOOL_NAME}", ""]
    if review.mode_note:
        lines += [f"> {review.mode_note}", ""]
    if review.findings:
        summary = ", ".join(f"{counts[s]} {s.value}" for s in Severity if counts[s])
        lines.append(f"**{len(review.findings)} finding(s)**: {summary}.")
    else:
        lines.append(
            "No findings on the changed lines."
            if review.reviewer == "crew"
            else "No findings from the rules on the changed lines."
        )
    lines.append(f"Reviewed {review.files_reviewed} file(s), {review.lines_reviewed} line(s).")
    in_body = [f for f in review.findings if f.placement == "body"]
    if in_body:
        lines += ["", "### Findings outside the diff's lines", ""]
        for finding in in_body:
            where = f"{finding.path}:{finding.line}" + (
                f"-{finding.end_line}" if finding.end_line != finding.line else ""
            )
            lines.append(
                f"- {SEVERITY_ICON[finding.severity]} `{where}` **{finding.title}** (`{finding.rule_id}`): "
                f"{finding.message}"
            )
    if review.omitted:
        lines += ["", f"{review.omitted} more finding(s) were not listed (limit reached)."]
    if review.notes:
        lines += ["", "<details><summary>Files not reviewed (or only in part)</summary>", ""]
        lines += [f"- `{note.path}`: {note.reason}" for note in review.notes]
        lines += ["", "</details>"]
    if review.llm_summary:
        lines += ["", review.llm_summary]
    return truncate("\n".join(lines))


def truncate(body: str, limit: int = MAX_BODY_CHARS) -> str:
    if len(body) <= limit:
        return body
    note = "\n\n… (truncated: the full list is in the check run and the JSON output)"
    return body[: limit - len(note)] + note


def to_text(review: Review) -> str:
    """One line a finding, compiler style, then the notes: for terminals and CI logs."""
    out = [
        f"{f.path}:{f.line}: {f.severity.value}: [{f.rule_id}] {f.message}"
        + (f"\n    suggestion: {f.suggestion}" if f.suggestion else "")
        for f in review.findings
    ]
    out += [f"{note.path}: note: {note.reason}" for note in review.notes]
    counts = review.counts()
    summary = ", ".join(f"{counts[s]} {s.value}" for s in Severity)
    out.append(f"{len(review.findings)} finding(s) ({summary}) in {review.files_reviewed} file(s)")
    if review.mode_note:
        out.append(review.mode_note)
    if review.llm_summary:
        out.append(review.llm_summary)
    return "\n".join(out)


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity.value,
        "category": finding.category.value,
        "path": finding.path,
        "line": finding.line,
        "end_line": finding.end_line,
        "message": finding.message,
        "rationale": finding.rationale,
        "suggestion": finding.suggestion,
        "source": finding.source,
        "placement": finding.placement,
        "fingerprint": finding.fingerprint,
    }


def to_json(review: Review) -> dict[str, Any]:
    return {
        "reviewer": review.reviewer,
        "mode_note": review.mode_note,
        "llm_summary": review.llm_summary,
        "summary": {s.value: n for s, n in review.counts().items()},
        "files_reviewed": review.files_reviewed,
        "lines_reviewed": review.lines_reviewed,
        "findings": [finding_json(f) for f in review.findings],
        "omitted": review.omitted,
        "notes": [{"path": n.path, "reason": n.reason} for n in review.notes],
    }


def to_sarif(review: Review, version: str = "0.1.0") -> dict[str, Any]:
    """SARIF 2.1.0, as GitHub code scanning and IDEs read it."""
    rules: dict[str, Finding] = {}
    for finding in review.findings:
        rules.setdefault(finding.rule_id, finding)
    rule_ids = sorted(rules)
    descriptors = [
        {
            "id": rule_id,
            "name": "".join(part.capitalize() for part in rule_id.split("-")),
            "shortDescription": {"text": rules[rule_id].title},
            "fullDescription": {"text": rules[rule_id].rationale or rules[rule_id].title},
            "defaultConfiguration": {"level": _SARIF_LEVEL[rules[rule_id].severity]},
            "properties": {
                "tags": [rules[rule_id].category.value],
                "severity": rules[rule_id].severity.value,
            },
        }
        for rule_id in rule_ids
    ]
    results = []
    for finding in review.findings:
        result: dict[str, Any] = {
            "ruleId": finding.rule_id,
            "ruleIndex": rule_ids.index(finding.rule_id),
            "level": _SARIF_LEVEL[finding.severity],
            "message": {"text": finding.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": finding.path, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": finding.line, "endLine": finding.end_line},
                    }
                }
            ],
            "partialFingerprints": {"aiDevCompanion/v1": finding.fingerprint},
        }
        if finding.suggestion is not None:
            result["fixes"] = [
                {
                    "description": {"text": f"Apply the suggestion of {finding.rule_id}"},
                    "artifactChanges": [
                        {
                            "artifactLocation": {"uri": finding.path, "uriBaseId": "%SRCROOT%"},
                            "replacements": [
                                {
                                    "deletedRegion": {"startLine": finding.line, "endLine": finding.end_line},
                                    "insertedContent": {"text": finding.suggestion + "\n"},
                                }
                            ],
                        }
                    ],
                }
            ]
        results.append(result)
    notifications = [{"level": "note", "message": {"text": f"{note.path}: {note.reason}"}} for note in review.notes]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "informationUri": TOOL_URI,
                        "version": version,
                        "rules": descriptors,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The repository root"}}},
                "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
                "results": results,
            }
        ],
    }


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
