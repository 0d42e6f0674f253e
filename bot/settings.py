"""Settings: read once from the environment (and `.env`), validated at start, then injected.

Nothing else in the project reads ``os.environ``. A wrong value stops the start with a message that
names the environment variable (see :func:`load_settings`).
"""

from __future__ import annotations

import re
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse as parse_limit
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

QUEUE_SCHEMES = ("sqlite", "redis", "rediss")
RATE_LIMIT_SCHEMES = ("memory", "redis", "rediss", "async+redis", "async+rediss")

# Names of the settings whose values must never be printed or logged.
SECRET_FIELDS = ("github_private_key", "github_webhook_secret", "openai_api_key", "api_keys")


# US dollars per million tokens (prompt, completion), OpenAI's list prices; LLM_PRICES adds or overrides.
DEFAULT_PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
}


def parse_prices(text: str) -> dict[str, tuple[float, float]]:
    """`model=prompt:completion,...` in US dollars per million tokens, e.g. `my-vllm-model=0:0`."""
    prices: dict[str, tuple[float, float]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        model, _, pair = item.partition("=")
        prompt, _, completion = pair.partition(":")
        try:
            values = (float(prompt), float(completion))
        except ValueError:
            raise ValueError(f"{item!r} is not model=prompt:completion (dollars per million tokens)") from None
        if not model.strip() or min(values) < 0:
            raise ValueError(f"{item!r} is not model=prompt:completion (dollars per million tokens)")
        prices[model.strip()] = values
    return prices


class ConfigError(Exception):
    """The configuration is invalid; the message names each variable and what is wrong with it."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


class Settings(BaseSettings):
    """Every setting of DESIGN.md's table. Field names are the environment variable names, lowercased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        env_ignore_empty=True,
        protected_namespaces=(),
    )

    github_app_id: int | None = Field(default=None, gt=0)
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = "https://api.github.com"

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    model: str = Field(default="gpt-4o-mini", min_length=1)
    reviewer: Literal["auto", "rules", "crew"] = "auto"
    llm_call_budget_tokens: int = Field(default=8000, ge=1000, le=1_000_000)
    llm_review_budget_tokens: int = Field(default=60_000, ge=1000, le=10_000_000)
    llm_concurrency: int = Field(default=2, ge=1, le=32)
    llm_timeout_seconds: float = Field(default=60, gt=0, le=600)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_cache_ttl_seconds: int = Field(default=7 * 86_400, ge=0)
    llm_prices: str = ""

    queue_url: str = "sqlite:///data/jobs.sqlite3"
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    max_concurrent_jobs: int = Field(default=100, ge=1)
    job_timeout_seconds: int = Field(default=300, ge=1, le=86_400)
    job_result_ttl_seconds: int = Field(default=3600, ge=60)
    chat_timeout_seconds: float = Field(default=60, gt=0, le=600)
    # `python -m bot worker`'s own metrics endpoint (serve has GET /metrics); port 0: none.
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1)

    rate_limit_per_minute: int = Field(default=10, ge=1)
    installation_rate_limit: str = "30/hour"
    rate_limit_storage_uri: str = "memory://"
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    forwarded_allow_ips: str = "127.0.0.1"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("log_level", "reviewer", "log_format", mode="before")
    @classmethod
    def _normalise_case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.upper() if value.lower() in ("debug", "info", "warning", "error") else value.lower()

    @field_validator("github_private_key", mode="before")
    @classmethod
    def _unescape_pem(cls, value: Any) -> Any:
        # A PEM key pasted into one env line usually has literal "\n" sequences.
        if isinstance(value, str) and "\\n" in value:
            return value.replace("\\n", "\n")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("github_api_url", "openai_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("queue_url")
    @classmethod
    def _queue_url(cls, value: str) -> str:
        if _scheme(value) not in QUEUE_SCHEMES:
            raise ValueError("must start with sqlite:/// (embedded) or redis:// (shared)")
        if _scheme(value) == "sqlite" and not value.startswith("sqlite:///"):
            raise ValueError("an embedded queue is sqlite:///relative/path or sqlite:////absolute/path")
        return value

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _storage_uri(cls, value: str) -> str:
        if _scheme(value) not in RATE_LIMIT_SCHEMES:
            raise ValueError("must be memory:// or redis://host:port/db")
        return value

    @field_validator("llm_prices")
    @classmethod
    def _prices(cls, value: str) -> str:
        parse_prices(value)
        return value

    @field_validator("installation_rate_limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        try:
            parse_limit(value)
        except ValueError:
            raise ValueError("must be a rate such as 30/hour or 100/day") from None
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _ips(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        for part in parts:
            if part != "*":
                try:
                    ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(f"{part!r} is not an IP address, a CIDR network or *") from None
        return ",".join(parts)

    @model_validator(mode="after")
    def _key_source(self) -> Settings:
        if self.github_private_key is not None and self.github_private_key_path is not None:
            raise ValueError("set GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH, not both")
        if self.github_private_key_path is not None and not self.github_private_key_path.is_file():
            raise ValueError(f"GITHUB_PRIVATE_KEY_PATH: no file at {self.github_private_key_path}")
        return self

    # Derived views, so callers never re-interpret raw strings.

    @property
    def queue_is_redis(self) -> bool:
        return _scheme(self.queue_url) in ("redis", "rediss")

    @property
    def sqlite_path(self) -> Path:
        """The embedded queue's database file (only meaningful when the queue is SQLite)."""
        return Path(self.queue_url.removeprefix("sqlite:///"))

    @property
    def llm_configured(self) -> bool:
        return self.openai_api_key is not None

    @property
    def forwarded_allow_list(self) -> list[str]:
        return self.forwarded_allow_ips.split(",") if self.forwarded_allow_ips else []

    def price_table(self) -> dict[str, tuple[float, float]]:
        return {**DEFAULT_PRICES, **parse_prices(self.llm_prices)}

    def private_key(self) -> str | None:
        """The App's PEM private key, from GITHUB_PRIVATE_KEY or the file at GITHUB_PRIVATE_KEY_PATH."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text(encoding="utf-8")
        return None

    def secret_values(self) -> list[str]:
        """Every configured secret in clear, for the log redaction filter (never for output)."""
        values: list[str] = []
        for name in SECRET_FIELDS:
            value = getattr(self, name)
            items = value if isinstance(value, tuple) else (value,)
            values.extend(item.get_secret_value() for item in items if item is not None)
        key = self.private_key() if self.github_private_key_path is not None else None
        if key:
            values.append(key)
        return [value for value in values if len(value) >= 4]

    def masked(self) -> dict[str, str]:
        """Effective settings for display: every secret replaced by a mask, every other value as is."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_FIELDS:
                count = len(value) if isinstance(value, tuple) else int(value is not None)
                text = "(not set)" if count == 0 else ("**********" if count == 1 else f"{count} x **********")
            elif value is None:
                text = "(not set)"
            else:
                text = str(value)
            shown[name.upper()] = text
        return shown


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and `.env`; raise ConfigError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
