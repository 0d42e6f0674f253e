"""The event router and the `/review` command, without HTTP (bot.github.events is pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.api.webhooks import WEBHOOK_PATH
from bot.github.events import Ignored, Pong, Router, parse_command, router

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("body", "full"),
    [
        ("/review", False),
        ("  /review  \nthanks", False),
        ("/review full", True),
        ("/review   full\n", True),
        ("/review fully", None),
        ("/reviews", None),
        ("review", None),
        ("", None),
        ("\n\n", None),
        ("lgtm\n/review", None),  # only the first line counts
    ],
)
def test_the_review_command_is_the_first_line(body: str, full: bool | None) -> None:
    assert parse_command(body) is full


def test_a_router_refuses_two_handlers_for_one_event_and_action() -> None:
    local = Router()
    local.register("ping")(lambda payload: Pong())
    with pytest.raises(ValueError, match=r"ping\.None already has a handler"):
        local.register("ping")(lambda payload: Pong())
    local.register("pull_request", "opened")(lambda payload: Ignored("a"))
    with pytest.raises(ValueError, match=r"pull_request\.opened already has a handler"):
        local.register("pull_request", "closed", "opened")(lambda payload: Ignored("b"))


def test_unrouted_events_and_actions_are_named() -> None:
    assert router.dispatch("pull_request", {"action": "assigned"}) == Ignored("pull_request.assigned")
    assert router.dispatch("star", {"action": "created"}) == Ignored("star.created")
    assert router.dispatch("push", {"ref": "refs/heads/main"}) == Ignored("push")
    assert router.dispatch("ping", {"zen": "Keep it logically awesome."}) == Pong()


def test_the_app_manifest_subscribes_to_what_the_router_handles_with_least_privilege() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text(encoding="utf-8"))
    assert set(manifest["default_events"]) == router.events() == {"pull_request", "issue_comment"}
    assert manifest["hook_attributes"]["url"].endswith(WEBHOOK_PATH)
    assert manifest["default_permissions"] == {
        "pull_requests": "write",
        "checks": "write",
        "issues": "write",
        "contents": "read",
        "metadata": "read",
    }
