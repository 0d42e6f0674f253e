"""The web tier on AWS Lambda (deploy/lambda/handler.py): its module-level `handler` driven in-process with API
Gateway HTTP API events (payload format 2.0), invocation after invocation as in one warm container, against the
CI Redis; and the packaging (deploy/lambda/package.sh --dry-run) that leaves CrewAI out of the zip.

Isolation in the shared Redis: every delivery has its own head SHA and delivery id, every caller its own
address, and each test deletes the job, delivery and limiter keys it created, nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import pytest
import redis

from bot.api.webhooks import BAD_SIGNATURE, MISSING_SIGNATURE, WEBHOOK_PATH, signature
from bot.jobs.deliveries import REDIS_PREFIX
from bot.jobs.queue import QUEUE_NAME, JobPolicy, Jobs, JobState, JobView, QueueUnavailable
from bot.jobs.tasks import REVIEW_PULL_REQUEST
from bot.settings import Settings
from tests.conftest import FIXTURES, ROOT

HANDLER = ROOT / "deploy" / "lambda" / "handler.py"
PACKAGE = ROOT / "deploy" / "lambda" / "package.sh"
SECRET = "It's a Secret to Everybody"
API_ID = "a1b2c3d4e5"
API_HOST = f"{API_ID}.execute-api.eu-west-1.amazonaws.com"
KOTLIN = "fun length(name: String?) = name!!.length\n"

# Come only with crewai: none may be in the zip. The web tier needs all of WEB_TIER.
CREWAI_ONLY = (
    "crewai",
    "litellm",
    "chromadb",
    "openai",
    "lancedb",
    "onnxruntime",
    "tokenizers",
    "huggingface-hub",
    "numpy",
    "instructor",
    "opentelemetry-sdk",
)
WEB_TIER = ("litestar", "mangum", "saq", "redis", "limits", "githubkit", "pydantic-settings", "tree-sitter-kotlin")


class LambdaModule(Protocol):
    """What the tests use of deploy/lambda/handler.py (loaded from its path: `lambda` is not importable)."""

    LambdaConfigError: type[Exception]

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...

    @property
    def service(self) -> Any: ...


@dataclass
class FakeContext:
    """The Lambda context object: the attributes Lambda's runtime gives it (Mangum hands it on, unread)."""

    function_name: str = "ai-dev-companion-web"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:ai-dev-companion-web"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/ai-dev-companion-web"
    log_stream_name: str = "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
    identity: Any = None
    client_context: Any = None
    deadline: float = field(default_factory=lambda: time.monotonic() + 30)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def unique_address() -> str:
    """A caller address no other test (or earlier run within the limiter's window) has used."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}::{uuid.uuid4().hex[:4]}"


def api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "198.51.100.23",
    forwarded_for: str | None = None,
    base64_body: bool = False,
    stage: str = "$default",
) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload 2.0) as Lambda gets it: headers lower-cased, X-Forwarded-For with
    the caller's address appended by API Gateway after whatever the caller sent, the body as text or base64."""
    now = time.time()
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    sent = {
        "accept": "*/*",
        "host": API_HOST,
        "user-agent": "GitHub-Hookshot/044aadd",
        "x-amzn-trace-id": f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}",
        "x-forwarded-for": f"{forwarded_for}, {source_ip}" if forwarded_for else source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **{name.lower(): value for name, value in (headers or {}).items()},
    }
    if body is not None:
        sent["content-length"] = str(len(body))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": sent,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": API_HOST,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": sent["user-agent"],
            },
            "requestId": base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("="),
            "routeKey": "$default",
            "stage": stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": base64_body,
    }
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query))
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if base64_body else body.decode("utf-8")
    return event


def pull_request_opened(head_sha: str) -> bytes:
    """GitHub's example `pull_request.opened`, with its own head (its own job key) and a non-ASCII title (the
    signature is over the UTF-8 bytes that API Gateway passes on as text)."""
    payload = json.loads((FIXTURES / "webhooks" / "pull_request.opened.json").read_text(encoding="utf-8"))
    payload["pull_request"]["head"]["sha"] = head_sha
    payload["pull_request"]["title"] = "Écran d'accueil: ✓ Compose"
    return json.dumps(payload, ensure_ascii=False).encode()


def delivery_event(
    body: bytes, delivery: str, *, secret: str | None = SECRET, base64_body: bool = False
) -> dict[str, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret.encode(), body)
    return api_event(
        "POST", WEBHOOK_PATH, body=body, headers=headers, source_ip="140.82.115.2", base64_body=base64_body
    )


def chat_event(source_ip: str, *, forwarded_for: str | None = None) -> dict[str, Any]:
    body = json.dumps({"source_code": KOTLIN}).encode()
    headers = {"Content-Type": "application/json"}
    return api_event(
        "POST", "/chat", query="fast=true", body=body, headers=headers, source_ip=source_ip, forwarded_for=forwarded_for
    )


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def invoke(lam: LambdaModule, event: dict[str, Any]) -> Answer:
    response = lam.handler(event, FakeContext())
    raw = base64.b64decode(response["body"]) if response["isBase64Encoded"] else response["body"].encode()
    return Answer(response["statusCode"], response["headers"] or {}, json.loads(raw) if raw else None)


def load_handler() -> ModuleType:
    name = f"lambda_handler_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, HANDLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class RedisKeys:
    """Deletes what a test created in the shared Redis: its jobs, delivery ids and limiter windows."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.jobs: list[str] = []
        self.deliveries: list[str] = []
        self.addresses: list[str] = []

    def clean(self) -> None:
        for key in self.jobs:
            job_id = f"saq:job:{QUEUE_NAME}:{key}"
            self.client.delete(job_id)
            self.client.zrem(f"saq:{QUEUE_NAME}:incomplete", job_id)
            for name in ("queued", "active"):
                self.client.lrem(f"saq:{QUEUE_NAME}:{name}", 0, job_id)
        for delivery in self.deliveries:
            self.client.delete(REDIS_PREFIX + delivery)
        for address in self.addresses:
            stale = list(self.client.scan_iter(match=f"*ip:{address}/*"))
            if stale:
                self.client.delete(*stale)


async def stored_job(redis_url: str, key: str) -> JobView | None:
    jobs = Jobs.from_url(redis_url, JobPolicy(), capacity=100)
    await jobs.connect()
    try:
        return await jobs.get(key)
    finally:
        await jobs.close()


@pytest.fixture
def lambda_env(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with no setting but the test's own, and no `.env` (Lambda's working directory has none)."""
    monkeypatch.delenv("API_GATEWAY_BASE_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def lam(lambda_env: pytest.MonkeyPatch) -> Iterator[LambdaModule]:
    """A fresh copy of the handler module: a new container. Shut down (its lifespan exited) after the test."""
    module = load_handler()
    # The handler routes every log through the service's handler; here pytest keeps its own capture.
    lambda_env.setattr(module, "configure_logging", lambda *args, **kwargs: None)
    try:
        yield cast("LambdaModule", module)
    finally:
        module.shutdown()
        sys.modules.pop(module.__name__, None)


@pytest.fixture
def on_redis(lambda_env: pytest.MonkeyPatch, redis_url: str) -> str:
    """The settings a Lambda deploy needs: the queue and the limits in Redis, a webhook secret."""
    lambda_env.setenv("QUEUE_URL", redis_url)
    lambda_env.setenv("RATE_LIMIT_STORAGE_URI", redis_url)
    lambda_env.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    lambda_env.setenv("CHAT_TIMEOUT_SECONDS", "20")
    return redis_url


@pytest.fixture
def keys(redis_url: str) -> Iterator[RedisKeys]:
    tracked = RedisKeys(redis_url)
    try:
        yield tracked
    finally:
        tracked.clean()
        tracked.client.close()


@pytest.fixture(scope="module")
def zip_requirements() -> dict[str, str]:
    """What `package.sh --dry-run` says the zip installs: normalized name -> its requirement line."""
    run = subprocess.run(
        ["bash", str(PACKAGE), "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    lines = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    assert all(re.match(r"^[A-Za-z0-9._-]+==\S+( ; .+)?$", line) for line in lines), lines
    return {normalized(line.split("==")[0]): line for line in lines}


# Refused settings: what each environment gets wrong for a Lambda. No Redis is reached: nothing is built.
UNUSED_REDIS = "redis://127.0.0.1:1/0"
FINE = {"QUEUE_URL": UNUSED_REDIS, "RATE_LIMIT_STORAGE_URI": UNUSED_REDIS, "CHAT_TIMEOUT_SECONDS": "20"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({}, ["QUEUE_URL", "RATE_LIMIT_STORAGE_URI", "CHAT_TIMEOUT_SECONDS"], id="defaults"),
        pytest.param({**FINE, "QUEUE_URL": "sqlite:///jobs.sqlite3"}, ["QUEUE_URL"], id="embedded-queue"),
        pytest.param({**FINE, "RATE_LIMIT_STORAGE_URI": "memory://"}, ["RATE_LIMIT_STORAGE_URI"], id="memory-limits"),
        pytest.param({**FINE, "FORWARDED_ALLOW_IPS": "*"}, ["FORWARDED_ALLOW_IPS"], id="trust-any-proxy"),
        pytest.param({**FINE, "CHAT_TIMEOUT_SECONDS": "26"}, ["CHAT_TIMEOUT_SECONDS"], id="chat-timeout"),
        pytest.param({**FINE, "API_GATEWAY_BASE_PATH": "prod"}, ["API_GATEWAY_BASE_PATH"], id="base-path"),
    ],
)
def test_settings_a_lambda_cannot_honour_are_refused_naming_each_variable(
    lam: LambdaModule, lambda_env: pytest.MonkeyPatch, env: dict[str, str], named: list[str]
) -> None:
    for name, value in env.items():
        lambda_env.setenv(name, value)

    for _ in range(2):  # a refused start is not remembered: the next invocation is refused again, as clearly
        with pytest.raises(lam.LambdaConfigError) as refused:
            lam.handler(api_event("GET", "/healthz"), FakeContext())
        message = str(refused.value)
        assert message.startswith("invalid configuration for AWS Lambda:"), message
        assert [line.split(":")[0].strip() for line in message.splitlines()[1:]] == named, message
    if "QUEUE_URL" in named:
        assert "QUEUE_URL: must be redis:// or rediss:// on AWS Lambda, not sqlite://" in message
        assert "python -m bot worker" in message
    assert lam.service.cache_info().currsize == 0
    assert not list(Path.cwd().iterdir())  # nothing was built: no embedded queue file either


def test_a_startup_error_reaches_lambda_as_itself_and_the_next_invocation_starts_again(
    lam: LambdaModule, lambda_env: pytest.MonkeyPatch
) -> None:
    for name, value in FINE.items():
        lambda_env.setenv(name, value)

    async def refuse(self: Jobs) -> None:
        raise QueueUnavailable("QUEUE_URL: the queue at Redis does not open: connection refused")

    with lambda_env.context() as patched:
        patched.setattr(Jobs, "connect", refuse)
        # Not an exception group from the task group of Litestar's lifespan: the error itself, for the logs.
        with pytest.raises(QueueUnavailable, match=r"^QUEUE_URL: the queue at Redis does not open"):
            lam.handler(api_event("GET", "/healthz"), FakeContext())
    answer = invoke(lam, api_event("GET", "/healthz"))  # Redis connects lazily: /healthz needs none

    assert (answer.status, answer.body) == (200, {"status": "ok"})
    assert lam.service.cache_info().misses == 2


def test_importing_the_handler_reads_no_setting(lam: LambdaModule) -> None:
    # The defaults are refused for Lambda, yet the import went through: settings are read on first invocation.
    assert lam.service.cache_info().currsize == 0


@pytest.mark.redis
def test_a_warm_container_serves_one_invocation_after_another_from_one_startup(
    lam: LambdaModule, on_redis: str
) -> None:
    first = invoke(lam, api_event("GET", "/healthz"))
    second = invoke(lam, api_event("GET", "/healthz"))
    ready = invoke(lam, api_event("GET", "/readyz"))
    welcome = invoke(lam, api_event("GET", "/"))

    assert (first.status, first.body) == (200, {"status": "ok"})
    assert (second.status, second.body) == (200, {"status": "ok"})
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert ready.status == 200, ready.body
    assert ready.body == {
        "status": "ready",
        "checks": {"queue": "ok", "rate_limit_storage": "ok", "github_webhooks": "ok"},
    }
    assert welcome.status == 200
    assert welcome.headers["content-type"].startswith("application/json")
    # Built and started once (one lifespan, one set of Redis clients), not around each invocation.
    assert lam.service.cache_info().misses == 1


@pytest.mark.redis
def test_a_named_stage_is_stripped_with_api_gateway_base_path(
    lam: LambdaModule, on_redis: str, lambda_env: pytest.MonkeyPatch
) -> None:
    lambda_env.setenv("API_GATEWAY_BASE_PATH", "/prod")

    answer = invoke(lam, api_event("GET", "/healthz", stage="prod"))

    assert (answer.status, answer.body) == (200, {"status": "ok"})


@pytest.mark.redis
def test_a_signed_delivery_is_queued_in_redis_once(lam: LambdaModule, on_redis: str, keys: RedisKeys) -> None:
    head = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    key = f"Codertocat/Hello-World#2@{head}"
    body = pull_request_opened(head)
    delivery = str(uuid.uuid4())
    keys.jobs.append(key)
    keys.deliveries.append(delivery)

    # API Gateway passes a body base64-encoded or as text; the signature holds over the same bytes either way.
    queued = invoke(lam, delivery_event(body, delivery, base64_body=True))
    assert queued.status == 202, queued.body
    assert queued.body == {"queued": key, "status": "queued", "created": True}
    job = asyncio.run(stored_job(on_redis, key))
    assert job is not None
    assert (job.key, job.function, job.state) == (key, REVIEW_PULL_REQUEST, JobState.QUEUED)

    again = invoke(lam, delivery_event(body, delivery))  # GitHub's redelivery, the next warm invocation
    assert again.status == 202
    assert again.body == {"ignored": f"delivery {delivery} was already received"}

    unsigned = invoke(lam, delivery_event(body, str(uuid.uuid4()), secret=None))
    assert unsigned.status == 401
    assert unsigned.body == {
        "error": {"type": "unauthorized", "message": MISSING_SIGNATURE},
        "detail": MISSING_SIGNATURE,
    }
    assert unsigned.headers["content-type"].startswith("application/json")

    forged = invoke(lam, delivery_event(body, str(uuid.uuid4()), secret="not the secret"))
    assert forged.status == 401
    assert forged.body == {"error": {"type": "unauthorized", "message": BAD_SIGNATURE}, "detail": BAD_SIGNATURE}

    job = asyncio.run(stored_job(on_redis, key))
    assert job is not None
    assert job.state == JobState.QUEUED  # no worker in the web tier: the job waits for `python -m bot worker`


@pytest.mark.redis
def test_rate_limits_key_on_the_callers_source_ip_not_on_x_forwarded_for(
    lam: LambdaModule, on_redis: str, lambda_env: pytest.MonkeyPatch, keys: RedisKeys
) -> None:
    lambda_env.setenv("RATE_LIMIT_PER_MINUTE", "1")
    caller, other, forged, forged_again = (unique_address() for _ in range(4))
    keys.addresses += [caller, other, forged, forged_again]

    first = invoke(lam, chat_event(caller, forwarded_for=forged))
    second = invoke(lam, chat_event(caller, forwarded_for=forged_again))  # a new X-Forwarded-For, the same caller
    elsewhere = invoke(lam, chat_event(other))

    assert first.status == 200, first.body
    assert first.body["reviewer"] == "rules"
    assert second.status == 429, second.body
    assert second.body["error"]["type"] == "rate_limit_exceeded"
    assert second.body["error"]["retry_after"] >= 1
    assert second.headers["retry-after"] == str(second.body["error"]["retry_after"])
    assert elsewhere.status == 200, elsewhere.body
    windows = [key.decode() for key in keys.client.scan_iter(match="LIMITS:review/ip:*")]
    assert any(f"ip:{caller}/" in window for window in windows)
    assert not any(f"ip:{forged}/" in window or f"ip:{forged_again}/" in window for window in windows)


def own_tcp_peers(port: int) -> set[str]:
    """`ip:port` of this process's TCP connections to `port` (from /proc: Linux only)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/self/net/tcp", socket.AF_INET), ("/proc/self/net/tcp6", socket.AF_INET6)):
        if not os.path.exists(table):
            continue
        with open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode not in inodes or int(remote.split(":")[1], 16) != port:
                    continue
                address, local_port = local.split(":")
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word of the address in host (little-endian) byte order.
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                host = socket.inet_ntop(family, packed)
                host = host.removeprefix("::ffff:") if family == socket.AF_INET6 else host
                found.add(f"{host}:{int(local_port, 16)}")
    return found


@pytest.mark.redis
@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="finds its own connections in /proc (Linux)")
def test_connections_dropped_while_the_container_was_frozen_are_opened_again(lam: LambdaModule, on_redis: str) -> None:
    assert invoke(lam, api_event("GET", "/readyz")).status == 200
    admin = redis.Redis.from_url(on_redis)
    try:
        mine = own_tcp_peers(admin.connection_pool.connection_kwargs.get("port", 6379))
        own_id = admin.client_id()
        clients = cast("list[dict[str, str]]", admin.client_list())
        ours = [c for c in clients if c["addr"] in mine and int(c["id"]) != own_id]
        if not ours:
            pytest.skip("Redis does not see this process's addresses (NAT): cannot drop its connections")
        for client in ours:  # what Redis (a failover, an idle timeout) does to a frozen container's sockets
            admin.client_kill_filter(_id=client["id"])
    finally:
        admin.close()

    ready = invoke(lam, api_event("GET", "/readyz"))

    assert ready.status == 200, ready.body
    assert ready.body["checks"]["queue"] == ready.body["checks"]["rate_limit_storage"] == "ok"


def test_the_zip_installs_the_web_tier_without_crewai(zip_requirements: dict[str, str]) -> None:
    assert [name for name in CREWAI_ONLY if name in zip_requirements] == []
    assert [name for name in WEB_TIER if name not in zip_requirements] == []
    assert "uvicorn" not in zip_requirements  # API Gateway and Mangum are the server


PROBE = """
import importlib.abc, importlib.util, json, re, sys
from importlib.metadata import packages_distributions

class Context:
    function_name = "ai-dev-companion-web"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:ai-dev-companion-web"
    memory_limit_in_mb = 512
    aws_request_id = "probe"
    log_group_name = "/aws/lambda/ai-dev-companion-web"
    log_stream_name = "probe"
    identity = None
    client_context = None

    def get_remaining_time_in_millis(self):
        return 30_000

def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()

owners = {module: {normalized(dist) for dist in dists} for module, dists in packages_distributions().items()}
in_zip = set(json.loads(sys.argv[2]))
refused = set()

class ZipOnly(importlib.abc.MetaPathFinder):
    # What this venv has beyond the zip (CrewAI's dependencies) cannot be imported: as on Lambda.
    def find_spec(self, name, path, target=None):
        dists = owners.get(name) if path is None else None
        if dists and not dists & in_zip:
            refused.add(name)
            raise ModuleNotFoundError(f"No module named {name!r} (not in the Lambda zip)", name=name)
        return None

def crewai():
    return sorted(name for name in sys.modules if name == "crewai" or name.startswith(("crewai.", "crewai_")))

before = set(sys.modules)
sys.meta_path.insert(0, ZipOnly())
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(spec)
sys.modules["handler"] = handler
spec.loader.exec_module(handler)
after_import = crewai()
statuses = [handler.handler(event, Context())["statusCode"] for event in json.load(sys.stdin)]
handler.shutdown()
top = {name.partition(".")[0] for name in set(sys.modules) - before} - set(sys.stdlib_module_names)
outside = sorted(name for name in top if owners.get(name) and not owners[name] & in_zip)
answer = {"statuses": statuses, "after_import": after_import, "crewai": crewai(), "outside": outside}
print(json.dumps({**answer, "refused": sorted(refused)}))
"""


@pytest.mark.redis
def test_the_web_tier_on_lambda_never_imports_crewai_and_needs_only_the_zips_packages(
    redis_url: str, keys: RedisKeys, tmp_path: Path, zip_requirements: dict[str, str]
) -> None:
    # In a fresh interpreter: in the test process, other tests import CrewAI, and sys.modules is shared.
    head = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    delivery = str(uuid.uuid4())
    caller = unique_address()
    keys.jobs.append(f"Codertocat/Hello-World#2@{head}")
    keys.deliveries.append(delivery)
    keys.addresses.append(caller)
    events = [
        api_event("GET", "/healthz"),
        api_event("GET", "/readyz"),
        delivery_event(pull_request_opened(head), delivery),
        chat_event(caller),
    ]
    env = {name: value for name, value in os.environ.items() if name.lower() not in Settings.model_fields}
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(tmp_path),  # should CrewAI be imported after all, its files stay here
        QUEUE_URL=redis_url,
        RATE_LIMIT_STORAGE_URI=redis_url,
        GITHUB_WEBHOOK_SECRET=SECRET,
        CHAT_TIMEOUT_SECONDS="20",
        OPENAI_API_KEY="sk-lambda-probe-Qm7Zr1",  # an LLM is configured: the web tier still has no use for it
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",  # never called
        LOG_LEVEL="WARNING",
    )
    env.pop("API_GATEWAY_BASE_PATH", None)

    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(HANDLER), json.dumps([*zip_requirements, "ai-dev-companion"])],
        input=json.dumps(events),
        env=env,
        cwd=tmp_path,  # no .env of the project's
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert probe.returncode == 0, probe.stderr
    answer = json.loads(probe.stdout.strip().splitlines()[-1])
    assert answer["after_import"] == []
    assert answer["crewai"] == []
    # With only the zip's packages importable (CrewAI's own are refused, as on Lambda), every route answers.
    assert answer["statuses"] == [200, 200, 202, 200], (answer["refused"], probe.stderr)
    assert answer["outside"] == []
