"""Per-request (and later per-job) context carried by contextvars, read by the log formatter."""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_FIELDS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039

# What a client may send as X-Request-ID; anything else is replaced by a fresh id (no log injection).
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_request_id(value: str | None) -> str:
    """The client's request id when it is safe to echo and log, else a new one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str:
    return _REQUEST_ID.get()


def log_fields() -> dict[str, str]:
    """Extra identifiers (delivery id, job id, repo, ...) bound to the current unit of work."""
    return _FIELDS.get()


@contextmanager
def bound(request_id: str | None = None, **fields: str) -> Iterator[None]:
    """Bind a request id and/or extra fields for everything logged inside the block."""
    tokens: list[tuple[contextvars.ContextVar[object], contextvars.Token[object]]] = []
    if request_id is not None:
        tokens.append((_REQUEST_ID, _REQUEST_ID.set(request_id)))  # type: ignore[arg-type]
    if fields:
        tokens.append((_FIELDS, _FIELDS.set({**_FIELDS.get(), **fields})))  # type: ignore[arg-type]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
