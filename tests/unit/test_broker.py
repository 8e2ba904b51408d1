"""The Celery settings both sides share are built from a PipelineConfig, at call time."""

from __future__ import annotations

from pipeline.broker import QUEUES, sender_app, settings
from pipeline.config import PipelineConfig
from pipeline.messages import PLAN_TASK, SEGMENT_TASK, WRITE_TASK


def test_settings_follow_the_config_json_only() -> None:
    cfg = PipelineConfig.from_env(
        {
            "DATAFOLD_REDIS_URL": "redis://h:1/2",
            "DATAFOLD_VISIBILITY_TIMEOUT": "90",
            "DATAFOLD_REDIS_TIMEOUT": "4",
            "DATAFOLD_REDIS_CONNECT_TIMEOUT": "2",
        }
    )
    s = settings(cfg)
    assert s["broker_url"] == "redis://h:1/2"
    opts = s["broker_transport_options"]
    assert (opts["visibility_timeout"], opts["socket_timeout"], opts["socket_connect_timeout"]) == (
        90,
        4.0,
        2.0,
    )
    assert s["accept_content"] == ["json"] and s["task_serializer"] == "json"
    routes = {name: r["queue"] for name, r in s["task_routes"].items()}
    assert routes == {WRITE_TASK: "writes", SEGMENT_TASK: "bulk", PLAN_TASK: "bulk"}
    assert {q.name for q in s["task_queues"]} == set(QUEUES) == {"writes", "bulk"}


def test_the_sender_app_registers_no_task() -> None:
    app = sender_app(PipelineConfig())
    assert app.conf.task_serializer == "json"
    assert not [t for t in app.tasks if t.startswith("datafold.")]
