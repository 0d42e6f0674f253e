"""Security: secrets in logs and source, WebView JavaScript bridges, mutable PendingIntents."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tree_sitter import Node

from reviewer.kotlin.registry import KotlinRule
from reviewer.kotlin.source import KotlinFile, ancestors, callee_name, receiver_text
from reviewer.models import Category, Finding, Rule, Severity
from reviewer.secrets import HARDCODED_SECRET, SECRET_NAME, known_secret, looks_like_secret_value

LOG_SECRET = Rule(
    id="log-sensitive-data",
    title="Sensitive value written to the log",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        "Logcat is readable by anyone with a USB cable, by bug-report attachments and, on older Android "
        "versions, by other apps; log lines also end up in crash-reporting backends. Never log tokens, "
        "passwords or keys, even in debug builds: log that a value exists, or a short hash of it."
    ),
)

WEBVIEW_BRIDGE = Rule(
    id="webview-js-interface",
    title="WebView with JavaScript and a JavaScript interface",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        "`addJavascriptInterface` exposes Kotlin objects to every page the WebView loads, including pages "
        "reached by redirects or injected content; with JavaScript enabled any such page can call them. Load "
        "only trusted, HTTPS content, restrict navigation (`shouldOverrideUrlLoading`), or use "
        "`WebViewCompat.addWebMessageListener` with an origin allow-list instead."
    ),
)

PENDING_INTENT = Rule(
    id="pending-intent-mutability",
    title="PendingIntent without FLAG_IMMUTABLE or FLAG_MUTABLE",
    severity=Severity.MAJOR,
    category=Category.SECURITY,
    rationale=(
        "From Android 12 (API 31) creating a PendingIntent without `FLAG_IMMUTABLE` or `FLAG_MUTABLE` throws "
        "an IllegalArgumentException, and a mutable PendingIntent handed to another app lets it rewrite the "
        "Intent. Use `PendingIntent.FLAG_IMMUTABLE` unless the receiver must fill in the Intent."
    ),
)

_LOG_RECEIVERS = ("Log", "Timber", "android.util.Log")
_LOG_LEVELS = {"v", "d", "i", "w", "e", "wtf"}
_TEMPLATE_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_.]*)")
_PENDING_FACTORIES = {"getActivity", "getActivities", "getBroadcast", "getService", "getForegroundService"}
_FLAG_TOKENS = re.compile(r"^(?:\s|or|0|PendingIntent\.FLAG_\w+|FLAG_\w+|Intent\.FLAG_\w+|\(|\))*$")


def _sensitive_names(source: KotlinFile, node: Node) -> list[str]:
    """Identifiers (not words inside string text) in an expression whose names look secret."""
    names: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "string_literal":
            names.extend(m.group(1) for m in _TEMPLATE_NAME.finditer(source.text(current)))
            stack.extend(c for c in current.children if c.type == "interpolation")
            continue
        if current.type == "identifier":
            names.append(source.text(current))
        stack.extend(current.children)
    return [name for name in names if SECRET_NAME.search(name.rsplit(".", 1)[-1]) or _is_token(name)]


def _is_token(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return bool(re.search(r"(?i)(^|[a-z_])(token|pin|otp)$", last)) or last.lower() in (
        "token",
        "jwt",
        "cookie",
    )


def log_secret(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("member_call"):
        if callee_name(call) not in _LOG_LEVELS or receiver_text(call) not in _LOG_RECEIVERS:
            continue
        args = call.children[-1]
        values = [c for c in args.children if c.type == "value_argument"]
        if receiver_text(call).endswith("Log"):
            values = values[1:]  # the tag
        found = sorted({name for value in values for name in _sensitive_names(source, value)})
        if not found:
            continue
        yield source.finding(
            LOG_SECRET,
            call,
            f"This log line writes {', '.join(f'`{n}`' for n in found)} to logcat; log that it exists, not its value.",
        )


def webview_bridge(source: KotlinFile) -> Iterator[Finding]:
    interfaces = [c for c in source.nodes("member_call") if callee_name(c) == "addJavascriptInterface"]
    if not interfaces:
        return
    js_enabled = any(
        callee_name(c) == "setJavaScriptEnabled" and "true" in source.text(c.children[-1])
        for c in source.nodes("member_call")
    ) or any(
        re.match(r"^[\w.]*javaScriptEnabled\s*=\s*true$", source.text(a).strip()) for a in source.nodes("assignment")
    )
    if not js_enabled:
        return
    for call in interfaces:
        yield source.finding(
            WEBVIEW_BRIDGE,
            call,
            "JavaScript is enabled and `addJavascriptInterface` exposes this object to every page the "
            "WebView loads; restrict it to trusted origins.",
        )


def pending_intent(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("member_call"):
        if callee_name(call) not in _PENDING_FACTORIES or receiver_text(call) != "PendingIntent":
            continue
        args = [c for c in call.children[-1].children if c.type == "value_argument"]
        flags = next((a for a in args if source.text(a).replace(" ", "").startswith("flags=")), None)
        if flags is None and len(args) >= 4:
            flags = args[3]
        if flags is None:
            continue
        flags_text = source.text(flags).split("=", 1)[-1] if "=" in source.text(flags) else source.text(flags)
        if "FLAG_IMMUTABLE" in flags_text or "FLAG_MUTABLE" in flags_text:
            continue
        if not _FLAG_TOKENS.match(flags_text):
            continue  # computed elsewhere: cannot tell
        new_flags = (
            "PendingIntent.FLAG_IMMUTABLE"
            if flags_text.strip() == "0"
            else f"{flags_text.strip()} or PendingIntent.FLAG_IMMUTABLE"
        )
        yield source.finding(
            PENDING_INTENT,
            call,
            f"`PendingIntent.{callee_name(call)}` with flags `{flags_text.strip()}`: add "
            "`PendingIntent.FLAG_IMMUTABLE` (or `FLAG_MUTABLE` if the receiver must change the Intent).",
            suggestion=source.line_suggestion(flags, flags_text.strip(), new_flags),
            end_node=call,
        )


def _assigned_name(source: KotlinFile, string: Node) -> str:
    """The property, parameter or argument name a string literal is the value of."""
    for parent in ancestors(string):
        if parent.type in ("property_declaration", "class_parameter"):
            declaration = next((c for c in parent.children if c.type == "variable_declaration"), parent)
            name = next((c for c in declaration.children if c.type == "identifier"), None)
            return source.text(name)
        if parent.type == "value_argument":
            first = parent.children[0] if parent.children else None
            return source.text(first) if first is not None and first.type == "identifier" else ""
        if parent.type == "assignment":
            return source.text(parent.children[0]).rsplit(".", 1)[-1]
        if parent.type in ("call_expression", "function_body", "block", "statements"):
            return ""
    return ""


def hardcoded_secret(source: KotlinFile) -> Iterator[Finding]:
    for string in source.nodes("string"):
        if any(c.type == "interpolation" for c in string.children):
            continue
        text = source.text(string)
        value = text.strip('"')
        kind = known_secret(value)
        if kind is None:
            if source.is_test:
                continue
            name = _assigned_name(source, string)
            if not name or not SECRET_NAME.search(name) or not looks_like_secret_value(value):
                continue
            kind = f"value of `{name}`"
        yield source.finding(
            HARDCODED_SECRET,
            string,
            f"Hard-coded secret ({kind}) in source: treat it as leaked, rotate it, and load it from outside "
            "the repository.",
        )


RULES = [
    KotlinRule(LOG_SECRET, log_secret),
    KotlinRule(WEBVIEW_BRIDGE, webview_bridge),
    KotlinRule(PENDING_INTENT, pending_intent),
    KotlinRule(HARDCODED_SECRET, hardcoded_secret),
]
