"""AI Dev Companion: the service (webhooks, REST API, queue, GitHub I/O)."""

from importlib.metadata import PackageNotFoundError, version

NAME = "AI Dev Companion"


def app_version() -> str:
    """The installed project version (``pyproject.toml``), or ``0.0.0+local`` from a bare checkout."""
    try:
        return version("ai-dev-companion")
    except PackageNotFoundError:
        return "0.0.0+local"
