"""The deploy story, checked as far as this machine allows (no Docker engine runs here):
``docker-compose.yml`` against the Compose specification's schema, the Kubernetes manifests
against Kubernetes' schemas and through ``kubectl kustomize``, the systemd units with
``systemd-analyze verify``, and every compose service that runs taskjobs or Celery started for
real, with the compose environment mapped to this machine's services: the publisher's tasks
are run by the worker and appear in the web API. Where a Docker engine answers, the image is
built and the stack brought up."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.services import IN_CI, POSTGRES_URL, REDIS_URL, free_port, require, scratch_database
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
# The compose services that run taskjobs or Celery, in the order they start.
RUNNING = ("migrate", "worker", "publisher", "web")
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::?[-?](?P<default>[^}]*))?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line and not line.startswith("#"))  # fmt: skip
    return dict(pairs)


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if IN_CI:
            pytest.fail(f"{tool} is needed (.ci/run runs on a machine that has it)")
        pytest.skip(f"{tool} is not installed")
    return found


def test_the_compose_file_follows_the_compose_specification() -> None:
    # The schema check-jsonschema ships (its vendored copy of compose-spec's JSON schema).
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose(), schema)


def test_the_compose_file_holds_together() -> None:
    spec = compose()
    services = spec["services"]
    assert set(RUNNING) | {"postgres", "redis", "rabbitmq"} == set(services)
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, (name, needed)
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in spec["volumes"], (name, mount)
    for name in ("postgres", "redis", "rabbitmq", "web"):
        assert "healthcheck" in services[name], name
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"}  # fmt: skip
    build = services["worker"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    named = {match["name"] for match in VARIABLE.finditer(COMPOSE.read_text())}
    assert named <= set(env_example()), "every variable is in .env.example"


def test_the_dockerfile_builds_in_stages_and_runs_as_a_user() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert re.search(r"ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+", "\n".join(lines))
    assert any(line.startswith("USER taskjobs") for line in lines)
    copied = [
        line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line
    ]
    assert all((ROOT / path).exists() for path in copied), copied


MANIFESTS = sorted(
    path.name
    for path in (DEPLOY / "kubernetes").glob("*.yaml")
    if path.name != "kustomization.yaml"
)


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_each_kubernetes_manifest_is_valid(manifest: str) -> None:
    import kubernetes_validate

    for resource in yaml.safe_load_all((DEPLOY / "kubernetes" / manifest).read_text()):
        kubernetes_validate.validate(resource, "1.30", strict=True)


def test_the_kustomization_renders_every_resource() -> None:
    kubectl = need("kubectl")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered.stdout))
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Job", "Namespace", "Secret",
                     "Service"]  # fmt: skip


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    bin_dir = Path(sys.executable).parent
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text().replace("/opt/taskjobs/venv/bin", str(bin_dir))
        text = text.replace("/etc/taskjobs/", f"{DEPLOY / 'systemd'}/")
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(path) for path in tmp_path.glob("*.service"))
    assert len(units) == 3
    checked = subprocess.run([analyze, "verify", *units], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def local_environment(service: dict[str, Any], mapped: dict[str, str]) -> dict[str, str]:
    """A compose service's environment as it runs here: variables from .env.example, the
    service URLs pointed at this machine's servers."""
    values = env_example()
    environment = {}
    for key, value in service.get("environment", {}).items():
        environment[key] = mapped.get(key) or VARIABLE.sub(
            lambda match: values.get(match["name"], match["default"] or ""), str(value)
        )
    return environment


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    require(POSTGRES_URL, "postgresql")
    require(REDIS_URL, "redis")
    with scratch_database("postgresql", str(tmp_path)) as url:
        yield {
            "TASKJOBS_DATABASE_URL": url,
            "CELERY_BROKER_URL": f"{REDIS_URL}/11",
            "CELERY_RESULT_BACKEND": f"{REDIS_URL}/12",
        }


@pytest.mark.slow
def test_the_compose_services_run_for_real_here(
    local_stack: dict[str, str], tmp_path: Path
) -> None:
    services = compose()["services"]
    bin_dir = Path(sys.executable).parent
    port = free_port()
    queue = f"shop-{os.getpid()}"
    processes: list[subprocess.Popen[str]] = []
    logs: list[Any] = []

    def start(name: str, *extra: str) -> subprocess.Popen[str]:
        command = [str(part) for part in services[name]["command"]]
        command = [f"--queues={queue}" if part == "--queues=shop" else part for part in command]
        command = [str(port) if part == "5555" else part for part in command]
        if command[0] != "python":
            command[0] = str(bin_dir / command[0])
        else:
            command[0] = sys.executable
        environment = {**os.environ, **local_environment(services[name], local_stack),
                       "SHOP_QUEUE": queue, "PYTHONPATH": str(DEPLOY / "example")}  # fmt: skip
        log = (tmp_path / f"{name}.log").open("w")
        logs.append(log)
        process = subprocess.Popen([*command, *extra], env=environment, stdout=log,
                                   stderr=subprocess.STDOUT, text=True, cwd=tmp_path)  # fmt: skip
        processes.append(process)
        return process

    try:
        migrate = start("migrate")
        assert migrate.wait(60) == 0, (tmp_path / "migrate.log").read_text()
        start("worker")
        start("web")
        publisher = start("publisher", "--count", "3", "--interval", "0.2")
        assert publisher.wait(60) == 0, (tmp_path / "publisher.log").read_text()
        login = env_example()["TASKJOBS_BASIC_AUTH"].split(",")[0]
        headers = {"Authorization": "Basic " + b64encode(login.encode()).decode()}

        def api(path: str) -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=5) as answer:
                return json.load(answer)

        def all_ended() -> list[dict[str, Any]] | None:
            try:
                jobs: list[dict[str, Any]] = api("/api/v1/jobs?limit=1000")["jobs"]
            except OSError:
                return None  # the server is still starting
            waiting = [job for job in jobs if job["status"] in ("pending", "running")]
            return jobs if len(jobs) >= 12 and not waiting else None

        jobs = wait_for(
            all_ended, timeout=90, what=lambda: (tmp_path / "worker.log").read_text()[-2000:]
        )
        names = {job["name"] for job in jobs}
        assert {"shop.price_order", "shop.ship_parcel", "shop.notify_carrier",
                "shop.build_report", "shop.import_catalog"} <= names  # fmt: skip
        failed = [job for job in jobs if job["name"] == "shop.import_catalog"]
        assert [job["status"] for job in failed] == ["error"]
        report = [job for job in jobs if job["name"] == "shop.build_report"]
        assert "rendered page 3 of 3" in report[0]["messages"]
        assert set(api("/api/tasks?limit=100")) == {job["id"] for job in jobs}
        assert api("/api/v1/workers")["workers"][0]["state"] == "alive"
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for log in logs:
            log.close()


def docker_engine() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not docker_engine(), reason="no Docker engine answers on this machine")
def test_the_image_builds_and_the_stack_comes_up(tmp_path: Path) -> None:  # pragma: no cover
    env = tmp_path / ".env"
    shutil.copy(ROOT / ".env.example", env)
    base = ["docker", "compose", "--project-directory", str(ROOT), "--env-file", str(env)]
    subprocess.run([*base, "up", "--build", "--detach", "--wait"], check=True, timeout=1200)
    try:
        login = env_example()["TASKJOBS_BASIC_AUTH"]
        request = urllib.request.Request(
            "http://127.0.0.1:5555/api/v1/jobs",
            headers={"Authorization": "Basic " + b64encode(login.encode()).decode()},
        )
        found = wait_for(lambda: json.load(urllib.request.urlopen(request))["jobs"], timeout=120)
        assert found
    finally:
        subprocess.run([*base, "down", "--volumes"], check=False, timeout=300)


def test_the_alert_rules_use_metrics_the_server_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "taskjobs-alerts.yml").read_text())
    exported = set(re.findall(r"taskjobs_[a-z_]+", (ROOT / "taskjobs/web/metrics.py").read_text()))
    for rule in rules["groups"][0]["rules"]:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        used = set(re.findall(r"taskjobs_[a-z_]+", rule["expr"]))
        assert used <= exported, (rule["alert"], used - exported)
