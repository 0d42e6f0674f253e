"""Logs: one line format or JSON, the request id on every line, and never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.context import accept_request_id, bound
from bot.logs import MASK, RedactingFilter
from tests.conftest import captured_logs

WEBHOOK_SECRET = "whsec-unit-test-secret-42"
API_KEY = "ide-plugin-key-987654"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\n-----END RSA PRIVATE KEY-----"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with captured_logs("DEBUG", secrets=[WEBHOOK_SECRET, API_KEY]) as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_configured_secrets_never_reach_the_log(captured: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    log.info("secret is %s and key %s", WEBHOOK_SECRET, API_KEY)
    log.warning("header", extra={"authorization": f"Bearer {API_KEY}"})
    try:
        raise ValueError(f"bad signature with {WEBHOOK_SECRET}")
    except ValueError:
        log.exception("verification failed")
    text = captured.getvalue()
    assert WEBHOOK_SECRET not in text
    assert API_KEY not in text
    assert text.count(MASK) >= 4
    assert "ValueError" in text  # the cause is still there for the operator


@pytest.mark.parametrize(
    "leak",
    [
        PEM,
        "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
        "token 0123456789abcdef0123",
    ],
)
def test_secret_shaped_values_are_redacted_even_when_unknown(leak: str) -> None:
    redacted = RedactingFilter().redact(f"before {leak} after")
    assert "before" in redacted
    assert "after" in redacted or leak.endswith("-----")
    for part in (
        "MIIEowIBAAKCAQEA1234",
        "16C7e42F292c",
        "0123456789_abcdefgh",
        "abcdefghijklmnopqrstuvwxyz",
        "eyJhbG",
    ):
        assert part not in redacted


def test_json_lines_carry_the_request_id_and_bound_fields(captured: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    with bound(request_id="req-1", delivery_id="d-77"):
        log.info("first")
        log.info("second")
    log.info("outside")
    first, second, outside = lines(captured)
    assert (first["request_id"], first["delivery_id"], first["msg"]) == ("req-1", "d-77", "first")
    assert second["request_id"] == "req-1"
    assert outside["request_id"] == "-"
    assert "delivery_id" not in outside
    assert {"ts", "level", "logger"} <= set(first)


def test_console_format_has_the_request_id() -> None:
    with captured_logs(log_format="console") as stream, bound(request_id="console-req"):
        logging.getLogger("bot.test").info("hello %s", "world")
    assert "[console-req] hello world" in stream.getvalue()


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("bad id", False),
        ("x\ny", False),
        (None, False),
    ],
)
def test_request_ids_are_accepted_only_when_safe(given: str | None, kept: bool) -> None:
    result = accept_request_id(given)
    assert (result == given) is kept
    assert len(result) <= 128
