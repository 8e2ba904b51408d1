"""docker-compose.yml, the Prometheus and Grafana files and the Dockerfile agree with each other.

`docker-compose config -q` (Debian's docker-compose package) validates the file without a Docker
engine; the rest reads the YAML and JSON files themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.ops import DASHBOARD, need
from tests.support.pipeline import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {"FLOWER_BASIC_AUTH": "ops:not-a-real-password", "GRAFANA_ADMIN_PASSWORD": "x"}


def _compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [need("docker-compose"), "-f", str(COMPOSE), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def _load(rel: str) -> Any:
    return yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))


def test_compose_file_validates() -> None:
    proc = _compose("config", "-q", **SECRETS)
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_without_flower_credentials() -> None:
    proc = _compose("config", "-q", GRAFANA_ADMIN_PASSWORD="x")
    assert proc.returncode != 0
    assert "FLOWER_BASIC_AUTH" in proc.stderr


def test_redis_is_append_only_and_not_published(stack: dict[str, Any]) -> None:
    redis = stack["services"]["redis"]
    assert "ports" not in redis
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_published_ports_bind_loopback_only(stack: dict[str, Any]) -> None:
    published = {name: svc["ports"] for name, svc in stack["services"].items() if "ports" in svc}
    assert set(published) == {"flower", "prometheus", "grafana"}
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), ports


def test_workers_scale_and_prometheus_scrapes_every_replica(stack: dict[str, Any]) -> None:
    worker = stack["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    env = worker["environment"]
    assert env["DATAFOLD_METRICS_ADDR"] == "0.0.0.0"
    prom = _load("ops/prometheus.yml")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    (dns,) = jobs["datafold-worker"]["dns_sd_configs"]
    assert dns["names"] == ["worker", "writer"] and dns["type"] == "A"
    assert dns["port"] == int(env["DATAFOLD_METRICS_PORT"])
    writer = stack["services"]["writer"]  # single writes never wait behind bulk segments
    assert writer["command"][-2:] == ["-Q", "writes"]
    assert writer["environment"]["DATAFOLD_METRICS_PORT"] == env["DATAFOLD_METRICS_PORT"]
    exporter = stack["services"]["exporter"]["command"]
    target = jobs["datafold-exporter"]["static_configs"][0]["targets"]
    assert target == [f"exporter:{exporter[exporter.index('--port') + 1]}"]
    mounts = stack["services"]["prometheus"]["volumes"]
    assert "./ops/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisions_the_dashboard_on_the_datasource(stack: dict[str, Any]) -> None:
    grafana = stack["services"]["grafana"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./")
    )
    assert all((ROOT / host).is_dir() for host in mounts)
    (ds,) = _load("ops/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    (provider,) = _load("ops/grafana/provisioning/dashboards/datafold.yml")["providers"]
    assert provider["options"]["path"] == mounts["./ops/grafana/dashboards"]
    assert mounts["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert ds["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    assert uids == {ds["uid"]}
    assert "GRAFANA_ADMIN_PASSWORD:?" in COMPOSE.read_text(encoding="utf-8")


def test_dockerfile_runs_the_worker_as_an_unprivileged_user(stack: dict[str, Any]) -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / "Dockerfile").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    user = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert json.loads(lines[-1].removeprefix("CMD "))[:4] == ["celery", "-A", "worker", "worker"]
    port = next(ln.split()[1] for ln in lines if ln.startswith("EXPOSE"))
    assert port == stack["services"]["worker"]["environment"]["DATAFOLD_METRICS_PORT"]
