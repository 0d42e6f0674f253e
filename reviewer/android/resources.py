"""res/**/*.xml: secrets in string resources."""

from __future__ import annotations

from collections.abc import Iterator

from reviewer.android.xml import parse_xml
from reviewer.models import Finding
from reviewer.secrets import HARDCODED_SECRET, SECRET_NAME, known_secret, looks_like_secret_value


def check_resources(path: str, data: bytes) -> Iterator[Finding]:
    root = parse_xml(data)
    for element in root.iter():
        text = element.text.strip()
        if not text:
            continue
        name = element.attrs.get("name", "")
        kind = known_secret(text)
        if kind is None and SECRET_NAME.search(name) and looks_like_secret_value(text):
            kind = f"value of `{name}`"
        if kind is not None:
            yield HARDCODED_SECRET.at(
                path,
                element.line,
                f"Hard-coded secret ({kind}) in a resource file: resources are readable from the APK.",
            )
