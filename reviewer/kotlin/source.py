"""Kotlin parsed once with tree-sitter, plus the syntax-tree questions the rules ask.

One combined tree-sitter query finds every candidate node of every rule in a single pass in C; the rules
then look only at their candidates. The grammar and the query are compiled on first use, not at import.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import tree_sitter_kotlin
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

from reviewer.models import Finding, Rule

# Compose state factories (the compose rules look for these outside `remember { }`).
STATE_FACTORIES = frozenset(
    {
        "mutableStateOf",
        "mutableStateListOf",
        "mutableStateMapOf",
        "mutableIntStateOf",
        "mutableLongStateOf",
        "mutableFloatStateOf",
        "mutableDoubleStateOf",
    }
)
# Calls whose callee is a plain name (`runBlocking { }`, `println(x)`).
_SIMPLE_CALLEES = ["runBlocking", "println", "print", *sorted(STATE_FACTORIES), "launch", "async", "sleep"]
# Calls on a receiver (`GlobalScope.launch`, `flow.collect`, `Log.d`), by member name.
_MEMBER_CALLEES = [
    "launch",
    "async",
    "produce",
    "actor",
    "sleep",
    "collect",
    "collectLatest",
    "collectIndexed",
    "launchIn",
    "printStackTrace",
    "collectAsState",
    "addJavascriptInterface",
    "getActivity",
    "getActivities",
    "getBroadcast",
    "getService",
    "getForegroundService",
    "v",
    "d",
    "i",
    "w",
    "e",
    "wtf",
    "setJavaScriptEnabled",
]


def _any_of(capture: str, names: list[str]) -> str:
    quoted = " ".join(f'"{name}"' for name in names)
    return f"(#any-of? @{capture} {quoted})"


QUERY = f"""
(unary_expression "!!") @not_null
(call_expression (identifier) @simple_callee {_any_of("simple_callee", _SIMPLE_CALLEES)}) @simple_call
(call_expression (navigation_expression (identifier) @member .) {_any_of("member", _MEMBER_CALLEES)}) @member_call
(catch_block) @catch
(property_declaration) @property
(class_parameter) @class_parameter
(navigation_expression (identifier) @dispatchers_ns (identifier) @dispatcher
  (#eq? @dispatchers_ns "Dispatchers") (#eq? @dispatcher "IO")) @dispatchers_io
(assignment) @assignment
(string_literal) @string
"""

# Calls whose lambda runs in a coroutine.
COROUTINE_BUILDERS = frozenset(
    [
        "launch",
        "async",
        "runBlocking",
        "withContext",
        "coroutineScope",
        "supervisorScope",
        "flow",
        "channelFlow",
        "callbackFlow",
        "produce",
        "actor",
        "runTest",
        "LaunchedEffect",
        "withTimeout",
        "withTimeoutOrNull",
        "repeatOnLifecycle",
    ]
)
ANDROID_CONTEXT_TYPES = frozenset(
    ["Context", "Activity", "AppCompatActivity", "ComponentActivity", "FragmentActivity", "Fragment", "View"]
)


@cache
def language() -> Language:
    return Language(tree_sitter_kotlin.language())


@cache
def _query() -> Query:
    return Query(language(), QUERY)


@cache
def _parser() -> Parser:
    return Parser(language())


def parse(source: bytes) -> Tree:
    return _parser().parse(source)


def has_error(source: bytes) -> bool:
    return parse(source).root_node.has_error


@dataclass(slots=True)
class KotlinFile:
    """One Kotlin file, parsed once, with every rule's candidate nodes found in one query pass."""

    path: str
    source: bytes
    is_test: bool = False
    tree: Tree = field(init=False)
    captures: dict[str, list[Node]] = field(init=False)
    line_cache: list[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tree = parse(self.source)
        self.captures = QueryCursor(_query()).captures(self.tree.root_node)

    def nodes(self, capture: str) -> list[Node]:
        return self.captures.get(capture, [])

    def text(self, node: Node | None) -> str:
        if node is None:
            return ""
        return self.source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its end of line."""
        lines = self._lines()
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def _lines(self) -> list[str]:
        if self.line_cache is None:
            self.line_cache = self.source.decode("utf-8", errors="replace").splitlines()
        return self.line_cache

    def finding(
        self,
        rule: Rule,
        node: Node,
        message: str,
        *,
        suggestion: str | None = None,
        end_node: Node | None = None,
    ) -> Finding:
        end = end_node or node
        return rule.at(
            self.path,
            node.start_point.row + 1,
            message,
            end_line=end.end_point.row + 1,
            suggestion=suggestion,
        )

    def line_suggestion(self, node: Node, old: str, new: str) -> str | None:
        """The node's single line with `old` replaced by `new` once, when the node sits on one line."""
        if node.start_point.row != node.end_point.row:
            return None
        line = self.line_text(node.start_point.row + 1)
        return line.replace(old, new, 1) if old in line else None


def ancestors(node: Node) -> Iterator[Node]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def callee_name(call: Node) -> str:
    """`launch` for `scope.launch { }`, `Column` for `Column(m) { }`, "" when there is no simple name."""
    head = call.children[0] if call.children else None
    while head is not None and head.type == "call_expression":
        head = head.children[0] if head.children else None
    if head is None:
        return ""
    if head.type == "identifier":
        return _node_text(head)
    if head.type == "navigation_expression":
        last = head.children[-1]
        return _node_text(last) if last.type == "identifier" else ""
    return ""


def receiver_text(call: Node) -> str:
    """`GlobalScope` for `GlobalScope.launch { }`; "" for a call without a receiver."""
    head = call.children[0] if call.children else None
    if head is not None and head.type == "navigation_expression" and head.children:
        return _node_text(head.children[0])
    return ""


def _node_text(node: Node) -> str:
    return node.text.decode("utf-8", errors="replace") if node.text is not None else ""


def call_of_lambda(lambda_node: Node) -> tuple[Node | None, str]:
    """For a lambda literal: the call it is passed to, and the argument label ("" for trailing lambdas)."""
    parent = lambda_node.parent
    if parent is None:
        return None, ""
    if parent.type == "annotated_lambda":
        call = parent.parent
        return (call, "") if call is not None and call.type == "call_expression" else (None, "")
    if parent.type == "value_argument":
        label = ""
        first = parent.children[0] if parent.children else None
        if first is not None and first.type == "identifier" and len(parent.children) > 2:
            label = _node_text(first)
        args = parent.parent
        call = args.parent if args is not None else None
        return (call, label) if call is not None and call.type == "call_expression" else (None, label)
    return None, ""


def function_modifiers(function: Node) -> tuple[set[str], set[str]]:
    """(keyword modifiers such as `suspend`, annotation names such as `Composable`) of a declaration."""
    keywords: set[str] = set()
    annotations: set[str] = set()
    for child in function.children:
        if child.type != "modifiers":
            continue
        for modifier in child.children:
            if modifier.type == "annotation":
                text = _node_text(modifier).lstrip("@").split("(")[0]
                annotations.add(text.rsplit(".", 1)[-1].split(":")[-1])
            else:
                keywords.update(_node_text(modifier).split())
    return keywords, annotations


def enclosing(node: Node, *types: str) -> Node | None:
    for parent in ancestors(node):
        if parent.type in types:
            return parent
    return None


def declared_type_name(declaration: Node) -> str:
    """The simple name of a property's or parameter's declared type (`Context` for `ctx: Context?`)."""
    holder = declaration
    for child in declaration.children:
        if child.type == "variable_declaration":
            holder = child
    for child in holder.children:
        if child.type in ("user_type", "nullable_type"):
            text = _node_text(child).rstrip("?").strip()
            return re.split(r"[<(]", text)[0].rsplit(".", 1)[-1]
    return ""


def in_coroutine(node: Node) -> Node | None:
    """The suspend function or coroutine-builder lambda that runs this node, if any (nearest first)."""
    for parent in ancestors(node):
        if parent.type == "lambda_literal":
            call, _ = call_of_lambda(parent)
            if call is not None and callee_name(call) in COROUTINE_BUILDERS:
                return parent
        elif parent.type in ("function_declaration", "anonymous_function"):
            keywords, _ = function_modifiers(parent)
            return parent if "suspend" in keywords else None
        elif parent.type in ("class_body", "source_file"):
            return None
    return None


def is_main_function(function: Node | None) -> bool:
    if function is None:
        return False
    name = function.child_by_field_name("name")
    return name is not None and _node_text(name) == "main"
