"""docker-compose.yml, checked without Docker (not installed here, so `docker compose config` is not run): the file
validates against the Compose JSON schema (deploy/compose-spec.json), and its services, health checks, volumes,
proxy and settings refer to each other and to what Sightline reads."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = ("elasticsearch", "redis", "worker1", "worker2", "api1", "api2", "proxy", "models")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_the_file_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((REPO / "deploy" / "compose-spec.json").read_text())
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in jsonschema_rs.validator_for(schema).iter_errors(compose)]
    assert errors == []


def test_the_small_cluster_and_the_embedded_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(CLUSTER) <= set(services)
    assert all("profiles" not in services[name] for name in CLUSTER)  # the cluster is the default
    assert services["sightline"]["profiles"] == ["embedded"]  # the embedded default stays one command away
    assert services["sightline"]["ports"] == ["8000:8000"] and services["proxy"]["ports"] == ["8080:8080"]
    for name in ("worker1", "worker2"):
        command = services[name]["command"]
        assert command[command.index("worker"):] == ["worker", "--queue", "redis://redis:6379/0"]
    for name in ("api1", "api2"):
        assert "serve" in services[name]["command"] and "ports" not in services[name]  # reached via the proxy


def test_elasticsearch_runs_with_security_on(compose: dict[str, Any]) -> None:
    es = compose["services"]["elasticsearch"]
    assert es["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:${ES_VERSION:-8.")
    env = es["environment"]
    assert env["discovery.type"] == "single-node" and env["xpack.security.enabled"] == "true"
    assert env["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")  # no default password
    assert "ports" not in es  # reachable inside the compose network only
    api_env = compose["services"]["api1"]["environment"]
    assert api_env["SIGHTLINE_ES_PASSWORD"] == env["ELASTIC_PASSWORD"]
    assert api_env["SIGHTLINE_ES_URL"] == "http://elasticsearch:9200"
    assert api_env["SIGHTLINE_STORE"] == api_env["SIGHTLINE_VECTORS"] == "elasticsearch"


def test_dependencies_wait_for_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on an unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no check"
            if condition["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} must run once"
    for name in CLUSTER:
        if name != "models":
            check = services[name]["healthcheck"]
            assert check["test"] and check["interval"] and check["retries"] >= 3, name


def test_every_volume_is_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).resolve().exists() or source.startswith("../shared"), f"{name}: {source}"
            else:
                assert source in declared, f"{name} mounts an undeclared volume {source}"
                used.add(source)
    assert used == declared
    workers_and_apis = [compose["services"][n] for n in ("worker1", "worker2", "api1", "api2")]
    assert all("sightline-blobs:/blobs" in s["volumes"] for s in workers_and_apis)  # one blob folder for all
    assert all(s["environment"]["SIGHTLINE_BLOBS"] == "/blobs" for s in workers_and_apis)


def test_the_proxy_balances_the_api_replicas(compose: dict[str, Any]) -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    upstream = re.findall(r"server (\w+):8000", conf)
    assert sorted(upstream) == ["api1", "api2"] and all(u in compose["services"] for u in upstream)
    assert "listen 8080" in conf and "proxy_buffering off" in conf  # the SSE alert stream passes at once
    assert "location = /nginx-health" in conf


def test_every_sightline_variable_is_one_the_settings_read(compose: dict[str, Any]) -> None:
    read = set(re.findall(r'"(SIGHTLINE_[A-Z_]+)"', (REPO / "services" / "settings.py").read_text()))
    for name, service in compose["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("SIGHTLINE_"):
                assert variable in read, f"{name} sets {variable}, which Sightline never reads"


def test_the_audit_key_and_checkpoint_outlive_containers_apart_from_the_data(compose: dict[str, Any]) -> None:
    for name in ("worker1", "worker2", "api1", "api2", "sightline"):
        service = compose["services"][name]
        mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])  # container path -> volume
        env = service["environment"]
        for variable in ("SIGHTLINE_AUDIT_KEY_FILE", "SIGHTLINE_AUDIT_CHECKPOINT"):
            folder = str(Path(env[variable]).parent)
            assert folder in mounts and mounts[folder] != mounts["/data"], (name, variable)
