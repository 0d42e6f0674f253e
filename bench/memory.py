"""Memory: resident memory (RSS) of an idle web process and of a worker, as an operator runs them.

web     `python -m bot serve` (embedded SQLite queue in a temp dir, LLM configured as in production, its
        address one where nothing listens), warmed up with a few requests (/healthz, /readyz, /chat?fast=true
        with a small Kotlin snippet, signed `ping` webhooks), then 2 s idle: VmRSS and VmHWM (the peak) from
        /proc/<pid>/status. Target: RSS < 150 MB, CrewAI not loaded. CrewAI not loaded is checked twice: in
        the served process (CrewAI writes its files in HOME at import: none there, no CrewAI log line) and in a
        fresh interpreter that builds the app with an LLM configured, answers a fast /chat and prints whether
        `crewai` is in sys.modules (as tests/e2e/test_web_without_crewai.py does).
worker  `python -m bot worker` (QUEUE_URL: Redis if REDIS_URL is set and answers, else a SQLite file), LLM
        configured so it imports CrewAI and warms its LLM clients at start (nothing is called until a job
        arrives), sampled 3 s after SAQ's "Worker starting" line; and the rules-only worker (REVIEWER=rules)
        for comparison. Reference figures: the issue sets no target.

Each process runs with HOME, XDG_DATA_HOME, XDG_CONFIG_HOME, TMPDIR and CREWAI_STORAGE_DIR in a temp dir and
without REDIS_URL (CrewAI puts its locks in Redis if it is set). The run is bounded by --timeout; processes get
SIGTERM then SIGKILL, temp dirs are removed. Exit 1 when a process fails to start or the web loaded CrewAI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

from bot.api.webhooks import SIGNATURE_HEADER, WEBHOOK_PATH, signature
from tests.e2e.conftest import ROOT, clean_environ, free_port

TARGET_WEB_RSS_MB = 150.0
WEB_IDLE_SECONDS = 2.0
WORKER_IDLE_SECONDS = 3.0
WORKER_START_SECONDS = 60.0
WEB_START_SECONDS = 30.0
STOP_SECONDS = 15.0
SECRET = "whsec-bench-memory"  # noqa: S105 - the served process's own, for signed pings
NO_LLM = "http://127.0.0.1:9/v1"  # nothing listens: the LLM is configured but never called
WORKER_STARTED = "Worker starting"  # SAQ's line once the queue is open and jobs can run
NO_PROXY = "127.0.0.1,localhost"

KOTLIN = """\
class PlayerViewModel(private val repository: Repository) : ViewModel() {
    private var player: Player? = null

    fun play(id: String) {
        val track = repository.find(id)!!
        player!!.play(track)
        GlobalScope.launch { repository.markPlayed(id) }
    }
}
"""

PROBE = """
import json, sys
from litestar.testing import TestClient
from bot.app import create_app
from bot.settings import Settings

settings = Settings()
assert settings.llm_configured, "the probe needs an LLM configured"
with TestClient(app=create_app(settings), timeout=30) as client:
    status = client.post("/chat?fast=true", json={"source_code": sys.argv[1]}).status_code
loaded = sorted(name for name in sys.modules if name == "crewai" or name.startswith(("crewai.", "crewai_")))
print(json.dumps({"status": status, "crewai": loaded}))
"""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = max(0.0, self.end - time.monotonic())
        return left if cap is None else min(left, cap)

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"--timeout reached while {what}")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (MiB, as /proc reports kB)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def sandbox(base: Path, name: str, **values: str) -> tuple[Path, dict[str, str]]:
    """A directory for one process and its environment: no project settings but `values`, CrewAI's files in
    the directory, no REDIS_URL, no proxies (everything stays on 127.0.0.1)."""
    home = base / name
    dirs = {var: home / var.lower() for var in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "TMPDIR")}
    for path in dirs.values():
        path.mkdir(parents=True)
    env = clean_environ(
        CREWAI_STORAGE_DIR="bench-memory",
        PYTHONPATH=str(ROOT),
        **{var: str(path) for var, path in dirs.items()},
        **values,
    )
    for var in ("REDIS_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(var, None)
        env.pop(var.lower(), None)
    env.update(NO_PROXY=NO_PROXY, no_proxy=NO_PROXY)
    return home, env


def start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # a file, not a pipe nobody reads
        return subprocess.Popen([sys.executable, "-m", "bot", *args], env=env, cwd=cwd, stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def crewai_files(home: Path) -> list[str]:
    """What CrewAI left in a process's HOME and XDG dirs (it writes its settings and a key at import)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "crewai" in p.name.lower())


def redis_queue() -> str | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except (OSError, redis.RedisError):  # no Redis here
        return None
    return url


def measure_web(base: Path, deadline: Deadline) -> dict[str, object]:
    home, env = sandbox(
        base,
        "web",
        QUEUE_URL=f"sqlite:///{base}/web.sqlite3",
        GITHUB_WEBHOOK_SECRET=SECRET,
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=NO_LLM,
    )
    log = base / "web.log"
    port = free_port()
    process = start(["serve", "--host", "127.0.0.1", "--port", str(port)], env, home, log)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            ready_by = time.monotonic() + deadline.left(WEB_START_SECONDS)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"serve exited early ({process.returncode}):\n{tail(log)}")
                try:
                    if client.get("/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > ready_by:
                    raise TimeoutError(f"serve was not ready in time:\n{tail(log)}")
                time.sleep(0.1)
            started = memory_mb(process.pid)[0]
            answers = []
            for index in range(5):
                answers.append(client.get("/healthz").status_code)
                answers.append(client.get("/readyz").status_code)
                answers.append(client.post("/chat?fast=true", json={"source_code": KOTLIN}).status_code)
                body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": index}).encode()
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "ping",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    SIGNATURE_HEADER: signature(SECRET.encode(), body),
                }
                answers.append(client.post(WEBHOOK_PATH, content=body, headers=headers).status_code)
            if set(answers) != {200}:
                raise RuntimeError(f"unexpected answers {sorted(set(answers))}:\n{tail(log)}")
        deadline.check("warming the web process")
        time.sleep(WEB_IDLE_SECONDS)
        rss, peak = memory_mb(process.pid)
        logged = "crewai" in log.read_text(encoding="utf-8", errors="replace").lower()
        return {"start": started, "rss": rss, "peak": peak, "files": crewai_files(home), "logged": logged}
    finally:
        stop(process)


def probe_web(base: Path, deadline: Deadline) -> list[str]:
    home, env = sandbox(
        base,
        "probe",
        QUEUE_URL=f"sqlite:///{base}/probe.sqlite3",
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=NO_LLM,
        REVIEWER="auto",
    )
    try:
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, KOTLIN],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline.left(60)),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError("the probe did not finish in time (--timeout)") from None
    if probe.returncode != 0:
        raise RuntimeError(f"the probe failed:\n{probe.stderr[-3000:]}")
    answer = json.loads(probe.stdout.strip().splitlines()[-1])
    if answer["status"] != 200:
        raise RuntimeError(f"the probe's /chat answered {answer['status']}")
    loaded: list[str] = answer["crewai"]
    return loaded


def measure_worker(base: Path, name: str, queue: str, deadline: Deadline, **values: str) -> dict[str, object]:
    home, env = sandbox(
        base,
        name,
        QUEUE_URL=queue,
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=NO_LLM,
        WORKER_METRICS_PORT="0",
        **values,
    )
    log = base / f"{name}.log"
    began = time.monotonic()
    process = start(["worker"], env, home, log)
    try:
        started_by = time.monotonic() + deadline.left(WORKER_START_SECONDS)
        while WORKER_STARTED not in log.read_text(encoding="utf-8", errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited early ({process.returncode}):\n{tail(log)}")
            if time.monotonic() > started_by:
                raise TimeoutError(f"worker {name} did not start in time:\n{tail(log)}")
            time.sleep(0.1)
        start_seconds = time.monotonic() - began
        deadline.check(f"starting worker {name}")
        time.sleep(WORKER_IDLE_SECONDS)
        rss, peak = memory_mb(process.pid)
        logged = "crewai" in log.read_text(encoding="utf-8", errors="replace").lower()
        return {"start_s": start_seconds, "rss": rss, "peak": peak, "crewai": bool(crewai_files(home)) or logged}
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on the whole run, in seconds")
    args = parser.parse_args()
    deadline = Deadline(args.timeout)
    base = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        web = measure_web(base, deadline)
        probe = probe_web(base, deadline)
        redis = redis_queue()
        queue_note = "Redis" if redis else "SQLite"
        llm = measure_worker(base, "worker-llm", redis or f"sqlite:///{base}/worker-llm.sqlite3", deadline)
        rules_queue = redis or f"sqlite:///{base}/worker-rules.sqlite3"
        rules = measure_worker(base, "worker-rules", rules_queue, deadline, REVIEWER="rules")
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        print(f"bench/memory.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)

    web_ok = float(web["rss"]) < TARGET_WEB_RSS_MB  # type: ignore[arg-type]
    served_crewai = bool(web["files"]) or bool(web["logged"])
    failed = served_crewai or bool(probe)
    rows = [
        ("web (serve) RSS after start, before requests", f"{web['start']:.0f} MB", "(reference)", ""),
        ("web (serve) RSS idle after warm-up", f"{web['rss']:.0f} MB", f"< {TARGET_WEB_RSS_MB:.0f} MB",
         "OK" if web_ok else "MISS"),
        ("web (serve) peak RSS (VmHWM)", f"{web['peak']:.0f} MB", "(reference)", ""),
        ("web (serve): CrewAI files / log line", "none" if not served_crewai else "FOUND", "none",
         "MISS" if served_crewai else "OK"),
        ("web app probe: crewai in sys.modules", ", ".join(probe) or "no", "no", "MISS" if probe else "OK"),
        (f"worker, LLM configured ({queue_note}): RSS idle", f"{llm['rss']:.0f} MB", "(reference)",
         "" if llm["crewai"] else "CrewAI NOT loaded?"),
        ("worker, LLM configured: peak RSS (VmHWM)", f"{llm['peak']:.0f} MB", "(reference)", ""),
        ("worker, LLM configured: start to 'Worker starting'", f"{llm['start_s']:.1f} s", "(reference)", ""),
        (f"worker, REVIEWER=rules ({queue_note}): RSS idle", f"{rules['rss']:.0f} MB", "(reference)",
         "CrewAI loaded?" if rules["crewai"] else ""),
        ("worker, REVIEWER=rules: peak RSS (VmHWM)", f"{rules['peak']:.0f} MB", "(reference)", ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    print(f"{'figure'.ljust(width)}  {'value':>9}  {'target':<12}  status")
    for figure, value, target, status in rows:
        print(f"{figure.ljust(width)}  {value:>9}  {target:<12}  {status}".rstrip())
    print(f"(MB = MiB from /proc/<pid>/status; web idle {WEB_IDLE_SECONDS:g} s, workers {WORKER_IDLE_SECONDS:g} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
