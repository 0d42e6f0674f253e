"""Coroutines: GlobalScope, runBlocking, Thread.sleep in coroutines, swallowed cancellation, dispatchers."""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from reviewer.kotlin.registry import KotlinRule
from reviewer.kotlin.source import (
    KotlinFile,
    ancestors,
    callee_name,
    enclosing,
    function_modifiers,
    in_coroutine,
    is_main_function,
    receiver_text,
)
from reviewer.models import Category, Finding, Rule, Severity

GLOBAL_SCOPE = Rule(
    id="global-scope",
    title="GlobalScope coroutine",
    severity=Severity.MAJOR,
    category=Category.CONCURRENCY,
    rationale=(
        "A coroutine started in `GlobalScope` is tied to no lifecycle: it is never cancelled when the screen "
        "or ViewModel goes away, leaks what it captures, and its failures reach no parent. Launch in a scope "
        "that owns the work (`viewModelScope`, `lifecycleScope`, an injected application `CoroutineScope`)."
    ),
)

RUN_BLOCKING = Rule(
    id="run-blocking",
    title="runBlocking outside tests and main",
    severity=Severity.MAJOR,
    category=Category.CONCURRENCY,
    rationale=(
        "`runBlocking` blocks the calling thread until the coroutine finishes. On the main thread that is a "
        "frozen UI or an ANR; on a dispatcher thread it can deadlock the pool. Make the caller `suspend`, or "
        "launch in a scope; keep `runBlocking` for `main` functions and tests (prefer `runTest` there)."
    ),
)

THREAD_SLEEP = Rule(
    id="thread-sleep-in-coroutine",
    title="Thread.sleep in coroutine code",
    severity=Severity.MAJOR,
    category=Category.CONCURRENCY,
    rationale=(
        "`Thread.sleep` blocks the thread the coroutine runs on, and with it every other coroutine that "
        "dispatcher would have run there; it also ignores cancellation. `delay` suspends instead: the thread "
        "is free meanwhile and cancellation is honoured."
    ),
)

SWALLOWED_CANCELLATION = Rule(
    id="swallowed-cancellation",
    title="Catching cancellation in suspend code",
    severity=Severity.MAJOR,
    category=Category.CONCURRENCY,
    rationale=(
        "Coroutines are cancelled by throwing `CancellationException`. Catching it (directly, or through "
        "`Exception`/`Throwable`) without rethrowing keeps a cancelled coroutine running: work continues "
        "after the screen is gone and structured concurrency breaks. Rethrow it first "
        "(`catch (e: CancellationException) { throw e }`) or call `currentCoroutineContext().ensureActive()`."
    ),
)

HARDCODED_DISPATCHER = Rule(
    id="hardcoded-dispatcher",
    title="Hard-coded Dispatchers.IO in a class",
    severity=Severity.MINOR,
    category=Category.CONCURRENCY,
    rationale=(
        "A class that reaches for `Dispatchers.IO` itself cannot be tested with a test dispatcher: tests "
        "become slow and flaky. Inject a `CoroutineDispatcher` (constructor parameter, Hilt qualifier such as "
        "`@IoDispatcher`) and use that."
    ),
)

_CANCELLATION_CATCHERS = {"Exception", "Throwable", "CancellationException"}
_ENSURE_ACTIVE = ("ensureActive()", "throw ")


def _calls(source: KotlinFile) -> Iterator[tuple[Node, str]]:
    for capture in ("simple_call", "member_call"):
        for call in source.nodes(capture):
            yield call, callee_name(call)


def global_scope(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("member_call"):
        name = callee_name(call)
        if name in ("launch", "async", "produce", "actor") and receiver_text(call) in (
            "GlobalScope",
            "kotlinx.coroutines.GlobalScope",
        ):
            yield source.finding(
                GLOBAL_SCOPE,
                call,
                f"`GlobalScope.{name}` outlives every lifecycle; launch in `viewModelScope`, `lifecycleScope` "
                "or an injected scope instead.",
                end_node=call.children[0],
            )


def run_blocking(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("simple_call"):
        if callee_name(call) != "runBlocking":
            continue
        function = enclosing(call, "function_declaration")
        if is_main_function(function) or (function is not None and "Preview" in function_modifiers(function)[1]):
            continue  # entry points and @Preview fake data may block
        yield source.finding(
            RUN_BLOCKING,
            call,
            "`runBlocking` blocks this thread until the coroutine completes; make the caller `suspend` or "
            "launch in a scope.",
            end_node=call.children[0],
        )


def thread_sleep(source: KotlinFile) -> Iterator[Finding]:
    for call, name in _calls(source):
        if name != "sleep":
            continue
        receiver = receiver_text(call)
        if receiver not in ("Thread", "java.lang.Thread", "") or in_coroutine(call) is None:
            continue
        old = f"{receiver}.sleep(" if receiver else "sleep("
        yield source.finding(
            THREAD_SLEEP,
            call,
            f"`{old.rstrip('(')}` blocks the coroutine's thread and ignores cancellation; use `delay` instead.",
            suggestion=source.line_suggestion(call, old, "delay("),
        )


def _rethrows(source: KotlinFile, catch: Node, name: str) -> bool:
    block = next((c for c in catch.children if c.type == "block"), None)
    body = source.text(block)
    if "ensureActive()" in body:
        return True
    return any(
        f"throw {name}" in source.text(node) or "throw CancellationException" in source.text(node)
        for node in _throws(block)
    )


def _throws(block: Node | None) -> Iterator[Node]:
    if block is None:
        return
    stack = list(block.children)
    while stack:
        node = stack.pop()
        if node.type == "throw_expression" or (
            node.type == "jump_expression" and (node.text or b"").startswith(b"throw")
        ):
            yield node
        stack.extend(node.children)


def swallowed_cancellation(source: KotlinFile) -> Iterator[Finding]:
    for catch in source.nodes("catch"):
        caught = next((source.text(c) for c in catch.children if c.type == "user_type"), "")
        simple = caught.rsplit(".", 1)[-1]
        if simple not in _CANCELLATION_CATCHERS or in_coroutine(catch) is None:
            continue
        name = source.text(next((c for c in catch.children if c.type == "identifier"), None))
        if _rethrows(source, catch, name):
            continue
        try_node = catch.parent
        earlier = []
        for sibling in try_node.children if try_node is not None else []:
            if sibling == catch:
                break
            if sibling.type == "catch_block":
                earlier.append(sibling)
        if any("CancellationException" in source.text(c) for c in earlier):
            continue  # an earlier clause handles cancellation (and is checked on its own)
        yield source.finding(
            SWALLOWED_CANCELLATION,
            catch,
            f"`catch ({name}: {caught})` in suspend code also catches `CancellationException` and does not "
            "rethrow it; add `catch (e: CancellationException) { throw e }` before it, or rethrow.",
            end_node=catch.children[min(5, len(catch.children) - 1)],
        )


def hardcoded_dispatcher(source: KotlinFile) -> Iterator[Finding]:
    for node in source.nodes("dispatchers_io"):
        if enclosing(node, "class_declaration") is None:
            continue
        if _is_injection_point(source, node):
            continue
        yield source.finding(
            HARDCODED_DISPATCHER,
            node,
            "`Dispatchers.IO` is hard-coded in this class; inject a `CoroutineDispatcher` so tests can replace it.",
        )


def _is_injection_point(source: KotlinFile, node: Node) -> bool:
    """A default parameter value, a DI module's provider, or a class annotated as a DI module."""
    for parent in ancestors(node):
        if parent.type in ("class_parameter", "function_value_parameters"):
            return True
        if parent.type in ("function_declaration", "class_declaration", "object_declaration"):
            _, annotations = function_modifiers(parent)
            if annotations & {"Provides", "Module", "Binds"}:
                return True
    return False


RULES = [
    KotlinRule(GLOBAL_SCOPE, global_scope),
    KotlinRule(RUN_BLOCKING, run_blocking, skip_tests=True),
    KotlinRule(THREAD_SLEEP, thread_sleep),
    KotlinRule(SWALLOWED_CANCELLATION, swallowed_cancellation),
    KotlinRule(HARDCODED_DISPATCHER, hardcoded_dispatcher, skip_tests=True),
]
