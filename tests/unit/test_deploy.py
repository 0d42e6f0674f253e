"""The deployment forms stay consistent with the code: settings, ports, user, probes, drain, pinned actions.

Covers deploy/docker-compose.yml, deploy/kubernetes/*.yaml and .github/workflows/*.yml (deploy/lambda/ has
its own owner and tests). Parsed with PyYAML only: no Docker, no cluster, no GitHub.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.jobs.queue import JobPolicy
from bot.settings import SECRET_FIELDS, Settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
WORKFLOWS = ROOT / ".github" / "workflows"

SETTINGS = frozenset(name.upper() for name in Settings.model_fields)

# Environment set in containers that is not a setting, and why.
CONTAINER_ENV = {
    # CrewAI writes its settings, a credentials key and a kickoff database under HOME / XDG_* when the worker
    # starts; Kubernetes points them at an emptyDir because the root filesystem is read-only.
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
}
# Environment of CI / deploy steps that is not a setting, and why.
WORKFLOW_ENV = {
    "REDIS_URL",  # the tests' Redis (.ci/run, tests/conftest.py), not the app's QUEUE_URL
    "FUNCTION_NAME",  # the stage Lambda's name, for the aws CLI
    "STAGE_URL",  # the stage API's base URL, for the smoke test
}
# deploy-stage.yml turns step variables LAMBDA_ENV_<SETTING> into the Lambda's SETTING.
LAMBDA_ENV_PREFIX = "LAMBDA_ENV_"
# The Lambda adapter's own variables (deploy/lambda/handler.py reads them besides the settings).
LAMBDA_ADAPTER_ENV = {"API_GATEWAY_BASE_PATH"}

SECRET_NAME = "ai-dev-companion-secrets"
CONFIG_NAME = "ai-dev-companion-config"
WORKER_COMMAND = ["python", "-m", "bot", "worker"]
UVICORN_GRACEFUL_SHUTDOWN = 30  # bot/__main__.py: uvicorn.run(timeout_graceful_shutdown=30)
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def kube_docs() -> list[dict[str, Any]]:
    """The Kubernetes objects (kustomization.yaml is kustomize's own file, not one of them)."""
    paths = [path for path in sorted(KUBE.glob("*.yaml")) if path.name != "kustomization.yaml"]
    return [doc for path in paths for doc in load_all(path)]


def kube(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in kube_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def workflows() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(WORKFLOWS.glob("*.yml"))}


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    value: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]
    return value


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return spec


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = containers(deployment)
    return container


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command(value: str | list[str]) -> list[str]:
    return value.split() if isinstance(value, str) else list(value)


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def exposed_port() -> int:
    [port] = re.findall(r"^EXPOSE (\d+)$", dockerfile(), flags=re.MULTILINE)
    return int(port)


def image_uid() -> int:
    [uid] = re.findall(r"useradd .*--uid (\d+)", dockerfile())
    return int(uid)


def seconds(duration: str | int) -> float:
    """Compose durations as used here: 45s, 1m30s, or a bare number of seconds."""
    if isinstance(duration, int):
        return duration
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def workflow_env_blocks(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "workflow", workflow.get("env") or {}
    for job_id, job in workflow["jobs"].items():
        yield job_id, job.get("env") or {}
        for step in job.get("steps", []):
            yield f"{job_id}/{step.get('name') or step.get('uses')}", step.get("env") or {}


# --- every file parses --------------------------------------------------------------------------------


def test_every_deploy_and_workflow_yaml_parses() -> None:
    paths = [COMPOSE, *sorted(KUBE.glob("*.yaml")), *sorted(WORKFLOWS.glob("*.yml"))]
    assert len(paths) >= 10
    for path in paths:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(doc, dict) for doc in docs), path


# --- environment names are settings -------------------------------------------------------------------


def test_compose_sets_only_settings() -> None:
    for name, service in compose()["services"].items():
        if name == "redis":
            continue
        unknown = set(compose_env(service)) - SETTINGS
        assert not unknown, f"compose service {name}: not settings: {sorted(unknown)}"


def test_kubernetes_env_configmap_and_secret_keys_are_settings() -> None:
    configmap = kube("ConfigMap", CONFIG_NAME)
    secret = load_all(KUBE / "secret.example.yaml")[0]
    assert not set(configmap["data"]) - SETTINGS, sorted(set(configmap["data"]) - SETTINGS)
    assert not set(secret["stringData"]) - SETTINGS, sorted(set(secret["stringData"]) - SETTINGS)
    for deployment in (kube("Deployment", "ai-dev-companion-web"), kube("Deployment", "ai-dev-companion-worker")):
        names = {item["name"] for c in containers(deployment) for item in c.get("env", [])}
        unknown = names - SETTINGS - CONTAINER_ENV
        assert not unknown, f"{deployment['metadata']['name']}: not settings: {sorted(unknown)}"


def test_workflows_set_only_settings_or_named_ci_variables() -> None:
    for file, workflow in workflows().items():
        for where, env in workflow_env_blocks(workflow):
            for name in env:
                if name.startswith(LAMBDA_ENV_PREFIX):
                    setting = name.removeprefix(LAMBDA_ENV_PREFIX)
                    known = SETTINGS | LAMBDA_ADAPTER_ENV
                    assert setting in known, f"{file} {where}: {name} -> {setting} is not a setting"
                else:
                    assert name in SETTINGS | WORKFLOW_ENV, f"{file} {where}: {name} is neither a setting nor allowed"


def test_lambda_adapter_variables_are_read_by_the_adapter() -> None:
    handler = DEPLOY / "lambda" / "handler.py"
    for name in LAMBDA_ADAPTER_ENV:
        assert name in handler.read_text(encoding="utf-8")


def test_workflow_secret_names_are_ones_github_accepts() -> None:
    # GitHub refuses secret names that start with GITHUB_ (hence WEBHOOK_SECRET for GITHUB_WEBHOOK_SECRET).
    for file in WORKFLOWS.glob("*.yml"):
        names = re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", file.read_text(encoding="utf-8"))
        assert not [n for n in names if n.upper().startswith("GITHUB_")], file.name


def test_lambda_gets_what_the_web_tier_needs_and_no_worker_secret() -> None:
    deploy = workflows()["deploy-stage.yml"]["jobs"]["deploy"]
    step = next(s for s in deploy["steps"] if s.get("name") == "Update the environment")
    settings = {name.removeprefix(LAMBDA_ENV_PREFIX) for name in step["env"]}
    assert {"GITHUB_WEBHOOK_SECRET", "QUEUE_URL", "RATE_LIMIT_STORAGE_URI", "API_KEYS"} <= settings
    assert not settings & {"GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "OPENAI_API_KEY"}
    # API Gateway HTTP APIs cut a request at 30 s: /chat must answer (202) before.
    assert float(step["env"][LAMBDA_ENV_PREFIX + "CHAT_TIMEOUT_SECONDS"]) < 30


def test_env_example_lists_every_setting() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    listed = {line.split("=", 1)[0].strip() for line in lines if "=" in line and not line.lstrip().startswith("#")}
    assert not SETTINGS - listed, f".env.example is missing: {sorted(SETTINGS - listed)}"
    assert not listed - SETTINGS, f".env.example has names that are not settings: {sorted(listed - SETTINGS)}"


# --- compose --------------------------------------------------------------------------------------------


def test_compose_has_redis_web_and_worker_with_health_checks() -> None:
    services = compose()["services"]
    assert {"redis", "web", "worker"} <= set(services)
    assert services["redis"]["image"].startswith("redis:7")
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]
    web_check = " ".join(services["web"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{exposed_port()}/readyz" in web_check
    # The image's HEALTHCHECK probes :8000/healthz, which the worker does not serve: it must be switched off.
    assert services["worker"]["healthcheck"] == {"disable": True}
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["restart"] in ("unless-stopped", "always")
        assert services[name]["build"]["context"] == ".."
        assert services[name]["env_file"] == ["../.env"]
    assert services["redis"]["restart"] in ("unless-stopped", "always")
    assert "ports" not in services["redis"]


def test_compose_web_runs_two_replicas_on_a_port_range() -> None:
    web = compose()["services"]["web"]
    assert command(web["command"]) == ["python", "-m", "bot", "serve", "--host", "0.0.0.0"]  # noqa: S104 - in a container
    assert web["deploy"]["replicas"] == 2
    [published] = web["ports"]
    host, container = str(published).rsplit(":", 1)
    low, high = (int(p) for p in host.split(":")[-1].split("-"))
    assert int(container) == exposed_port()
    assert high - low + 1 >= web["deploy"]["replicas"], "each replica needs its own host port"
    assert seconds(web["stop_grace_period"]) > UVICORN_GRACEFUL_SHUTDOWN


def test_compose_worker_and_web_share_redis() -> None:
    services = compose()["services"]
    assert command(services["worker"]["command"]) == WORKER_COMMAND
    assert seconds(services["worker"]["stop_grace_period"]) > JobPolicy().drain
    for name in ("web", "worker"):
        env = compose_env(services[name])
        assert env["QUEUE_URL"] == "redis://redis:6379/0"
        assert env["RATE_LIMIT_STORAGE_URI"] == "redis://redis:6379/1"


def settings_from(env: dict[str, str]) -> Settings:
    """Settings from these variables only (empty = unset, as in the environment)."""
    values: dict[str, Any] = {name.lower(): value for name, value in env.items() if value != ""}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_compose_and_configmap_values_are_valid_settings(clean_env: None) -> None:
    for name in ("web", "worker"):
        assert settings_from(compose_env(compose()["services"][name])).queue_is_redis
    settings = settings_from(kube("ConfigMap", CONFIG_NAME)["data"])
    assert settings.queue_is_redis
    assert settings.rate_limit_storage_uri.startswith("redis")
    assert settings.log_format == "json"


# --- Kubernetes ---------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    [kustomization] = load_all(KUBE / "kustomization.yaml")
    manifests = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == manifests
    assert "secret.example.yaml" not in kustomization["resources"]
    images = {image["name"] for image in kustomization["images"]}
    for deployment in (kube("Deployment", "ai-dev-companion-web"), kube("Deployment", "ai-dev-companion-worker")):
        assert only_container(deployment)["image"] in images


def test_secret_example_names_every_secret_setting_with_placeholders() -> None:
    [secret] = load_all(KUBE / "secret.example.yaml")
    assert secret["metadata"]["name"] == SECRET_NAME
    assert set(secret["stringData"]) == {name.upper() for name in SECRET_FIELDS}
    assert all("REPLACE-ME" in value for value in secret["stringData"].values())
    assert not set(kube("ConfigMap", CONFIG_NAME)["data"]) & {name.upper() for name in SECRET_FIELDS}


def test_env_references_point_at_the_configmap_and_secret_keys() -> None:
    [secret] = load_all(KUBE / "secret.example.yaml")
    for deployment in (kube("Deployment", "ai-dev-companion-web"), kube("Deployment", "ai-dev-companion-worker")):
        container = only_container(deployment)
        assert {"configMapRef": {"name": CONFIG_NAME}} in container["envFrom"]
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == SECRET_NAME
                assert ref["key"] in secret["stringData"]
                assert ref["key"] == item["name"]


def test_each_tier_gets_only_the_secrets_it_uses() -> None:
    def secret_keys(deployment: dict[str, Any]) -> set[str]:
        container = only_container(deployment)
        assert not any("secretRef" in source for source in container["envFrom"]), "no whole-Secret envFrom"
        return {i["name"] for i in container.get("env", []) if "secretKeyRef" in i.get("valueFrom", {})}

    assert secret_keys(kube("Deployment", "ai-dev-companion-web")) == {"GITHUB_WEBHOOK_SECRET", "API_KEYS"}
    assert secret_keys(kube("Deployment", "ai-dev-companion-worker")) == {"GITHUB_PRIVATE_KEY", "OPENAI_API_KEY"}


def test_web_deployment_probes_replicas_and_port() -> None:
    web = kube("Deployment", "ai-dev-companion-web")
    container = only_container(web)
    assert web["spec"]["replicas"] == 2
    assert command(container["command"])[:4] == ["python", "-m", "bot", "serve"]
    [port] = container["ports"]
    assert port["containerPort"] == exposed_port()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + UVICORN_GRACEFUL_SHUTDOWN


def test_worker_deployment_command_drain_memory_and_home() -> None:
    worker = kube("Deployment", "ai-dev-companion-worker")
    pod = worker["spec"]["template"]["spec"]
    container = only_container(worker)
    assert command(container["command"]) == WORKER_COMMAND
    env = {item["name"]: item.get("value") for item in container["env"]}
    # Its one port is the metrics endpoint, and the worker listens there beyond loopback.
    [port] = container["ports"]
    assert port["containerPort"] == int(env["WORKER_METRICS_PORT"])
    assert env["WORKER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - in a pod
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert pod["terminationGracePeriodSeconds"] > JobPolicy().drain
    web_memory = only_container(kube("Deployment", "ai-dev-companion-web"))["resources"]["limits"]["memory"]
    assert mebibytes(container["resources"]["limits"]["memory"]) > mebibytes(web_memory)
    assert mebibytes(container["resources"]["requests"]["memory"]) >= 512  # CrewAI
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        assert env[name].startswith(env["HOME"])
    assert "emptyDir" in volumes[mounts[env["HOME"]]]
    assert "emptyDir" in volumes[mounts["/tmp"]]


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


@pytest.mark.parametrize("name", ["ai-dev-companion-web", "ai-dev-companion-worker"])
def test_pods_run_as_the_image_user_without_privileges(name: str) -> None:
    deployment = kube("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    container = only_container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid()
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert container["image"] == only_container(kube("Deployment", "ai-dev-companion-web"))["image"]


def test_service_sends_port_80_to_the_web_pods() -> None:
    service = kube("Service", "ai-dev-companion-web")
    web = kube("Deployment", "ai-dev-companion-web")
    [port] = service["spec"]["ports"]
    [container_port] = only_container(web)["ports"]
    assert service["spec"]["type"] == "ClusterIP"
    assert port["port"] == 80
    assert port["targetPort"] in (container_port["name"], exposed_port())
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert web["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_namespaced_manifest_is_namespaced_by_the_kustomization() -> None:
    [kustomization] = load_all(KUBE / "kustomization.yaml")
    [namespace] = [d for d in kube_docs() if d["kind"] == "Namespace"]
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    # Namespaces come from the kustomization only, so `kubectl apply -k` puts everything in one place.
    assert not [d for d in kube_docs() if d["kind"] != "Namespace" and "namespace" in d["metadata"]]


# --- GitHub Actions -----------------------------------------------------------------------------------


def test_every_action_is_pinned_to_a_commit_with_its_version_named() -> None:
    for file in sorted(WORKFLOWS.glob("*.yml")):
        for line in file.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            ref, comment = match.groups()
            assert PINNED.match(ref), f"{file.name}: {ref} is not pinned to a full commit SHA"
            assert re.match(r"\s+# v\d+\.\d+\.\d+", comment), f"{file.name}: {ref} has no `# vX.Y.Z` comment"


def test_every_workflow_and_job_has_least_privilege_permissions() -> None:
    for file, workflow in workflows().items():
        assert workflow.get("permissions") == {"contents": "read"}, f"{file}: top-level permissions"
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions")
            assert isinstance(permissions, dict), f"{file} {job_id}: no permissions block (or write-all/read-all)"
            granted = {scope: level for scope, level in permissions.items() if level != "none"}
            if (file, job_id) == ("deploy-stage.yml", "deploy"):
                assert granted == {"contents": "read", "id-token": "write"}
            else:
                assert granted == {"contents": "read"}, f"{file} {job_id}: {granted}"


def test_jobs_have_timeouts_and_workflows_concurrency() -> None:
    for file, workflow in workflows().items():
        assert workflow["concurrency"]["group"], file
        for job_id, job in workflow["jobs"].items():
            if "runs-on" in job:
                assert 0 < job["timeout-minutes"] <= 60, f"{file} {job_id}"


def test_ci_runs_dot_ci_run_against_a_redis_service() -> None:
    workflow = workflows()["ci.yml"]
    assert {"push", "pull_request", "workflow_call"} <= set(triggers(workflow))
    [job] = workflow["jobs"].values()
    redis = job["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    assert "6379:6379" in redis["ports"]
    assert "--health-cmd" in redis["options"]
    assert "redis-cli ping" in redis["options"]
    assert job["env"]["REDIS_URL"].startswith("redis://127.0.0.1:6379/")
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in job["steps"])
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.12"


def test_deploy_stage_tests_then_deploys_the_lambda_with_oidc() -> None:
    workflow = workflows()["deploy-stage.yml"]
    assert triggers(workflow) == {"push": {"branches": ["stage"]}}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert test["uses"] == "./.github/workflows/ci.yml"
    assert deploy["needs"] == "test"
    assert deploy["environment"]["name"] == "stage"
    steps = deploy["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    aws = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert aws["with"]["aws-region"] == "${{ vars.AWS_REGION }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"]), "OIDC only, no stored keys"
    # The package is built before any AWS credential exists in the job.
    build = next(i for i, s in enumerate(steps) if "deploy/lambda/package.sh" in s.get("run", ""))
    assert build < steps.index(aws)
    assert "fileb://dist/lambda.zip" in runs
    assert "aws lambda wait function-updated" in runs
    assert "update-function-configuration" in runs
    assert re.search(r'curl -fsS .*"\$STAGE_URL/healthz"', runs)


def test_deploy_never_prints_the_function_configuration() -> None:
    # `aws lambda update-*` answers with the whole configuration, environment (secrets) included.
    deploy = workflows()["deploy-stage.yml"]["jobs"]["deploy"]
    for step in deploy["steps"]:
        script = step.get("run", "")
        for line in script.replace("\\\n", " ").splitlines():
            if "aws lambda update-" in line:
                assert "--query" in line or "/dev/null" in line, line
        assert "set -x" not in script
        assert not re.search(r"echo .*secrets\.", script)
