"""Which files are reviewable, and the repository's `.github/ai-review.yml` configuration."""

from __future__ import annotations

import fnmatch
import re
from enum import StrEnum
from functools import lru_cache
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reviewer.models import Severity

# Files larger than this (new side, in bytes) are listed as not reviewed rather than parsed.
MAX_FILE_BYTES = 512 * 1024

CONFIG_PATH = ".github/ai-review.yml"


class FileKind(StrEnum):
    KOTLIN = "kotlin"
    KOTLIN_SCRIPT = "kotlin-script"
    JAVA = "java"
    GRADLE_GROOVY = "gradle-groovy"
    GRADLE_KTS = "gradle-kts"
    VERSION_CATALOG = "version-catalog"
    MANIFEST = "manifest"
    RESOURCE_XML = "resource-xml"
    PROGUARD = "proguard"


_SKIPPED_DIRS = ("build/", "generated/", ".idea/", ".gradle/", ".git/", "node_modules/")
_BINARY_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico", ".jar", ".aar", ".apk", ".aab", ".so", ".keystore",
    ".jks", ".ttf", ".otf", ".mp3", ".mp4", ".zip", ".class", ".dex", ".bin",
)  # fmt: skip
_LOCK_NAMES = ("gradle.lockfile", "package-lock.json", "yarn.lock", "uv.lock", "Cargo.lock")


def classify(path: str) -> tuple[FileKind | None, str]:
    """The kind of a reviewable file, or None and the reason it is skipped."""
    normalized = "/" + path.replace("\\", "/").lstrip("/")
    name = normalized.rsplit("/", 1)[-1]
    lower = name.lower()
    # `build/` counts before the source set (`app/build/...`), not as a package name (`src/main/java/a/build/`).
    outside_sources = normalized.split("/src/", 1)[0] + "/"
    for folder in _SKIPPED_DIRS:
        if f"/{folder}" in (outside_sources if folder == "build/" else normalized):
            return None, f"generated or build output ({folder.rstrip('/')}/)"
    if lower.endswith(_BINARY_SUFFIXES):
        return None, "binary file"
    if name in _LOCK_NAMES or lower.endswith(".lockfile"):
        return None, "lock file"
    if lower in ("build.gradle", "settings.gradle"):
        return FileKind.GRADLE_GROOVY, ""
    if lower in ("build.gradle.kts", "settings.gradle.kts"):
        return FileKind.GRADLE_KTS, ""
    if lower.endswith(".versions.toml") and "/gradle/" in normalized:
        return FileKind.VERSION_CATALOG, ""
    if lower.endswith(".kt"):
        return FileKind.KOTLIN, ""
    if lower.endswith(".kts"):
        return FileKind.KOTLIN_SCRIPT, ""
    if lower.endswith(".java"):
        return FileKind.JAVA, ""
    if name == "AndroidManifest.xml":
        return FileKind.MANIFEST, ""
    if lower.endswith(".xml") and re.search(r"/res/[^/]+/[^/]+\.xml$", normalized):
        return FileKind.RESOURCE_XML, ""
    if (lower.startswith("proguard") or lower == "consumer-rules.pro") and lower.endswith((".pro", ".txt", ".cfg")):
        return FileKind.PROGUARD, ""
    return None, "not a Kotlin, Java, Gradle, manifest, resource or ProGuard file"


def is_test_source(path: str) -> bool:
    """Test source sets (src/test, src/androidTest, src/*Test) and *Test.kt files."""
    normalized = "/" + path.replace("\\", "/").lstrip("/")
    if re.search(r"/src/(test|androidTest|testFixtures|[A-Za-z]*Test)[A-Za-z]*/", normalized):
        return True
    name = normalized.rsplit("/", 1)[-1]
    return bool(re.match(r".*(Test|Tests|Spec)\.(kt|java)$", name))


class PathsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ignore: tuple[str, ...] = ()
    include: tuple[str, ...] = ()


FilterMode = Literal["added", "diff_context", "file"]


class RepoConfig(BaseModel):
    """`.github/ai-review.yml`. Unknown keys are errors (a typo should not silently do nothing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    review_drafts: bool = False
    paths: PathsConfig = PathsConfig()
    min_severity: Severity = Severity.NIT
    max_comments: int = Field(default=25, ge=0, le=100)
    rules: RulesConfig = Field(default_factory=lambda: RulesConfig())  # noqa: PLW0108 - defined below
    instructions: str = Field(default="", max_length=4000)
    fail_on: Severity | Literal["never"] = Severity.BLOCKER
    filter: FilterMode = "added"

    def wants(self, path: str) -> bool:
        """Path globs: `include` (when given) must match, and no `ignore` may."""
        if self.paths.include and not any(_glob(path, pattern) for pattern in self.paths.include):
            return False
        return not any(_glob(path, pattern) for pattern in self.paths.ignore)


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    disable: tuple[str, ...] = ()

    @field_validator("disable", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


RepoConfig.model_rebuild()


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    """Glob with `**` spanning folders, `*` within one, like .gitignore-style path globs."""
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("^" + "".join(out) + "$")


def _glob(path: str, pattern: str) -> bool:
    pattern = pattern.strip()
    anchored = pattern.startswith("/")
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        # A folder: at any depth unless anchored with a leading slash or nested (as in .gitignore).
        pattern += "**"
        if not anchored and pattern.count("/") == 1:
            pattern = "**/" + pattern
    if "/" not in pattern:
        # A bare name pattern ("*.kt") matches in any folder, as in .gitignore.
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return bool(_compiled(pattern).match(path))


def parse_repo_config(text: str | None) -> tuple[RepoConfig, str | None]:
    """The repo's config and, when it is invalid, a message the bot can post (defaults are used then)."""
    if text is None or not text.strip():
        return RepoConfig(), None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        # PyYAML raises ValueError/TypeError for values it cannot build (an impossible date, a bad !!int).
        return RepoConfig(), f"{CONFIG_PATH} is not valid YAML ({exc}); the defaults were used."
    if data is None:
        return RepoConfig(), None
    if not isinstance(data, dict):
        return RepoConfig(), f"{CONFIG_PATH} must be a mapping of settings; the defaults were used."
    try:
        return RepoConfig.model_validate(data), None
    except ValidationError as exc:
        problems = "; ".join(f"`{'.'.join(str(p) for p in error['loc'])}`: {error['msg']}" for error in exc.errors())
        return RepoConfig(), f"{CONFIG_PATH} has invalid settings ({problems}); the defaults were used."
