"""Correctness and style: `!!`, empty catch blocks, printing in production code."""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.kotlin.registry import KotlinRule
from reviewer.kotlin.source import KotlinFile, callee_name, enclosing, is_main_function, receiver_text
from reviewer.models import Category, Finding, Rule, Severity

NOT_NULL = Rule(
    id="not-null-assertion",
    title="Not-null assertion (!!)",
    severity=Severity.MINOR,
    category=Category.CORRECTNESS,
    rationale=(
        "`!!` turns a nullable value into a NullPointerException at run time, with no message saying which "
        "assumption broke. Handle the null case (`?.let`, `?:`), or state the invariant with "
        '`requireNotNull(x) { "why x cannot be null here" }` / `checkNotNull`, which fail with a message.'
    ),
)

EMPTY_CATCH = Rule(
    id="empty-catch",
    title="Empty catch block",
    severity=Severity.MINOR,
    category=Category.CORRECTNESS,
    rationale=(
        "An empty catch block hides failures: the app goes on in a state nobody checked and the bug report "
        "has no trace. Log the exception, recover explicitly, or if ignoring it is intended, name the "
        "variable `ignored`/`expected` or leave a comment saying why."
    ),
)

PRINT = Rule(
    id="print-in-production",
    title="println / printStackTrace in production code",
    severity=Severity.MINOR,
    category=Category.STYLE,
    rationale=(
        "`println` and `printStackTrace()` write to stdout/stderr, which on Android ends in logcat without a "
        "tag or level, cannot be filtered or turned off in release builds, and is invisible to crash "
        "reporting. Use `Log`/Timber (or your logging facade) with a tag, or report the exception."
    ),
)

_ALLOWED_IGNORED_NAMES = ("_", "ignored", "ignore", "expected", "unused")


def not_null(source: KotlinFile) -> Iterator[Finding]:
    for node in source.nodes("not_null"):
        operand = source.text(node.children[0]) if node.children else ""
        yield source.finding(
            NOT_NULL,
            node,
            f"`{operand}!!` throws a NullPointerException if `{operand}` is null; handle the null case or use "
            f"`requireNotNull({operand}) {{ ... }}` with a message.",
        )


def empty_catch(source: KotlinFile) -> Iterator[Finding]:
    for catch in source.nodes("catch"):
        block = next((c for c in catch.children if c.type == "block"), None)
        if block is None or any(c.type not in ("{", "}") for c in block.children):
            continue  # statements or comments inside: not empty
        name_node = next((c for c in catch.children if c.type == "identifier"), None)
        name = source.text(name_node)
        if name.lower().startswith(_ALLOWED_IGNORED_NAMES):
            continue
        caught = next((source.text(c) for c in catch.children if c.type == "user_type"), "exception")
        yield source.finding(
            EMPTY_CATCH, catch, f"`catch ({name}: {caught}) {{}}` swallows the {caught} without a trace."
        )


def printing(source: KotlinFile) -> Iterator[Finding]:
    for call in source.nodes("simple_call"):
        name = callee_name(call)
        if name in ("println", "print") and not is_main_function(enclosing(call, "function_declaration")):
            yield source.finding(PRINT, call, f"`{name}` in production code: use Log/Timber with a tag instead.")
    for call in source.nodes("member_call"):
        if callee_name(call) == "printStackTrace":
            target = receiver_text(call) or "e"
            yield source.finding(
                PRINT,
                call,
                f"`{target}.printStackTrace()` loses the stack trace in release builds: log it with "
                f'`Log.e(TAG, "...", {target})` or report it to your crash reporter.',
            )


RULES = [
    KotlinRule(NOT_NULL, not_null, skip_tests=True),
    KotlinRule(EMPTY_CATCH, empty_catch),
    KotlinRule(PRINT, printing, skip_tests=True),
]
