"""The GitHub App client against a GHE-like API faked with respx: auth, token caching, pooling, the trace id,
the retry policy and the exception tree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.github import client as client_module
from bot.github.client import (
    TRACE_ID,
    GitHubApp,
    GitHubError,
    GitHubNotConfigured,
    GitHubRateLimited,
    GitHubUnavailable,
    github_errors,
    translate,
)
from bot.settings import Settings

BASE = "https://ghe.test/api/v3"
APP_ID = 4242
PR_PATH = "/repos/acme/app/pulls/7"
PR_JSON = {"number": 7, "state": "open", "head": {"sha": "a" * 40}, "base": {"sha": "b" * 40}}

SettingsFactory = Callable[..., Settings]


def gh_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # the only format githubkit parses


def token_response(request: httpx.Request) -> httpx.Response:
    installation = request.url.path.split("/")[-2]
    return httpx.Response(
        201,
        json={
            "token": f"ghs_installation{installation}",
            "expires_at": gh_time(datetime.now(UTC) + timedelta(hours=1)),
            "permissions": {"pull_requests": "write", "contents": "read", "checks": "write"},
            "repository_selection": "selected",
        },
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def gh_settings(make_settings: SettingsFactory, pem: str) -> Settings:
    return make_settings(github_app_id=APP_ID, github_private_key=pem, github_api_url=BASE)


@pytest.fixture
async def app(gh_settings: Settings) -> AsyncIterator[GitHubApp]:
    github_app = GitHubApp(gh_settings)
    yield github_app
    await github_app.aclose()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


@pytest.fixture
def tokens(api: respx.MockRouter) -> respx.Route:
    return api.post("/app/installations/1/access_tokens").mock(side_effect=token_response)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """githubkit's retry loop sleeps with anyio.sleep: record the waits instead of waiting."""
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    return recorded


def rate_limit_headers(remaining: int, reset: int) -> dict[str, str]:
    return {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-used": str(5000 - remaining),
        "x-ratelimit-reset": str(reset),
        "x-ratelimit-resource": "core",
    }


# --- configuration --------------------------------------------------------------------------------------------


def test_missing_credentials_name_the_variables(make_settings: SettingsFactory, pem: str) -> None:
    with pytest.raises(GitHubNotConfigured, match="GITHUB_APP_ID") as both:
        GitHubApp(make_settings())
    assert "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH" in str(both.value)
    assert isinstance(both.value, GitHubError)
    with pytest.raises(GitHubNotConfigured, match=r"set GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH$"):
        GitHubApp(make_settings(github_app_id=APP_ID))
    with pytest.raises(GitHubNotConfigured, match=r"set GITHUB_APP_ID$"):
        GitHubApp(make_settings(github_private_key=pem))


def test_a_key_that_is_not_an_rsa_pem_is_refused_at_start(make_settings: SettingsFactory) -> None:
    with pytest.raises(GitHubNotConfigured, match="not a PEM private key"):
        GitHubApp(make_settings(github_app_id=APP_ID, github_private_key="-----BEGIN nonsense-----"))
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(GitHubNotConfigured, match="RSA"):
        GitHubApp(make_settings(github_app_id=APP_ID, github_private_key=ec_pem))


# --- auth, token cache, installation clients --------------------------------------------------------------------


async def test_token_is_fetched_once_and_installation_clients_are_kept(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, rsa_key: rsa.RSAPrivateKey
) -> None:
    tokens_2 = api.post("/app/installations/2/access_tokens").mock(side_effect=token_response)
    pull = api.get(PR_PATH).respond(200, json=PR_JSON)

    gh = await app.installation(1)
    assert await app.installation(1) is gh
    first = await gh.rest.pulls.async_get("acme", "app", 7)
    await gh.rest.pulls.async_get("acme", "app", 7)
    await (await app.installation(1)).rest.pulls.async_get("acme", "app", 7)
    other = await app.installation(2)
    assert other is not gh
    await other.rest.pulls.async_get("acme", "app", 7)

    assert first.json()["head"]["sha"] == "a" * 40
    assert tokens.call_count == 1
    assert tokens_2.call_count == 1
    assert pull.call_count == 4
    token_request = tokens.calls[0].request
    claims = jwt.decode(token_request.headers["authorization"].removeprefix("Bearer "), rsa_key.public_key(), ["RS256"])
    assert claims["iss"] == str(APP_ID)
    assert claims["exp"] - claims["iat"] <= 600
    authorizations = [call.request.headers["authorization"] for call in pull.calls]
    assert authorizations == ["token ghs_installation1"] * 3 + ["token ghs_installation2"]
    assert pull.calls[0].request.headers["user-agent"].startswith("ai-dev-companion/")


async def test_the_app_client_uses_the_jwt(app: GitHubApp, api: respx.MockRouter) -> None:
    route = api.get("/repos/acme/app/installation").respond(200, json={"id": 1, "app_id": APP_ID})
    response = await app.app_client.rest.apps.async_get_repo_installation("acme", "app")
    assert response.json()["id"] == 1
    assert route.calls[0].request.headers["authorization"].startswith("Bearer ")


async def test_every_request_carries_the_trace_id(app: GitHubApp, api: respx.MockRouter, tokens: respx.Route) -> None:
    pull = api.get(PR_PATH).respond(200, json=PR_JSON)
    gh = await app.installation(1)

    token = TRACE_ID.set("delivery-72d3162e")
    try:
        await gh.rest.pulls.async_get("acme", "app", 7)
        await gh.rest.pulls.async_get("acme", "app", 7, headers={"X-Request-ID": "explicit"})
    finally:
        TRACE_ID.reset(token)
    await gh.rest.pulls.async_get("acme", "app", 7)

    assert tokens.calls[0].request.headers["x-request-id"] == "delivery-72d3162e"
    assert [call.request.headers.get("x-request-id") for call in pull.calls] == ["delivery-72d3162e", "explicit", None]


class CountingTransport(httpx.MockTransport):
    def __init__(self, router: respx.MockRouter) -> None:
        super().__init__(router.async_handler)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_one_pool_for_every_installation_closed_by_the_app(gh_settings: Settings) -> None:
    router = respx.MockRouter(base_url=BASE, assert_all_mocked=True, assert_all_called=True)
    router.post(path__regex=r"/app/installations/\d+/access_tokens").mock(side_effect=token_response)
    pull = router.get(PR_PATH).respond(200, json=PR_JSON)
    transport = CountingTransport(router)

    async with GitHubApp(gh_settings, transport=transport) as app:
        for installation in (1, 2, 1):
            gh = await app.installation(installation)
            await gh.rest.pulls.async_get("acme", "app", 7)
        assert transport.closed == 0  # githubkit's per-request clients did not close the shared pool
    assert transport.closed == 1
    assert pull.call_count == 3
    router.assert_all_called()
    with pytest.raises(GitHubError, match="closed"):
        await app.installation(1)


# --- retries --------------------------------------------------------------------------------------------------


async def test_a_5xx_on_get_is_retried_with_backoff(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    pull = api.get(PR_PATH).mock(
        side_effect=[
            httpx.Response(502, text="<html>Bad gateway</html>"),
            httpx.Response(503),
            httpx.Response(200, json=PR_JSON),
        ]
    )
    gh = await app.installation(1)
    response = await gh.rest.pulls.async_get("acme", "app", 7)
    assert response.status_code == 200
    assert pull.call_count == 3
    assert sleeps == [0.5, 1.0]


async def test_a_5xx_that_persists_becomes_unavailable_after_three_retries(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    pull = api.get(PR_PATH).respond(502, json={"message": "Server Error"})
    gh = await app.installation(1)
    with pytest.raises(GitHubUnavailable, match="502") as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    assert caught.value.status == 502
    assert caught.value.response_message == "Server Error"
    assert pull.call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]


async def test_a_5xx_on_post_is_never_retried(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    review = api.post("/repos/acme/app/pulls/7/reviews").respond(502, json={"message": "Bad Gateway"})
    gh = await app.installation(1)
    with pytest.raises(GitHubUnavailable) as caught, github_errors():
        await gh.rest.pulls.async_create_review("acme", "app", 7, commit_id="a" * 40, body="x", event="COMMENT")
    assert caught.value.status == 502
    assert review.call_count == 1
    assert sleeps == []


async def test_network_errors_retry_idempotent_calls_and_unsent_posts_only(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    pull = api.get(PR_PATH).mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=PR_JSON)])
    comment = api.post("/repos/acme/app/issues/7/comments").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
    )
    gh = await app.installation(1)
    assert (await gh.rest.pulls.async_get("acme", "app", 7)).status_code == 200
    # A refused connection never sent the POST: retried. A read timeout may have been applied: not retried.
    with pytest.raises(GitHubUnavailable, match="could not reach GitHub"), github_errors():
        await gh.rest.issues.async_create_comment("acme", "app", 7, body="hello")
    assert pull.call_count == 2
    assert comment.call_count == 2
    assert sleeps == [0.5, 0.5]


async def test_retries_really_wait_the_backoff(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RETRY_BACKOFF", (0.001, 0.002, 0.003))
    pull = api.get(PR_PATH).mock(side_effect=[httpx.Response(500), httpx.Response(200, json=PR_JSON)])
    gh = await app.installation(1)
    assert (await gh.rest.pulls.async_get("acme", "app", 7)).status_code == 200
    assert pull.call_count == 2


async def test_a_secondary_limit_is_waited_out_for_every_method(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    limited = httpx.Response(
        403,
        headers={"retry-after": "7"},
        json={
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        },
    )
    review = api.post("/repos/acme/app/pulls/7/reviews").mock(
        side_effect=[limited, httpx.Response(200, json={"id": 80, "state": "COMMENTED"})]
    )
    gh = await app.installation(1)
    response = await gh.rest.pulls.async_create_review("acme", "app", 7, commit_id="a" * 40, event="COMMENT", body="x")
    assert response.json()["id"] == 80
    assert review.call_count == 2
    assert sleeps == [7.0]


async def test_a_secondary_limit_is_retried_at_most_three_times(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    pull = api.get(PR_PATH).respond(429, headers={"retry-after": "2"}, json={"message": "secondary rate limit"})
    gh = await app.installation(1)
    with pytest.raises(GitHubRateLimited, match="secondary rate limit") as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    assert caught.value.status == 429
    assert pull.call_count == 4
    assert sleeps == [2.0, 2.0, 2.0]


async def test_a_zero_wait_is_never_githubkits_default_minute(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    # githubkit sleeps 60 s when asked to wait 0 (`retry_after or 60`): the policy always asks for a little.
    limited = httpx.Response(429, headers={"retry-after": "0"}, json={"message": "secondary rate limit"})
    pull = api.get(PR_PATH).mock(side_effect=[limited, httpx.Response(200, json={"number": 7})])
    gh = await app.installation(1)
    await gh.rest.pulls.async_get("acme", "app", 7)
    assert pull.call_count == 2
    assert sleeps == [0.001]


async def test_a_long_secondary_limit_is_not_waited_for(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    api.get(PR_PATH).respond(403, headers={"retry-after": "120"}, json={"message": "secondary rate limit"})
    gh = await app.installation(1)
    with pytest.raises(GitHubRateLimited) as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    assert sleeps == []
    assert 100 < caught.value.retry_after <= 120


async def test_a_primary_limit_far_from_reset_raises_at_once(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    reset = int(datetime.now(UTC).timestamp()) + 3000
    pull = api.get(PR_PATH).respond(
        403,
        headers=rate_limit_headers(0, reset),
        json={
            "message": "API rate limit exceeded for installation ID 1.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        },
    )
    gh = await app.installation(1)
    with pytest.raises(GitHubRateLimited) as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    reset_at = datetime.fromtimestamp(reset, tz=UTC)
    assert caught.value.reset_at == reset_at
    assert f"{reset_at:%Y-%m-%d %H:%M:%S} UTC" in str(caught.value)
    assert "primary" in str(caught.value)
    assert caught.value.response_message == "API rate limit exceeded for installation ID 1."
    assert pull.call_count == 1
    assert sleeps == []


async def test_a_primary_limit_that_resets_soon_is_waited_for(
    app: GitHubApp, api: respx.MockRouter, tokens: respx.Route, sleeps: list[float]
) -> None:
    reset = int(datetime.now(UTC).timestamp()) + 5
    pull = api.get(PR_PATH).mock(
        side_effect=[
            httpx.Response(403, headers=rate_limit_headers(0, reset), json={"message": "API rate limit exceeded"}),
            httpx.Response(200, headers=rate_limit_headers(4999, reset + 3600), json=PR_JSON),
        ]
    )
    gh = await app.installation(1)
    assert (await gh.rest.pulls.async_get("acme", "app", 7)).status_code == 200
    assert pull.call_count == 2
    assert len(sleeps) == 1
    assert 3 < sleeps[0] <= 5 + client_module.RESET_SLACK


async def test_a_plain_403_is_not_a_rate_limit(app: GitHubApp, api: respx.MockRouter, tokens: respx.Route) -> None:
    api.get(PR_PATH).respond(403, json={"message": "Resource not accessible by integration"})
    gh = await app.installation(1)
    with pytest.raises(GitHubError) as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    assert type(caught.value) is GitHubError
    assert caught.value.status == 403
    assert caught.value.response_message == "Resource not accessible by integration"


# --- token endpoint failures ------------------------------------------------------------------------------------


async def test_a_refused_token_is_a_clear_error(app: GitHubApp, api: respx.MockRouter, sleeps: list[float]) -> None:
    api.post("/app/installations/1/access_tokens").respond(
        401, json={"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com"}
    )
    gh = await app.installation(1)
    with pytest.raises(GitHubError) as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    error = caught.value
    assert type(error) is GitHubError
    assert error.status == 401
    assert error.response_message == "A JSON web token could not be decoded"
    assert "installation token" in str(error)
    assert "GITHUB_APP_ID" in str(error)
    assert sleeps == []


async def test_a_token_endpoint_5xx_is_retried_then_unavailable(
    app: GitHubApp, api: respx.MockRouter, sleeps: list[float]
) -> None:
    tokens = api.post("/app/installations/1/access_tokens").mock(
        side_effect=[httpx.Response(500), httpx.Response(502), httpx.Response(503), httpx.Response(504)]
    )
    gh = await app.installation(1)
    with pytest.raises(GitHubUnavailable, match="installation token") as caught, github_errors():
        await gh.rest.pulls.async_get("acme", "app", 7)
    assert caught.value.status == 504
    assert tokens.call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]


async def test_a_token_endpoint_blip_is_retried(app: GitHubApp, api: respx.MockRouter, sleeps: list[float]) -> None:
    api.post("/app/installations/1/access_tokens").mock(
        side_effect=[
            httpx.Response(502),
            token_response(httpx.Request("POST", f"{BASE}/app/installations/1/access_tokens")),
        ]
    )
    pull = api.get(PR_PATH).respond(200, json=PR_JSON)
    gh = await app.installation(1)
    assert (await gh.rest.pulls.async_get("acme", "app", 7)).status_code == 200
    assert pull.calls[0].request.headers["authorization"] == "token ghs_installation1"
    assert sleeps == [0.5]


# --- translation ----------------------------------------------------------------------------------------------


def test_translate_leaves_foreign_exceptions_alone() -> None:
    assert translate(ValueError("x")) is None
    ours = GitHubUnavailable("down", status=503)
    assert translate(ours) is ours
    with pytest.raises(KeyError), github_errors():
        raise KeyError("not GitHub's")


def test_all_errors_share_one_base() -> None:
    classes: list[Any] = [GitHubNotConfigured, GitHubRateLimited, GitHubUnavailable]
    assert all(issubclass(cls, GitHubError) for cls in classes)
