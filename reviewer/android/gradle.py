"""Gradle build scripts (Groovy and Kotlin DSL) and version catalogs.

Build scripts are read with a block-aware scanner (comments and strings respected, `{ }` nesting tracked
with the name that opened each block), which is what these rules need: where a setting sits
(`buildTypes > release`, `repositories > maven`) and what string it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from reviewer.models import Category, Finding, Rule, Severity
from reviewer.secrets import HARDCODED_SECRET, SECRET_NAME, known_secret, looks_like_secret_value

DYNAMIC_VERSION = Rule(
    id="gradle-dynamic-version",
    title="Dynamic dependency version",
    severity=Severity.MAJOR,
    category=Category.BUILD,
    rationale=(
        "A version with `+` or `latest.release` resolves to whatever was published last: builds stop being "
        "reproducible, a dependency can change under a release without review, and a compromised publish is "
        "picked up automatically. Pin an exact version (and let Dependabot/Renovate propose upgrades)."
    ),
)

HTTP_REPOSITORY = Rule(
    id="gradle-http-repository",
    title="Maven repository over plain HTTP",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        "Dependencies fetched over `http://` can be replaced in transit by anyone on the network path, and "
        "the replaced code runs in the build and ships in the app. Use the repository's `https://` URL."
    ),
)

RELEASE_NOT_MINIFIED = Rule(
    id="gradle-release-not-minified",
    title="Release build without code shrinking",
    severity=Severity.MAJOR,
    category=Category.BUILD,
    rationale=(
        "With `isMinifyEnabled = false` the release APK ships every unused class and readable names: it is "
        "larger, slower to start and trivial to reverse-engineer. Enable R8 (`isMinifyEnabled = true`, "
        "usually with `isShrinkResources = true`) and keep rules for what reflection needs."
    ),
)

RELEASE_DEBUGGABLE = Rule(
    id="gradle-release-debuggable",
    title="Debuggable release build",
    severity=Severity.BLOCKER,
    category=Category.SECURITY,
    rationale=(
        "A debuggable release build lets anyone attach a debugger to the installed app, run code as it and "
        "read its private data; Google Play also rejects it. Remove `isDebuggable = true` from `release`."
    ),
)

HARDCODED_VERSION = Rule(
    id="gradle-hardcoded-version",
    title="Version hard-coded where a version catalog exists",
    severity=Severity.MINOR,
    category=Category.BUILD,
    rationale=(
        "This project declares its dependencies in a version catalog (`gradle/libs.versions.toml`). A "
        "coordinate with an inline version bypasses it: modules drift apart, and upgrade tools miss it. Add "
        "the library to the catalog and refer to it as `libs.<alias>`."
    ),
)

_STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'")
_COORDINATE = re.compile(r"^([\w.\-]+):([\w.\-]+):([^:@\s]+)(?:[:@].*)?$")
_DEPENDENCY_CONFIG = re.compile(
    r"^\s*(implementation|api|compileOnly|runtimeOnly|kapt|ksp|annotationProcessor|classpath|"
    r"(test|androidTest|debug|release)\w*(Implementation|Api|CompileOnly|RuntimeOnly))\b"
)
# `getByName("release") {` and `create("staging") {` are named by their string; `release {` by its word.
_BLOCK_STRING_NAME = re.compile(r"""["']([\w-]+)["']\s*\)\s*$""")
_BLOCK_WORD_NAME = re.compile(r"([\w-]+)\s*(?:\([^()]*\))?\s*$")


@dataclass(slots=True)
class ScriptLine:
    number: int
    code: str  # comments removed, strings kept
    blocks: tuple[str, ...]  # names of the enclosing blocks, outermost first


def scan(text: str) -> Iterator[ScriptLine]:
    """Each line with its comments removed and the names of the `{ }` blocks it sits in."""
    blocks: list[str] = []
    in_block_comment = False
    for number, raw in enumerate(text.splitlines(), start=1):
        code, in_block_comment = _strip_comments(raw, in_block_comment)
        yield ScriptLine(number, code, tuple(blocks))
        # Blank out string contents (same length) so braces inside strings do not count.
        outside = _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], code)
        for index, char in enumerate(outside):
            if char == "{":
                before = code[:index]
                match = _BLOCK_STRING_NAME.search(before) or _BLOCK_WORD_NAME.search(before)
                blocks.append(match.group(1) if match else "")
            elif char == "}" and blocks:
                blocks.pop()


def _strip_comments(line: str, in_block: bool) -> tuple[str, bool]:
    out = []
    index = 0
    quote = ""
    while index < len(line):
        pair = line[index : index + 2]
        char = line[index]
        if in_block:
            if pair == "*/":
                in_block = False
                index += 2
                continue
            index += 1
            continue
        if quote:
            out.append(char)
            if char == "\\" and index + 1 < len(line):
                out.append(line[index + 1])
                index += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
            out.append(char)
        elif pair == "//":
            break
        elif pair == "/*":
            in_block = True
            index += 2
            continue
        else:
            out.append(char)
        index += 1
    return "".join(out), in_block


def _strings(code: str) -> list[str]:
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in _STRING.finditer(code)]


def _is_dynamic(version: str) -> bool:
    return "+" in version or version.startswith("latest.")


def check_build_script(path: str, text: str, *, has_version_catalog: bool) -> Iterator[Finding]:
    uses_catalog = has_version_catalog or re.search(r"\blibs\.[a-zA-Z]", text) is not None
    for line in scan(text):
        code = line.code
        strings = _strings(code)
        in_release = "release" in line.blocks and "buildTypes" in line.blocks
        for value in strings:
            coordinate = _COORDINATE.match(value)
            if coordinate and _is_dynamic(coordinate.group(3)):
                fixed = f"{coordinate.group(1)}:{coordinate.group(2)}:<exact version>"
                yield DYNAMIC_VERSION.at(path, line.number, f"`{value}` has a dynamic version; pin it (`{fixed}`).")
            elif coordinate and uses_catalog and _DEPENDENCY_CONFIG.match(code):
                yield HARDCODED_VERSION.at(
                    path,
                    line.number,
                    f"`{value}` hard-codes version `{coordinate.group(3)}` although the project has a version "
                    "catalog: add it to `gradle/libs.versions.toml` and use `libs.<alias>`.",
                )
            if _is_http_repository(value, code, line.blocks):
                yield HTTP_REPOSITORY.at(
                    path,
                    line.number,
                    f"Repository `{value}` is fetched over plain HTTP; use HTTPS.",
                    suggestion=_replaced(text, line, value, "https://" + value.removeprefix("http://")),
                )
            secret = known_secret(value)
            if secret:
                yield HARDCODED_SECRET.at(path, line.number, f"Hard-coded secret ({secret}) in a build script.")
        if re.search(r"buildConfigField|resValue", code) and len(strings) >= 3 and "$" not in code:
            name, value = strings[1], strings[2].strip('\\"')
            if SECRET_NAME.search(name) and looks_like_secret_value(value) and not known_secret(value):
                yield HARDCODED_SECRET.at(path, line.number, f"`{name}` is a hard-coded secret compiled into the app.")
        if in_release and re.search(r"\b(isMinifyEnabled|minifyEnabled)\b\s*=?\s*false\b", code):
            yield RELEASE_NOT_MINIFIED.at(
                path,
                line.number,
                "The release build is not shrunk or obfuscated; enable R8 (`isMinifyEnabled = true`).",
                suggestion=_replaced(text, line, "false", "true"),
            )
        if in_release and re.search(r"\b(isDebuggable|debuggable)\b\s*=?\s*true\b", code):
            yield RELEASE_DEBUGGABLE.at(
                path, line.number, "The release build is debuggable; remove this line.", suggestion=""
            )


def _is_http_repository(value: str, code: str, blocks: tuple[str, ...]) -> bool:
    if not value.startswith("http://") or re.match(r"http://(localhost|127\.0\.0\.1)([:/]|$)", value):
        return False
    return bool({"repositories", "maven", "ivy"} & set(blocks)) or re.search(r"\b(maven|url)\b", code) is not None


def _raw(text: str, line: ScriptLine) -> str:
    return text.splitlines()[line.number - 1]


def _replaced(text: str, line: ScriptLine, old: str, new: str) -> str | None:
    raw = _raw(text, line)
    return raw.replace(old, new, 1) if raw.count(old) == 1 else None


def check_version_catalog(path: str, text: str) -> Iterator[Finding]:
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        code = raw.split("#", 1)[0].strip()
        if code.startswith("["):
            section = code.strip("[] ")
            continue
        for value in _strings(code):
            coordinate = _COORDINATE.match(value)
            version = coordinate.group(3) if coordinate else value
            is_version = section == "versions" or coordinate is not None or re.search(r"\bversion\s*=", code)
            if is_version and _is_dynamic(version) and re.fullmatch(r"[\w.\-+]+", version):
                yield DYNAMIC_VERSION.at(path, number, f"Version `{version}` is dynamic; pin an exact version.")
            secret = known_secret(value)
            if secret:
                yield HARDCODED_SECRET.at(path, number, f"Hard-coded secret ({secret}) in the version catalog.")
