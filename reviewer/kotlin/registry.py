"""The shape of a Kotlin rule: its metadata and a check over one parsed file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reviewer.kotlin.source import KotlinFile
from reviewer.models import Finding, Rule

Check = Callable[[KotlinFile], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class KotlinRule:
    rule: Rule
    check: Check
    # Rules about production behaviour stay quiet in test source sets.
    skip_tests: bool = False
