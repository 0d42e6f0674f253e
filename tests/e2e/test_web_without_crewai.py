"""The web process never imports CrewAI (about 1 GB installed, ~3 s and ~2,400 modules to import): the app is
built with an LLM configured and answers a fast /chat, and `crewai` is still absent from sys.modules.

It runs in a fresh interpreter: in the test process other tests import CrewAI, and sys.modules is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import ROOT, clean_environ, free_port

pytestmark = pytest.mark.slow

SOURCE = FIXTURES / "kotlin" / "smells" / "not_null_assertion__android__compose-samples__PlayerViewModel.kt"

PROBE = """
import json, sys
from pathlib import Path

from litestar.testing import TestClient

from bot.app import create_app
from bot.settings import Settings

settings = Settings()
assert settings.llm_configured, "the probe needs an LLM configured"
app = create_app(settings)
with TestClient(app=app, timeout=30) as client:
    response = client.post("/chat?fast=true", json={"source_code": Path(sys.argv[1]).read_text(encoding="utf-8")})
loaded = sorted(name for name in sys.modules if name == "crewai" or name.startswith(("crewai.", "crewai_")))
print(json.dumps({"status": response.status_code, "reviewer": response.json().get("reviewer"), "crewai": loaded}))
"""


def test_the_web_process_does_not_import_crewai(tmp_path: Path) -> None:
    env = clean_environ(
        PYTHONPATH=str(ROOT),
        HOME=str(tmp_path),  # should CrewAI be imported after all, its files stay here
        QUEUE_URL=f"sqlite:///{tmp_path}/jobs.sqlite3",
        OPENAI_API_KEY="sk-web-probe-Yt5Wq2",
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",  # never called: nothing listens there
        MODEL="gpt-4o-mini",
        REVIEWER="auto",
    )

    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(SOURCE)],
        env=env,
        cwd=tmp_path,  # no .env from the project
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert probe.returncode == 0, probe.stderr
    answer = json.loads(probe.stdout.strip().splitlines()[-1])
    assert (answer["status"], answer["reviewer"]) == (200, "rules")
    assert answer["crewai"] == []
