"""Jetpack Compose: state without remember, side effects in the composable body, collectAsState."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tree_sitter import Node

from reviewer.kotlin.registry import KotlinRule
from reviewer.kotlin.source import (
    STATE_FACTORIES,
    KotlinFile,
    ancestors,
    call_of_lambda,
    callee_name,
    function_modifiers,
)
from reviewer.models import Category, Finding, Rule, Severity

STATE_WITHOUT_REMEMBER = Rule(
    id="compose-state-without-remember",
    title="mutableStateOf in a composable without remember",
    severity=Severity.MAJOR,
    category=Category.COMPOSE,
    rationale=(
        "A composable function runs again on every recomposition. `mutableStateOf` called directly in its "
        "body creates a new state object each time, so the value resets to its initial value whenever the "
        "UI recomposes. Wrap it in `remember { }` (or `rememberSaveable { }` to survive configuration changes)."
    ),
)

LAUNCH_IN_BODY = Rule(
    id="compose-launch-in-body",
    title="Coroutine launched directly in a composable body",
    severity=Severity.MAJOR,
    category=Category.COMPOSE,
    rationale=(
        "Code in a composable's body runs on every recomposition, which can happen many times a second. A "
        "coroutine launched there starts again each time and is never cancelled with the composition. Start "
        "side effects in `LaunchedEffect(key) { }`, or launch from an event handler with "
        "`rememberCoroutineScope()`."
    ),
)

COLLECT_AS_STATE = Rule(
    id="collect-as-state",
    title="collectAsState where collectAsStateWithLifecycle fits",
    severity=Severity.MINOR,
    category=Category.LIFECYCLE,
    rationale=(
        "`collectAsState` keeps collecting while the app is in the background. On Android, "
        "`collectAsStateWithLifecycle()` (androidx.lifecycle:lifecycle-runtime-compose) stops collecting "
        "below STARTED and resumes after, saving work, battery and network."
    ),
)

# Lambdas that run their body once, outside recomposition (state and effects are fine in them).
_EFFECT_HOSTS = re.compile(
    r"^(remember\w*|LaunchedEffect|DisposableEffect|SideEffect|produceState|derivedStateOf|snapshotFlow|"
    r"clickable|combinedClickable|pointerInput|onClick|on[A-Z]\w*|viewModel|hiltViewModel)$"
)

# Named lambda arguments that are composable slots by Compose's naming conventions.
_SLOT_LABEL = re.compile(
    r"^(content|title|text|label|icon|placeholder|actions|[a-z]\w*(Content|Icon|Bar|Button|Host|Label|Text|"
    r"Title|Placeholder|Indicator|Divider|Slot))$"
)


def _composable_body_of(node: Node) -> Node | None:
    """The @Composable function whose body runs `node` on recomposition, or None if it runs elsewhere.

    Walks out through lambdas: content lambdas (Column { }) stay in composition; event handlers,
    effects and remember blocks do not.
    """
    for parent in ancestors(node):
        if parent.type == "lambda_literal":
            host, label = call_of_lambda(parent)
            if label and not _SLOT_LABEL.match(label):
                return None  # a named lambda that is not a UI slot is a callback (onClick, resetScroll, ...)
            if host is None or _EFFECT_HOSTS.match(callee_name(host)):
                return None
        elif parent.type in ("function_declaration", "anonymous_function", "getter", "setter"):
            _, annotations = function_modifiers(parent)
            return parent if "Composable" in annotations else None
        elif parent.type in ("class_body", "source_file", "object_literal"):
            return None
    return None


def state_without_remember(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("simple_call"):
        name = callee_name(call)
        if name not in STATE_FACTORIES or _composable_body_of(call) is None:
            continue
        call_text = source.text(call)
        suggestion = None
        if "\n" not in call_text:
            suggestion = source.line_suggestion(call, call_text, f"remember {{ {call_text} }}")
        yield source.finding(
            STATE_WITHOUT_REMEMBER,
            call,
            f"`{name}` in a composable body makes a new state on every recomposition; wrap it in `remember {{ }}`.",
            suggestion=suggestion,
        )


def launch_in_body(source: KotlinFile) -> Iterator[Finding]:
    for capture in ("simple_call", "member_call"):
        for call in source.nodes(capture):
            name = callee_name(call)
            if name not in ("launch", "async") or _composable_body_of(call) is None:
                continue
            yield source.finding(
                LAUNCH_IN_BODY,
                call,
                f"`{name}` runs again on every recomposition; move it into `LaunchedEffect(key) {{ }}` or an "
                "event handler.",
                end_node=call.children[0],
            )


def collect_as_state(source: KotlinFile) -> Iterator[Finding]:
    if "/commonMain/" in source.path or "/desktopMain/" in source.path or "/iosMain/" in source.path:
        return  # multiplatform code has no Android lifecycle
    for call in source.nodes("member_call"):
        if callee_name(call) != "collectAsState":
            continue
        yield source.finding(
            COLLECT_AS_STATE,
            call,
            "Use `collectAsStateWithLifecycle()` so collection stops while the app is in the background.",
            suggestion=source.line_suggestion(call, ".collectAsState(", ".collectAsStateWithLifecycle("),
        )


RULES = [
    KotlinRule(STATE_WITHOUT_REMEMBER, state_without_remember),
    KotlinRule(LAUNCH_IN_BODY, launch_in_body),
    KotlinRule(COLLECT_AS_STATE, collect_as_state, skip_tests=True),
]
