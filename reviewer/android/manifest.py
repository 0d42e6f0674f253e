"""AndroidManifest.xml rules: exported components, backups, cleartext traffic, debuggable."""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.android.xml import Element, parse_xml
from reviewer.models import Category, Finding, Rule, Severity

EXPORTED_MISSING = Rule(
    id="manifest-exported-missing",
    title="Component with an intent filter and no android:exported",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        "Apps targeting Android 12 (API 31) or higher must declare `android:exported` on every activity, "
        "service and receiver with an intent filter (the install fails otherwise), and before that such a "
        "component was silently exported to every app. Say `false` unless other apps must start it."
    ),
)

EXPORTED_OPEN = Rule(
    id="manifest-exported-without-permission",
    title="Exported component without a permission",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        "An exported service, receiver or provider with no `android:permission` can be started, bound or "
        "queried by any app on the device, which can then drive it with crafted Intents or read its data. "
        'Protect it with a (signature-level) permission, or set `android:exported="false"`.'
    ),
)

ALLOW_BACKUP = Rule(
    id="manifest-allow-backup",
    title='android:allowBackup="true" without backup rules',
    severity=Severity.MINOR,
    category=Category.SECURITY,
    rationale=(
        'With `allowBackup="true"` and no `dataExtractionRules`/`fullBackupContent`, all app data '
        "(databases, shared preferences, tokens) is copied to cloud backups and can be pulled with adb backup "
        'on older devices. Exclude secrets with backup rules, or set `allowBackup="false"`.'
    ),
)

CLEARTEXT = Rule(
    id="manifest-cleartext-traffic",
    title="Cleartext HTTP traffic allowed",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        '`usesCleartextTraffic="true"` lets the app send HTTP without TLS, readable and changeable by '
        "anyone on the network. Use HTTPS; if one legacy host needs HTTP, allow only that domain in a "
        "`networkSecurityConfig`."
    ),
)

DEBUGGABLE = Rule(
    id="manifest-debuggable",
    title="android:debuggable set in the manifest",
    severity=Severity.BLOCKER,
    category=Category.SECURITY,
    rationale=(
        'A hard-coded `android:debuggable="true"` ships in release builds too: anyone can attach a '
        "debugger, run code as the app and read its private files. Remove it; the build type sets it for "
        "debug builds."
    ),
)

_COMPONENTS = ("activity", "activity-alias", "service", "receiver", "provider")


def _finding(rule: Rule, path: str, element: Element, message: str) -> Finding:
    return rule.at(path, element.line, message)


def _name(element: Element) -> str:
    return element.android("name") or element.tag


def check_manifest(path: str, data: bytes) -> Iterator[Finding]:
    root = parse_xml(data)
    for application in root.iter("application"):
        if application.android("debuggable") == "true":
            yield _finding(DEBUGGABLE, path, application, '`android:debuggable="true"` ships in release builds.')
        if application.android("usesCleartextTraffic") == "true":
            yield _finding(CLEARTEXT, path, application, "All HTTP traffic is allowed in cleartext.")
        if (
            application.android("allowBackup") == "true"
            and application.android("fullBackupContent") is None
            and application.android("dataExtractionRules") is None
        ):
            yield _finding(
                ALLOW_BACKUP,
                path,
                application,
                "All app data is backed up: add backup rules that exclude secrets.",
            )
    for tag in _COMPONENTS:
        for component in root.iter(tag):
            exported = component.android("exported")
            has_filter = any(child.tag == "intent-filter" for child in component.children)
            if exported is None and has_filter and tag != "provider":
                yield _finding(
                    EXPORTED_MISSING,
                    path,
                    component,
                    f"`{_name(component)}` has an intent filter but no `android:exported`: set it explicitly "
                    "(`false` unless other apps must start it).",
                )
            if (
                exported == "true"
                and tag in ("service", "receiver", "provider")
                and component.android("permission") is None
                and not (tag == "provider" and component.android("readPermission"))
            ):
                yield _finding(
                    EXPORTED_OPEN,
                    path,
                    component,
                    f"`{_name(component)}` is exported with no `android:permission`: any app can use it.",
                )
