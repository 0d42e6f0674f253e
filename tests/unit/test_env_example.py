"""`.env.example` documents every setting, and its values are valid as they stand."""

from __future__ import annotations

from bot.settings import Settings
from tests.conftest import ROOT


def test_env_example_lists_every_setting_once(clean_env: None) -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert sorted(names) == sorted(name.upper() for name in Settings.model_fields)
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.github_webhook_secret is None  # empty means unset, not ""
