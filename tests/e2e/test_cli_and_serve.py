"""The CLI and the server as real processes: what an operator runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import clean_environ, run_cli, serve

pytestmark = pytest.mark.slow

SECRET = "whsec-e2e-secret-value-1234"
KEY = "ide-key-abcdef-12345"


def test_help_on_each_command(tmp_path: Path) -> None:
    env = clean_environ()
    for args in (["--help"], ["serve", "--help"], ["check-config", "--help"]):
        result = run_cli(*args, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "usage: python -m bot" in result.stdout
    assert "--port" in run_cli("serve", "--help", env=env, cwd=tmp_path).stdout


def test_check_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    env = clean_environ(GITHUB_WEBHOOK_SECRET=SECRET, API_KEYS=KEY, MODEL="gpt-4.1-mini")
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert KEY not in result.stdout + result.stderr
    assert "GITHUB_WEBHOOK_SECRET" in result.stdout
    assert "**********" in result.stdout
    assert "gpt-4.1-mini" in result.stdout
    assert "OPENAI_API_KEY is not set: reviews are rules only" in result.stdout
    assert result.stdout.rstrip().endswith("configuration OK")


def test_check_config_reads_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MODEL=from-dotenv\n")
    result = run_cli("check-config", env=clean_environ(), cwd=tmp_path)
    assert "from-dotenv" in result.stdout


def test_check_config_exits_non_zero_on_a_bad_value(tmp_path: Path) -> None:
    result = run_cli("check-config", env=clean_environ(RATE_LIMIT_PER_MINUTE="-1"), cwd=tmp_path)
    assert result.returncode == 2
    assert "RATE_LIMIT_PER_MINUTE" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_to_start_on_a_bad_value(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "1", env=clean_environ(LOG_FORMAT="xml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "LOG_FORMAT" in result.stderr


def test_serve_answers_the_readme_curl_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = clean_environ(LOG_FORMAT="json", GITHUB_WEBHOOK_SECRET=SECRET)
    with serve(env, tmp_path) as (base, process):
        welcome = httpx.get(f"{base}/").json()
        assert welcome["name"] == "AI Dev Companion"
        echoed = httpx.post(f"{base}/echo", json={"hello": "android"}, headers={"X-Request-ID": "e2e-1"})
        assert echoed.json() == {"hello": "android"}
        assert echoed.headers["x-request-id"] == "e2e-1"
        assert httpx.get(f"{base}/readyz").status_code == 200
        # Embedded defaults: the SQLite queue lives under ./data of the working directory.
        assert (tmp_path / "data").is_dir()
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        output = process.stdout.read() if process.stdout else ""
    assert "Application shutdown complete" in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(r["request_id"] == "e2e-1" and r["logger"] == "bot.access" for r in records)
    assert SECRET not in output


def test_serve_honours_forwarded_headers_only_from_trusted_proxies(tmp_path: Path) -> None:
    # The peer (127.0.0.1) is trusted by default, so X-Forwarded-For is believed; with another allow list not.
    for allow, expected in (("127.0.0.1", "203.0.113.9"), ("10.9.9.9", "127.0.0.1")):
        env = clean_environ(LOG_FORMAT="json", FORWARDED_ALLOW_IPS=allow)
        with serve(env, tmp_path) as (base, process):
            httpx.get(f"{base}/healthz", headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "fwd"})
            process.terminate()
            process.wait(timeout=15)
            output = process.stdout.read() if process.stdout else ""
        access = [json.loads(line) for line in output.splitlines() if '"bot.access"' in line]
        assert access[-1]["client"] == expected
