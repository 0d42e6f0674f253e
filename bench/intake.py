"""Webhook intake under load on loopback: the real `python -m bot serve` against a bare Litestar app.

Both servers run, one after the other, as subprocesses on the same uvicorn settings as `cmd_serve` (uvloop and
httptools when installed, no proxy headers, no access log, no server header). This process is the load
generator (an asyncio client on raw streams, uvloop when installed), so it never shares the GIL with a server.

  intake  `python -m bot serve`: embedded SQLite queue in a temp dir, REVIEWER=rules, LOG_LEVEL=WARNING, a random
          GITHUB_WEBHOOK_SECRET, MAX_CONCURRENT_JOBS=100000, no GitHub App id. Each delivery is a signed
          `pull_request` `opened` (tests/fixtures/webhooks/pull_request.opened.json, 28 kB) with its own delivery
          id, PR number and head SHA: signature check, routing, dedupe and enqueue, each a new job (202).
          The embedded worker (WORKER_CONCURRENCY=1) takes the jobs meanwhile, in the same process: each one
          fails at once on GitHubNotConfigured (no App id or key), without any network call. That is its CPU
          cost during the run; the job states at the end are printed.
  bare    a Litestar app with one `@post(WEBHOOK_PATH, status_code=202)` handler that reads the body and returns
          {"ok": true}, sent the very same requests.

Per server: a warm-up, then (1) a fixed rate of 200 deliveries/s for --seconds, open loop (each request is
sent at its scheduled time on an idle keep-alive connection, a new one if none is idle; latency counts from the
scheduled time, so a late client or server shows), then (2) the maximum: --connections keep-alive connections
sending back to back for --seconds. The fixed rate runs first so that its jobs are not behind the backlog
that the maximum leaves for the worker. Bodies of the fixed rate are made and signed before it starts; those of
the maximum when sent (their cost in the client is printed). wrk is not used even when installed: each
delivery needs its own body and HMAC, which a wrk Lua script cannot compute.

Targets: intake requests/s >= 80% of the bare app's (both measured in this run), intake p99 <= 20 ms at 200/s.
Every answer must be 202: anything else (or a broken connection) is an error. The run is bounded by --timeout;
it exits non-zero only on errors, not on a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from bot.api.webhooks import WEBHOOK_PATH, signature
from tests.e2e.conftest import ROOT, clean_environ, free_port

TARGET_RATIO = 0.8  # intake requests/s / bare app requests/s
TARGET_P99_MS = 20.0  # intake p99 at RATE deliveries/s
RATE = 200.0
WARMUP = 300  # requests per server before measuring
FIXTURE = ROOT / "tests" / "fixtures" / "webhooks" / "pull_request.opened.json"
NUMBER_MARK = 987654321  # 9 digits: each delivery's PR number is 100000000 + i, the same length
SHA_MARK = "5eed" * 10
STARTUP = 30.0  # seconds for a server to listen

BARE_APP = f'''
import sys

import uvicorn
from litestar import Litestar, Request, post


@post("{WEBHOOK_PATH}", status_code=202)
async def receive(request: Request) -> dict[str, bool]:
    await request.body()
    return {{"ok": True}}


app = Litestar(route_handlers=[receive], logging_config=None, debug=False)
uvicorn.run(
    app,
    host="127.0.0.1",
    port=int(sys.argv[1]),
    proxy_headers=False,
    log_config=None,
    access_log=False,
    server_header=False,
    timeout_graceful_shutdown=30,
)
'''


class Deliveries:
    """Signed `pull_request` `opened` requests, each with its own delivery id, PR number and head SHA."""

    def __init__(self, secret: bytes, prefix: str) -> None:
        payload = json.loads(FIXTURE.read_text(encoding="utf-8"))
        payload["number"] = payload["pull_request"]["number"] = NUMBER_MARK
        payload["pull_request"]["head"]["sha"] = SHA_MARK
        self.template = json.dumps(payload).encode()
        if self.template.count(str(NUMBER_MARK).encode()) != 2 or self.template.count(SHA_MARK.encode()) != 1:
            raise SystemExit(f"{FIXTURE}: the markers are not unique")
        # The template cut at its markers: [text, marker, text, marker, ...], the markers at odd places.
        self.pieces: list[bytes] = []
        for piece in self.template.split(str(NUMBER_MARK).encode()):
            for part in piece.split(SHA_MARK.encode()):
                self.pieces += [part, SHA_MARK.encode()]
            self.pieces[-1] = str(NUMBER_MARK).encode()
        self.pieces.pop()
        self.secret, self.prefix, self.count = secret, prefix, 0

    def next(self, host: str) -> bytes:
        self.count += 1
        i = self.count
        number, sha = str(100_000_000 + i).encode(), f"{i:040x}".encode()
        pieces = list(self.pieces)
        for at in range(1, len(pieces), 2):
            pieces[at] = number if pieces[at] == str(NUMBER_MARK).encode() else sha
        body = b"".join(pieces)
        head = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nX-GitHub-Event: pull_request\r\n"
            f"X-GitHub-Delivery: {self.prefix}-{i}\r\nX-Hub-Signature-256: {signature(self.secret, body)}\r\n\r\n"
        )
        return head.encode() + body


class Connection:
    """One HTTP/1.1 keep-alive connection: a request out, the status and body in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError(f"answer without Content-Length: {head[:200]!r}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, of 202 answers
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    def record(self, status: int, body: bytes, latency: float) -> None:
        if status == 202:
            self.latencies.append(latency)
        else:
            self.errors[f"HTTP {status}: {body[:160].decode('utf-8', 'replace')}"] += 1

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: int) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


async def closed_loop(port: int, make: Callable[[], bytes], connections: int, seconds: float, limit: int) -> Result:
    """`connections` connections, each sending back to back until `seconds` or `limit` requests in all."""
    result = Result()
    sent = 0
    loop = asyncio.get_running_loop()

    async def run() -> None:
        nonlocal sent
        conn = await Connection.open(port)
        try:
            while loop.time() < deadline and sent < limit:
                sent += 1
                request = make()
                began = time.perf_counter()
                try:
                    status, body = await conn.send(request)
                except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                    result.errors[f"{type(exc).__name__}: {exc}"] += 1
                    conn.close()
                    conn = await Connection.open(port)
                    continue
                result.record(status, body, time.perf_counter() - began)
        finally:
            conn.close()

    started, deadline = time.perf_counter(), loop.time() + seconds
    await asyncio.gather(*(run() for _ in range(connections)))
    result.elapsed = time.perf_counter() - started
    return result


async def open_loop(port: int, requests: list[bytes], rate: float) -> Result:
    """Send requests[i] at start + i / rate on an idle connection (a new one if none is idle)."""
    result = Result()
    idle = [await Connection.open(port) for _ in range(8)]
    opened = list(idle)

    async def one(request: bytes, at: float) -> None:
        if idle:
            conn = idle.pop()
        else:
            conn = await Connection.open(port)
            opened.append(conn)
        try:
            status, body = await conn.send(request)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            result.errors[f"{type(exc).__name__}: {exc}"] += 1
            conn.close()
            return
        result.record(status, body, time.perf_counter() - at)
        idle.append(conn)

    start = time.perf_counter() + 0.05
    tasks = []
    for i, request in enumerate(requests):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request, at)))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    for conn in opened:
        conn.close()
    return result


@dataclass(slots=True)
class Measured:
    fixed: Result
    maximum: Result


def tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


async def wait_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while True:
        if process.returncode is not None:
            raise SystemExit(f"the server exited early ({process.returncode}):\n{tail(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not listen within {STARTUP:.0f} s:\n{tail(log)}") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def measure(
    name: str, argv: list[str], *, env: dict[str, str], cwd: Path, deliveries: Deliveries, args: argparse.Namespace
) -> Measured:
    """Start the server (`argv` + its port), warm it up, then the fixed rate and the maximum; stop it."""
    port = free_port()
    log = cwd / f"{name}.log"
    with open_log(log) as out:
        process = await asyncio.create_subprocess_exec(
            *argv, str(port), env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await wait_listening(port, process, log)
        host = f"127.0.0.1:{port}"
        warm = await closed_loop(port, lambda: deliveries.next(host), args.connections, 30.0, WARMUP)
        if warm.errors:
            raise SystemExit(f"{name}: warm-up failed: {dict(warm.errors)}\n{tail(log)}")
        fixed = await open_loop(port, [deliveries.next(host) for _ in range(int(RATE * args.seconds))], RATE)
        maximum = await closed_loop(
            port, lambda: deliveries.next(host), args.connections, args.seconds, args.max_requests
        )
        if process.returncode is not None:
            raise SystemExit(f"{name}: the server exited ({process.returncode}):\n{tail(log)}")
        return Measured(fixed, maximum)
    finally:
        await stop(process)


def open_log(log: Path) -> BinaryIO:
    return log.open("wb")


def job_states(database: Path) -> str:
    try:
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT status, count(*) FROM saq_jobs GROUP BY status ORDER BY status").fetchall()
    except sqlite3.Error as exc:
        return f"unreadable ({exc})"
    return ", ".join(f"{status} {count}" for status, count in rows) or "none"


def client_cost(deliveries: Deliveries) -> float:
    """Microseconds to make and sign one delivery in this process (the maximum's bodies are made when sent)."""
    started, count = time.perf_counter(), 1000
    for _ in range(count):
        deliveries.next("127.0.0.1:1")
    return (time.perf_counter() - started) / count * 1e6


async def run(args: argparse.Namespace, tmp: Path) -> int:
    secret = secrets.token_hex(16)
    run_id = secrets.token_hex(4)
    sandbox = {name: tmp / name.lower() for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "TMPDIR")}
    for path in sandbox.values():
        path.mkdir()
    env = clean_environ(**{name: str(path) for name, path in sandbox.items()})
    env.pop("REDIS_URL", None)
    serve_env = {
        **env,
        "QUEUE_URL": f"sqlite:///{tmp}/jobs.sqlite3",
        "GITHUB_WEBHOOK_SECRET": secret,
        "REVIEWER": "rules",
        "MAX_CONCURRENT_JOBS": "100000",
        "WORKER_CONCURRENCY": "1",
        "LOG_LEVEL": "WARNING",
    }
    bare_module = tmp / "bare_app.py"
    bare_module.write_text(BARE_APP, encoding="utf-8")

    cost = client_cost(Deliveries(secret.encode(), f"bench-{run_id}-cost"))
    bare = await measure(
        "bare",
        [sys.executable, str(bare_module)],
        env=env,
        cwd=tmp,
        deliveries=Deliveries(secret.encode(), f"bench-{run_id}-bare"),
        args=args,
    )
    intake = await measure(
        "intake",
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port"],
        env=serve_env,
        cwd=tmp,
        deliveries=Deliveries(secret.encode(), f"bench-{run_id}-intake"),
        args=args,
    )

    def ms(value: float) -> str:
        return f"{value:.1f} ms"

    ratio = intake.maximum.rate / bare.maximum.rate if bare.maximum.rate else 0.0
    p99 = intake.fixed.percentile(99)
    rows = [
        (f"bare: max requests/s ({args.connections} connections)", f"{bare.maximum.rate:,.0f}/s", "(reference)", ""),
        (
            f"intake: max requests/s ({args.connections} connections)",
            f"{intake.maximum.rate:,.0f}/s",
            "(reference)",
            "",
        ),
        (
            "intake / bare requests/s",
            f"{ratio:.0%}",
            f">= {TARGET_RATIO:.0%}",
            "OK" if ratio >= TARGET_RATIO else "MISS",
        ),
        (
            "bare: max p50 / p99",
            f"{ms(bare.maximum.percentile(50))} / {ms(bare.maximum.percentile(99))}",
            "(reference)",
            "",
        ),
        (
            "intake: max p50 / p99",
            f"{ms(intake.maximum.percentile(50))} / {ms(intake.maximum.percentile(99))}",
            "(reference)",
            "",
        ),
        (
            f"bare: {RATE:.0f}/s p50 / p99",
            f"{ms(bare.fixed.percentile(50))} / {ms(bare.fixed.percentile(99))}",
            "(reference)",
            "",
        ),
        (f"intake: {RATE:.0f}/s p50", ms(intake.fixed.percentile(50)), "(reference)", ""),
        (
            f"intake: {RATE:.0f}/s p99",
            ms(p99),
            f"<= {TARGET_P99_MS:.0f} ms",
            "OK" if p99 <= TARGET_P99_MS else "MISS",
        ),
    ]
    print(
        f"webhook intake on loopback, {os.cpu_count()} cores; bodies {len(Deliveries(b'', '').template):,} bytes; "
        f"client: {cost:.0f} us to make and sign one delivery; wrk: "
        f"{'installed, not used' if shutil.which('wrk') else 'not installed'} (one HMAC per delivery)"
    )
    for label, measured in (("bare", bare), ("intake", intake)):
        print(
            f"{label}: {RATE:.0f}/s for {args.seconds:g} s: {len(measured.fixed.latencies)} answers in "
            f"{measured.fixed.elapsed:.2f} s; max: {len(measured.maximum.latencies)} answers in "
            f"{measured.maximum.elapsed:.2f} s"
        )
    states = job_states(tmp / "jobs.sqlite3")
    print(f"intake jobs at the end (the embedded worker fails each at once: no App id): {states}")
    width = max(len(row[0]) for row in rows)
    for label, value, target, status in rows:
        print(f"{label.ljust(width)}  {value:>22}  {target:>12}  {status}")
    errors = 0
    for label, measured in (("bare", bare), ("intake", intake)):
        for phase, result in (("fixed rate", measured.fixed), ("max", measured.maximum)):
            for error, count in result.errors.most_common():
                errors += count
                print(f"ERROR {label} {phase}: {count} x {error}")
    if errors:
        print(f"intake log (tail):\n{tail(tmp / 'intake.log')}")
    return 1 if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    parser.add_argument("--connections", type=int, default=8, help="connections at maximum throughput (default 8)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap of the maximum phase (default 100000)")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of the whole run in seconds (default 120)")
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415 - as uvicorn's loop="auto": when installed

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        try:
            code = asyncio.run(asyncio.wait_for(run(args, Path(tmp)), args.timeout))
        except TimeoutError:
            print(f"ERROR: the run took longer than --timeout {args.timeout:g} s")
            code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
