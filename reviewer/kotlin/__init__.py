"""Kotlin rules on tree-sitter syntax trees: one module per family, one parse per file."""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.kotlin import compose, coroutines, lifecycle, security, style
from reviewer.kotlin.registry import KotlinRule
from reviewer.kotlin.source import KotlinFile
from reviewer.models import Finding

ALL_RULES: tuple[KotlinRule, ...] = (
    *style.RULES,
    *coroutines.RULES,
    *lifecycle.RULES,
    *compose.RULES,
    *security.RULES,
)


def check_kotlin(
    path: str, source: bytes, *, is_test: bool, disabled: frozenset[str] = frozenset()
) -> Iterator[Finding]:
    """Every enabled rule's findings for one Kotlin file, parsed once."""
    parsed = KotlinFile(path, source, is_test=is_test)
    for kotlin_rule in ALL_RULES:
        if kotlin_rule.rule.id in disabled or (is_test and kotlin_rule.skip_tests):
            continue
        yield from kotlin_rule.check(parsed)
