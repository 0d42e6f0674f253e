"""Android lifecycle: flows collected without lifecycle awareness, Contexts held where they leak."""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from reviewer.kotlin.registry import KotlinRule
from reviewer.kotlin.source import (
    ANDROID_CONTEXT_TYPES,
    KotlinFile,
    ancestors,
    call_of_lambda,
    callee_name,
    declared_type_name,
    function_modifiers,
)
from reviewer.models import Category, Finding, Rule, Severity

COLLECT_WITHOUT_LIFECYCLE = Rule(
    id="collect-without-lifecycle",
    title="Flow collected in lifecycleScope without repeatOnLifecycle",
    severity=Severity.MAJOR,
    category=Category.LIFECYCLE,
    rationale=(
        "`lifecycleScope.launch { flow.collect { } }` keeps collecting while the app is in the background "
        "(until DESTROYED): it wastes battery and network, and UI updates land on stopped views. Wrap the "
        "collection in `repeatOnLifecycle(Lifecycle.State.STARTED) { }`, or use `flowWithLifecycle`."
    ),
)

STATIC_CONTEXT = Rule(
    id="static-context-leak",
    title="Context, Activity or View held statically",
    severity=Severity.MAJOR,
    category=Category.LIFECYCLE,
    rationale=(
        "A Context, Activity, Fragment or View stored in a companion object, an `object` or a top-level "
        "property lives as long as the process: the whole screen (its views, bitmaps, listeners) can never be "
        "garbage collected after rotation or navigation. Keep the reference in the owner, pass it in, or hold "
        "the `applicationContext` (typed `Application`) if a process-wide context is really needed."
    ),
)

VIEWMODEL_CONTEXT = Rule(
    id="viewmodel-context",
    title="ViewModel holds a Context, Activity or View",
    severity=Severity.MAJOR,
    category=Category.LIFECYCLE,
    rationale=(
        "A ViewModel outlives the Activity and its views (it survives configuration changes), so a reference "
        "to them leaks the old screen and acts on destroyed views. Pass data, not UI objects; for resources "
        "use `AndroidViewModel`/`@ApplicationContext`, or expose state that the UI renders."
    ),
)

_COLLECTORS = {"collect", "collectLatest", "collectIndexed"}
_LIFECYCLE_AWARE = {"repeatOnLifecycle", "flowWithLifecycle", "launchWhenStarted", "launchWhenResumed"}


def _lifecycle_launch(call: Node) -> Node | None:
    """The `lifecycleScope.launch { }` (any receiver ending in lifecycleScope) whose lambda runs `call`."""
    for parent in ancestors(call):
        if parent.type != "lambda_literal":
            continue
        host, _ = call_of_lambda(parent)
        if host is None:
            continue
        name = callee_name(host)
        if name in _LIFECYCLE_AWARE:
            return None
        if name == "launch":
            head = host.children[0]
            receiver = head.children[0].text if head.type == "navigation_expression" and head.children else b""
            if receiver is not None and receiver.endswith(b"lifecycleScope"):
                return host
            return None
    return None


def collect_without_lifecycle(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("member_call"):
        name = callee_name(call)
        chain = source.text(call.children[0])
        if name in _COLLECTORS:
            if "flowWithLifecycle" in chain or _lifecycle_launch(call) is None:
                continue
            yield source.finding(
                COLLECT_WITHOUT_LIFECYCLE,
                call,
                f"`.{name}` inside `lifecycleScope.launch` keeps collecting in the background; wrap it in "
                "`repeatOnLifecycle(Lifecycle.State.STARTED) { }`.",
                end_node=call.children[0],
            )
        elif name == "launchIn":
            args = source.text(call.children[-1]) if len(call.children) > 1 else ""
            if "lifecycleScope" in args and "flowWithLifecycle" not in chain:
                yield source.finding(
                    COLLECT_WITHOUT_LIFECYCLE,
                    call,
                    "`.launchIn(lifecycleScope)` collects until the lifecycle is destroyed; add "
                    "`.flowWithLifecycle(lifecycle)` before it.",
                )


def _is_context_type(name: str) -> bool:
    return name in ANDROID_CONTEXT_TYPES or name.endswith(("Activity", "View"))


def _static_holder(declaration: Node) -> str:
    """Why a property is static ("companion object", "object", "top-level"), or "" when it is not."""
    parent = declaration.parent
    if parent is not None and parent.type == "source_file":
        return "top-level property"
    if parent is not None and parent.type == "class_body" and parent.parent is not None:
        owner = parent.parent
        if owner.type == "companion_object":
            return "companion object"
        if owner.type == "object_declaration":
            return "`object` declaration"
    return ""


def static_context(source: KotlinFile) -> Iterator[Finding]:
    for prop in source.nodes("property"):
        type_name = declared_type_name(prop)
        if not type_name or not _is_context_type(type_name):
            continue
        holder = _static_holder(prop)
        if not holder:
            continue
        yield source.finding(
            STATIC_CONTEXT,
            prop,
            f"`{type_name}` held in a {holder} outlives the screen it belongs to and leaks it.",
        )


def _extends_viewmodel(source: KotlinFile, cls: Node) -> bool:
    for child in cls.children:
        if child.type == "delegation_specifiers":
            for spec in child.children:
                name = source.text(spec).split("(")[0].split("<")[0].strip().rsplit(".", 1)[-1]
                if name in ("ViewModel", "AndroidViewModel"):
                    return True
    return False


def viewmodel_context(source: KotlinFile) -> Iterator[Finding]:
    candidates = [*source.nodes("class_parameter"), *source.nodes("property")]
    for declaration in candidates:
        type_name = declared_type_name(declaration)
        if not type_name or not _is_context_type(type_name):
            continue
        if declaration.type == "class_parameter" and not any(c.type in ("val", "var") for c in declaration.children):
            continue  # a plain constructor parameter is not held
        _, annotations = function_modifiers(declaration)
        if "ApplicationContext" in annotations:
            continue
        cls = next((a for a in ancestors(declaration) if a.type == "class_declaration"), None)
        if cls is None or not _extends_viewmodel(source, cls):
            continue
        # Only direct members of the ViewModel, not of a nested class or a local.
        owner = declaration.parent.parent if declaration.parent is not None else None
        if declaration.type == "property_declaration" and owner != cls:
            continue
        yield source.finding(
            VIEWMODEL_CONTEXT,
            declaration,
            f"This ViewModel holds a `{type_name}`, which it outlives; pass data instead, or use "
            "`@ApplicationContext` / `AndroidViewModel` for an application context.",
        )


RULES = [
    KotlinRule(COLLECT_WITHOUT_LIFECYCLE, collect_without_lifecycle),
    KotlinRule(STATIC_CONTEXT, static_context, skip_tests=True),
    KotlinRule(VIEWMODEL_CONTEXT, viewmodel_context, skip_tests=True),
]
