"""What a hard-coded secret looks like: known key formats anywhere, or a secret-named value."""

from __future__ import annotations

import re

from reviewer.models import Category, Rule, Severity

HARDCODED_SECRET = Rule(
    id="hardcoded-secret",
    title="Hard-coded secret",
    severity=Severity.BLOCKER,
    category=Category.SECURITY,
    rationale=(
        "Anything in an APK can be read back with apktool or jadx in minutes, and anything committed stays in "
        "the repository's history. A key, token or password in source, Gradle files or resources must be "
        "treated as leaked: rotate it, then load it at build time from an untracked file or the CI's secrets "
        "(e.g. `local.properties` + the Secrets Gradle Plugin), or better, keep it on a server."
    ),
)

# Formats that are secrets wherever they appear.
KNOWN_FORMATS = (
    ("Google API key", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
    ("AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("OpenAI API key", re.compile(r"\bsk-(proj-)?[A-Za-z0-9_\-]{32,}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("Stripe live key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{20,}\b")),
    ("private key", re.compile(r"-----BEGIN (RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----")),
)

SECRET_NAME = re.compile(
    r"(?i)(api[_-]?key|apikey|secret|passw(or)?d|passwd|access[_-]?token|auth[_-]?token|bearer|"
    r"client[_-]?secret|private[_-]?key|credential)"
)
_PLACEHOLDER = re.compile(
    r"(?i)^(|x+|\*+|\.+|-+|null|none|todo|changeme|change[_-]?me|your[_ -].*|<.*>|\$\{.*\}|\$[a-z_]+|"
    r"test|dummy|example.*|sample.*|placeholder|fake.*|secret|password|[a-z_]+\.[a-z_.]+)$"
)


def known_secret(text: str) -> str | None:
    """The name of the key format found in `text`, if any."""
    for name, pattern in KNOWN_FORMATS:
        if pattern.search(text):
            return name
    return None


def looks_like_secret_value(value: str) -> bool:
    """A literal that could be a real credential (not empty, a placeholder, a sentence or a reference)."""
    value = value.strip()
    if len(value) < 8 or " " in value or _PLACEHOLDER.match(value):
        return False
    # Real keys mix character classes; words and resource names do not.
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    return classes >= 2 and not re.fullmatch(r"[a-z]+([_.][a-z]+)*", value)
