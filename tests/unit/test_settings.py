from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, load_settings
from tests.conftest import ROOT, SettingsFactory


def test_defaults_match_the_design_table(make_settings: SettingsFactory) -> None:
    settings = make_settings(queue_url="sqlite:///data/jobs.sqlite3")
    assert settings.github_api_url == "https://api.github.com"
    assert settings.model == "gpt-4o-mini"
    assert settings.reviewer == "auto"
    assert settings.queue_url == "sqlite:///data/jobs.sqlite3"
    assert settings.sqlite_path == Path("data/jobs.sqlite3")
    assert (settings.worker_concurrency, settings.max_concurrent_jobs) == (4, 100)
    assert (settings.rate_limit_per_minute, settings.installation_rate_limit) == (10, "30/hour")
    assert settings.rate_limit_storage_uri == "memory://"
    assert settings.api_keys == ()
    assert settings.forwarded_allow_list == ["127.0.0.1"]
    assert (settings.log_level, settings.log_format) == ("INFO", "console")
    assert not settings.llm_configured


def test_every_setting_of_the_design_table_exists() -> None:
    design_file = ROOT.parent / "shared" / "DESIGN.md"
    if not design_file.is_file():  # shared/ sits beside the clone on dev machines and in CI
        pytest.skip(f"{design_file} is not beside this checkout")
    design = design_file.read_text()
    table = design.split("| name | default | meaning |")[1].split("\n\n")[0]
    names = set()
    for row in table.splitlines()[2:]:
        for name in row.split("|")[1].split("/"):
            names.add(name.strip().lower())
    assert names, "the design's environment table was not found"
    assert names <= set(Settings.model_fields)


def test_reads_environment_and_splits_api_keys(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " key-one , key-two,, ")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("QUEUE_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----")
    settings = load_settings(_env_file=None)
    assert [key.get_secret_value() for key in settings.api_keys] == ["key-one", "key-two"]
    assert settings.log_level == "DEBUG"
    assert settings.queue_is_redis
    assert settings.private_key() == "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY: Input should be greater than or equal to 1"),
        ("WORKER_CONCURRENCY", "many", "WORKER_CONCURRENCY: Input should be a valid integer"),
        ("QUEUE_URL", "mysql://db/jobs", "QUEUE_URL: must start with sqlite:///"),
        ("RATE_LIMIT_STORAGE_URI", "memcached://x", "RATE_LIMIT_STORAGE_URI: must be memory://"),
        ("INSTALLATION_RATE_LIMIT", "lots", "INSTALLATION_RATE_LIMIT: must be a rate such as 30/hour"),
        ("REVIEWER", "magic", "REVIEWER: Input should be 'auto', 'rules' or 'crew'"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: Input should be 'console' or 'json'"),
        ("GITHUB_API_URL", "api.github.com", "GITHUB_API_URL: must be an http:// or https:// URL"),
        ("GITHUB_APP_ID", "-3", "GITHUB_APP_ID: Input should be greater than 0"),
        ("GITHUB_PRIVATE_KEY_PATH", "/nonexistent/key.pem", "GITHUB_PRIVATE_KEY_PATH: no file at"),
    ],
)
def test_a_bad_value_names_the_variable(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert expected in str(caught.value)


def test_key_file_is_read(make_settings: SettingsFactory, tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nxyz\n-----END PRIVATE KEY-----\n")
    settings = make_settings(github_private_key_path=key)
    assert settings.private_key() == key.read_text()
    assert key.read_text() in settings.secret_values()


def test_masked_view_hides_every_secret(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        github_webhook_secret="whsec-very-secret",
        openai_api_key="sk-test-abcdefghijklmnop",
        api_keys="first-key-123,second-key-456",
        github_private_key="-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----",
    )
    shown = settings.masked()
    text = repr(shown) + repr(settings)
    for secret in ("whsec-very-secret", "sk-test-abcdefghijklmnop", "first-key-123", "AAAA"):
        assert secret not in text
    assert shown["GITHUB_WEBHOOK_SECRET"] == "**********"
    assert shown["API_KEYS"] == "2 x **********"
    assert shown["MODEL"] == "gpt-4o-mini"


def test_dotenv_file_is_read(clean_env: None, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MODEL=qwen2.5-coder\nRATE_LIMIT_PER_MINUTE=3\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert (settings.model, settings.rate_limit_per_minute) == ("qwen2.5-coder", 3)
