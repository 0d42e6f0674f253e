"""The GitHub App client: one githubkit client per installation, our retry policy, our exception tree.

``GitHubApp`` is built once at start from the validated Settings. ``await app.installation(id)`` returns a
githubkit ``GitHub`` authenticated as that installation; it is kept for the life of the process and every
installation client sends through one shared connection pool, closed by ``await app.aclose()``.
Installation tokens are cached by githubkit (in this app's own ``MemCacheStrategy``) until one minute
before they expire.

Every request carries the current ``TRACE_ID`` (a delivery id or a job id) as ``X-Request-ID``; every answer
(and every request that got none) is counted in the metrics, by method and status code.

githubkit's default retry policy sleeps until a primary rate limit resets (up to an hour) and retries POSTs
on 5xx; ours (:func:`retry_policy`) does neither. Errors are translated into :class:`GitHubError` and its
subclasses at this edge (:func:`translate`, :func:`github_errors`).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TypeAlias

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    GitHubException,
    PrimaryRateLimitExceeded,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
)
from githubkit.retry import RetryOption
from githubkit.typing import RetryDecisionFunc

from bot import app_version
from bot.metrics import Metrics
from bot.settings import Settings

log = logging.getLogger("bot.github")

InstallationClient: TypeAlias = GitHub[AppInstallationAuthStrategy]

# The delivery id or job id of the current unit of work, sent as X-Request-ID on every request.
TRACE_ID: ContextVar[str | None] = ContextVar("github_trace_id", default=None)
TRACE_HEADER = "X-Request-ID"

# Server errors (5xx) and network errors: this many retries, waiting RETRY_BACKOFF[n] seconds before retry n.
MAX_RETRIES = 3
RETRY_BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0)
# Rate limits: wait at most this long (seconds) for a limit to lift, and retry at most this many times.
MAX_RATE_LIMIT_WAIT = 30.0
MAX_RATE_LIMIT_RETRIES = 3
# x-ratelimit-reset has a one-second resolution: wait a little past it.
RESET_SLACK = 1.0
# githubkit's default is no timeout at all.
REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
# Errors raised before the request left this process: safe to retry for every method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NETWORK = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class GitHubError(Exception):
    """Base of every GitHub failure; ``status`` and GitHub's own ``response_message`` when there was an answer."""

    def __init__(self, message: str, *, status: int | None = None, response_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.response_message = response_message


class GitHubNotConfigured(GitHubError):
    """The App id or private key is missing or unusable."""


class GitHubRateLimited(GitHubError):
    """A rate limit that does not lift within MAX_RATE_LIMIT_WAIT: reschedule for ``reset_at``."""

    def __init__(
        self,
        message: str,
        *,
        reset_at: datetime,
        status: int | None = None,
        response_message: str | None = None,
    ) -> None:
        super().__init__(message, status=status, response_message=response_message)
        self.reset_at = reset_at

    @property
    def retry_after(self) -> float:
        """Seconds from now until the limit lifts (0 when it already has)."""
        return max(0.0, (self.reset_at - datetime.now(UTC)).total_seconds())


class GitHubUnavailable(GitHubError):
    """5xx or a network failure that outlasted the retries: transient, the job may run again later."""


# --- retry policy ---------------------------------------------------------------------------------------------


def _failure(exc: GitHubException) -> GitHubException:
    """The real failure: an error while fetching the installation token arrives wrapped in RequestError."""
    if type(exc) is RequestError and isinstance(exc.exc, GitHubException):
        return exc.exc
    return exc


def _request_of(exc: GitHubException) -> httpx.Request | None:
    if isinstance(exc, RequestFailed):
        return exc.request
    if isinstance(exc, RequestError) and isinstance(exc.exc, httpx.RequestError):
        try:
            return exc.exc.request
        except RuntimeError:  # httpx raises when the error was never bound to a request
            return None
    return None


def _may_repeat(request: httpx.Request | None) -> bool:
    if request is None:
        return False
    # Minting one more installation token has no side effect, although it is a POST.
    return request.method in IDEMPOTENT_METHODS or request.url.path.endswith("/access_tokens")


# githubkit sleeps 60 s when a retry's wait is falsy (`retry_after or 60`, githubkit/core.py): never ask for 0.
MIN_WAIT = timedelta(milliseconds=1)


def _wait(seconds: float) -> timedelta:
    return max(timedelta(seconds=seconds), MIN_WAIT)


def _backoff(retry_count: int) -> timedelta:
    return _wait(RETRY_BACKOFF[min(retry_count, len(RETRY_BACKOFF) - 1)])


def retry_policy(exc: GitHubException, retry_count: int) -> RetryOption:
    """githubkit's ``auto_retry`` hook: decide whether to retry the failed attempt ``retry_count`` (0-based)."""
    failure = _failure(exc)
    request = _request_of(failure)
    where = f"{request.method} {request.url}" if request is not None else "token request"
    if isinstance(failure, RateLimitExceeded):
        # A rate-limited request was not applied: retry every method, but only for short waits.
        wait = failure.retry_after.total_seconds()
        if isinstance(failure, PrimaryRateLimitExceeded):
            wait += RESET_SLACK
        if retry_count >= MAX_RATE_LIMIT_RETRIES or wait > MAX_RATE_LIMIT_WAIT:
            return RetryOption(False)
        log.warning("GitHub rate limit on %s: retrying in %.1f s", where, wait)
        return RetryOption(True, _wait(wait))
    if retry_count >= MAX_RETRIES:
        return RetryOption(False)
    if isinstance(failure, RequestFailed):
        status = failure.response.status_code
        # Never on POST: a 502 on "create review" may have been applied, and a retry would post it twice.
        if status >= 500 and status != 501 and _may_repeat(request):
            log.warning("GitHub answered %s to %s: retry %d", status, where, retry_count + 1)
            return RetryOption(True, _backoff(retry_count))
        return RetryOption(False)
    if (
        isinstance(failure, RequestError)
        and isinstance(failure.exc, _NETWORK)
        and (isinstance(failure.exc, _NOT_SENT) or _may_repeat(request))
    ):
        log.warning("network error on %s (%r): retry %d", where, failure.exc, retry_count + 1)
        return RetryOption(True, _backoff(retry_count))
    return RetryOption(False)


# --- translation into our tree --------------------------------------------------------------------------------


def _message_of(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (ValueError, httpx.ResponseNotRead):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        text = ""
    return text[:200] or response.reason_phrase or f"HTTP {response.status_code}"


def _reset_at(failure: RateLimitExceeded) -> datetime:
    reset = failure.response.headers.get("x-ratelimit-reset")
    if isinstance(failure, PrimaryRateLimitExceeded) and reset and reset.isdigit():
        return datetime.fromtimestamp(int(reset), tz=UTC)
    return datetime.now(UTC) + failure.retry_after


def translate(exc: BaseException) -> GitHubError | None:
    """Our error for a githubkit (or our own) exception; None for anything else (let it propagate)."""
    if isinstance(exc, GitHubError):
        return exc
    if not isinstance(exc, GitHubException):
        return None
    failure = _failure(exc)
    token_step = failure is not exc
    prefix = "could not get an installation token: " if token_step else ""
    if isinstance(failure, RequestFailed):
        response = failure.response.raw_response
        status, text = response.status_code, _message_of(response)
        where = f"{failure.request.method} {failure.request.url.path}"
        if isinstance(failure, RateLimitExceeded):
            reset_at = _reset_at(failure)
            kind = "primary" if isinstance(failure, PrimaryRateLimitExceeded) else "secondary"
            return GitHubRateLimited(
                f"{prefix}GitHub {kind} rate limit on {where} ({text}); it lifts at {reset_at:%Y-%m-%d %H:%M:%S} UTC",
                reset_at=reset_at,
                status=status,
                response_message=text,
            )
        if status >= 500:
            return GitHubUnavailable(
                f"{prefix}GitHub answered {status} to {where}: {text}", status=status, response_message=text
            )
        hint = ""
        if token_step and status in (401, 403, 404):
            hint = " (check GITHUB_APP_ID and GITHUB_PRIVATE_KEY, and that the App is still installed)"
        return GitHubError(
            f"{prefix}GitHub answered {status} to {where}: {text}{hint}", status=status, response_message=text
        )
    if isinstance(failure, RequestError) and isinstance(failure.exc, httpx.TransportError):
        return GitHubUnavailable(f"{prefix}could not reach GitHub: {failure.exc!r}")
    if isinstance(failure, RequestError):
        return GitHubError(f"{prefix}GitHub request failed: {failure.exc!r}")
    return GitHubError(f"{prefix}GitHub request failed: {failure!r}")


class github_errors:
    """Translate githubkit exceptions raised inside the block into our tree (also around ``await``)."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, GitHubError):
            return
        translated = translate(exc)
        if translated is not None:
            raise translated from exc


# --- the App and its installation clients ---------------------------------------------------------------------


class _SharedTransport(httpx.AsyncBaseTransport):
    """One pool for every client: githubkit opens and closes an httpx client per request (outside
    ``async with``), and closing that client would close the pool. Only :meth:`close_pool` closes it.
    A request that gets no answer is counted here (the answers, by the response hook)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx.TransportError:
            self.metrics.github_network_error(request.method)
            raise

    async def aclose(self) -> None:
        return None

    async def close_pool(self) -> None:
        await self.inner.aclose()


async def _add_trace_id(request: httpx.Request) -> None:
    trace_id = TRACE_ID.get()
    if trace_id and TRACE_HEADER not in request.headers:
        request.headers[TRACE_HEADER] = trace_id


def _credentials(settings: Settings) -> tuple[int, str]:
    missing = []
    if settings.github_app_id is None:
        missing.append("GITHUB_APP_ID")
    try:
        key = settings.private_key()
    except OSError as exc:
        raise GitHubNotConfigured(f"GITHUB_PRIVATE_KEY_PATH: cannot read the App private key ({exc})") from exc
    if key is None:
        missing.append("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH")
    if missing or settings.github_app_id is None or key is None:
        raise GitHubNotConfigured(f"the GitHub App is not configured: set {' and '.join(missing)}")
    try:
        loaded = load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise GitHubNotConfigured(
            "GITHUB_PRIVATE_KEY / GITHUB_PRIVATE_KEY_PATH is not a PEM private key without a passphrase "
            "(download it from the App's settings page)"
        ) from exc
    if not isinstance(loaded, RSAPrivateKey):
        raise GitHubNotConfigured("GITHUB_PRIVATE_KEY / GITHUB_PRIVATE_KEY_PATH must be the App's RSA key")
    return settings.github_app_id, key


def _counted_retry_policy(metrics: Metrics) -> RetryDecisionFunc:
    """:func:`retry_policy`, counting each rate limit met and whether it was waited for."""

    def decide(exc: GitHubException, retry_count: int) -> RetryOption:
        option = retry_policy(exc, retry_count)
        failure = _failure(exc)
        if isinstance(failure, RateLimitExceeded):
            kind = "primary" if isinstance(failure, PrimaryRateLimitExceeded) else "secondary"
            metrics.github_limit(kind, retried=option.do_retry)
        return option

    return decide


class GitHubApp:
    """The App (JWT) client and one long-lived client per installation, over one connection pool.
    `metrics`: where its requests are counted (a private registry when None)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        app_id, private_key = _credentials(settings)
        self.app_id = app_id
        metrics = metrics or Metrics()
        self._transport = _SharedTransport(transport or httpx.AsyncHTTPTransport(), metrics)

        async def count_response(response: httpx.Response) -> None:
            metrics.github_response(response.request.method, response.status_code)

        self._app = GitHub(
            AppAuthStrategy(app_id, private_key),
            base_url=settings.github_api_url,
            user_agent=f"ai-dev-companion/{app_version()}",
            timeout=REQUEST_TIMEOUT,
            http_cache=False,
            auto_retry=_counted_retry_policy(metrics),
            # Our own, not githubkit's process-global cache: tokens of another GitHubApp never leak in.
            cache_strategy=MemCacheStrategy(),
            async_transport=self._transport,
            async_event_hooks={"request": [_add_trace_id], "response": [count_response]},
        )
        self._installations: dict[int, InstallationClient] = {}
        self._closed = False

    @property
    def app_client(self) -> GitHub[AppAuthStrategy]:
        """Authenticated as the App itself (JWT): for the /app and */installation routes only."""
        return self._app

    async def installation(self, installation_id: int) -> InstallationClient:
        """The client of one installation, created once and kept (keep a reference while using ``.rest``)."""
        if self._closed:
            raise GitHubError("the GitHub App client is closed")
        client = self._installations.get(installation_id)
        if client is None:
            client = self._app.with_auth(self._app.auth.as_installation(installation_id))
            self._installations[installation_id] = client
        return client

    async def aclose(self) -> None:
        """Close the shared connection pool (at shutdown)."""
        self._closed = True
        self._installations.clear()
        await self._transport.close_pool()

    async def __aenter__(self) -> GitHubApp:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
