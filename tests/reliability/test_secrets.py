"""No credential value ever reaches a log, an error message, a dead letter or a metric.

The workers and the command line run with a fake AWS secret key and a password-protected Redis
(a redis-server of the test's own, ``requirepass`` set, its URL carrying the password). A load
goes through injected faults with a retry budget of zero, so errors are logged and dead letters
written with their reasons; the CLI reports bad input, a Redis it cannot reach and a DynamoDB
it cannot reach. Then worker logs, CLI output, dead letters and the worker's ``/metrics`` are
searched for either secret.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from storage.limits import MAX_ITEM_BYTES
from tests.faults import FaultConfig, FaultProxy
from tests.reliability.conftest import Fleet, PrivateRedisEnv, RedisServer, free_port, producer
from tests.support.pipeline import ROOT, PipelineEnv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

AWS_SECRET = f"FAKEsecret123{uuid.uuid4().hex}"
REDIS_PASSWORD = f"FAKEredisPass{uuid.uuid4().hex}"
FAULTS = FaultConfig(
    throttle_rate=0.1, internal_error_rate=0.05, reset_rate=0.05, partial_batch_rate=0.1
)


def cli(penv: PipelineEnv, *args: str, **env: str) -> str:
    """Run the CLI; return everything it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=penv.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def test_no_secret_in_logs_errors_dead_letters_or_metrics(
    rpenv: PipelineEnv, proxy: FaultProxy, tmp_path: Path, unique: str
) -> None:
    server = RedisServer(tmp_path, password=REDIS_PASSWORD).start()
    penv = PrivateRedisEnv(
        rpenv.dynamo, 0, rpenv.logs, url=server.url(), extra={"AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    )
    assert REDIS_PASSWORD in penv.env()["DATAFOLD_REDIS_URL"]
    fleet = Fleet(penv, proxy)
    metrics_port = free_port(9200, 9300)
    texts: dict[str, str] = {}
    try:
        proxy.set_config(FAULTS)
        fleet.start(
            1,
            prefix="secrets",
            DATAFOLD_METRICS_PORT=str(metrics_port),
            DATAFOLD_DYNAMODB_MAX_ATTEMPTS="1",
            DATAFOLD_MAX_REQUEUES="0",
            DATAFOLD_BATCH_ROUNDS="1",
            DATAFOLD_MIN_WRITE_CAPACITY="4000",
        )
        ns, user = f"sec{unique}", f"user-{unique}"
        items = [(b"k%04d" % i, b"v" * 50) for i in range(2000)]
        items.append((b"too-big", b"x" * (MAX_ITEM_BYTES + 1)))
        job = producer(penv).load(ns, items, user)
        st = job.wait(timeout=120)
        letters = list(job.dead_letters())
        assert st.dead_lettered == len(letters) > 1, st  # the oversize item and fault victims
        texts["dead letters"] = "\n".join(f"{d.code} {d.reason} {d.namespace}" for d in letters)

        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"key": "a", "value": 1}\nnot json\n', encoding="utf-8")
        texts["cli load"] = cli(penv, "load", str(bad), "-n", ns, "--user", user, "--wait")
        texts["cli status"] = cli(penv, "status", job.id, "--json")
        texts["cli dead-letters"] = cli(penv, "dead-letters", job.id)
        dead_redis = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port(6490, 6590)}/0"
        texts["cli, Redis down"] = cli(penv, "status", job.id, DATAFOLD_REDIS_URL=dead_redis)
        texts["cli, DynamoDB down"] = cli(
            penv,
            "get",
            ns,
            "k0001",
            "--user",
            user,
            DATAFOLD_DYNAMODB_ENDPOINT=f"http://127.0.0.1:{free_port(8490, 8590)}",
            DATAFOLD_DYNAMODB_MAX_ATTEMPTS="1",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            texts["/metrics"] = resp.read().decode("utf-8")
    finally:
        fleet.stop()
        server.shutdown()
    texts["worker logs"] = fleet.logs()

    # Each place really said something about what went wrong (or a check would be vacuous).
    assert "error:" in texts["cli, Redis down"] and "error:" in texts["cli, DynamoDB down"]
    assert "datafold_dynamodb_errors_total" in texts["/metrics"]
    assert "redis://:**@127.0.0.1" in texts["worker logs"]  # Celery's masked broker URL
    for where, text in texts.items():
        for name, secret in (("AWS secret", AWS_SECRET), ("Redis password", REDIS_PASSWORD)):
            assert secret not in text, f"the {name} appears in the {where}"
            assert secret[len("FAKE") :] not in text, f"part of the {name} is in the {where}"
