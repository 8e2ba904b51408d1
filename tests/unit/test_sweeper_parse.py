"""What the sweeper reads off the broker: the (job, id) named by a waiting or unacknowledged
message of ours — segment, single write or plan — whatever its body encoding; anything else
names nothing."""

from __future__ import annotations

import base64
import json

from pipeline.config import PipelineConfig
from worker.sweeper import in_broker


def envelope(
    job: str, seg: str, *, task: str = "datafold.segment", encoding: str = "utf-8"
) -> dict[str, object]:
    body = json.dumps([[{"v": 2, "job": job, "seg": seg, "n": 1}], {}, {}])
    if encoding == "base64":
        body = base64.b64encode(body.encode()).decode()
    return {
        "body": body,
        "headers": {"task": task},
        "properties": {"body_encoding": encoding, "delivery_tag": "t"},
    }


def test_waiting_and_unacknowledged_messages_name_their_segments() -> None:
    waiting = [
        json.dumps(envelope("j1", "s/p0.0")).encode(),
        json.dumps(envelope("j1", "s/p1.0", encoding="base64")).encode(),
    ]
    unacked = [json.dumps([envelope("j2", "s/p0.3.r1"), "", "bulk"]).encode()]
    assert in_broker(waiting, unacked) == {("j1", "s/p0.0"), ("j1", "s/p1.0"), ("j2", "s/p0.3.r1")}


def test_single_writes_and_plans_are_named_by_their_journal_ids() -> None:
    write = envelope("j", "-", task="datafold.write")
    write["body"] = json.dumps([[{"v": 1, "job": "j", "attempt": 2}], {}, {}])
    plan = envelope("k", "-", task="datafold.plan")
    unacked = [json.dumps([plan, "", "bulk"]).encode()]
    assert in_broker([json.dumps(write).encode()], unacked) == {("j", "w.r2"), ("k", "plan")}


def test_other_tasks_and_junk_name_nothing() -> None:
    others = [
        json.dumps(envelope("j", "s", task="celery.backend_cleanup")).encode(),
        b"not json",
        b"[]",
        json.dumps({"body": "[]", "headers": {"task": "datafold.segment"}}).encode(),
    ]
    assert in_broker(others, [b"{}", json.dumps([{"headers": None}]).encode()]) == set()


def test_sweep_knobs() -> None:
    assert (PipelineConfig().sweep_interval, PipelineConfig().sweep_grace) == (60.0, 60.0)
    cfg = PipelineConfig.from_env({"DATAFOLD_SWEEP_INTERVAL": "0", "DATAFOLD_SWEEP_GRACE": "5"})
    assert (cfg.sweep_interval, cfg.sweep_grace) == (0.0, 5.0)
