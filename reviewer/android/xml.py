"""A tiny XML reader that keeps each element's line number (ElementTree drops them)."""

from __future__ import annotations

import xml.parsers.expat
from dataclasses import dataclass, field

ANDROID_NS = "http://schemas.android.com/apk/res/android"


class XmlError(Exception):
    """The file is not well-formed XML; the message has the line."""


@dataclass(slots=True)
class Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def android(self, name: str) -> str | None:
        return self.attrs.get(f"{ANDROID_NS} {name}")

    def iter(self, tag: str | None = None) -> list[Element]:
        found = [self] if tag is None or self.tag == tag else []
        for child in self.children:
            found.extend(child.iter(tag))
        return found


def parse_xml(data: bytes) -> Element:
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    root: list[Element] = []
    stack: list[Element] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = Element(tag, attrs, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(element)
        else:
            root.append(element)
        stack.append(element)

    def end(_: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise XmlError(f"not well-formed XML: {exc}") from None
    if not root:
        raise XmlError("no root element")
    return root[0]
