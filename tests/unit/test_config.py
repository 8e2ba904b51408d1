"""The pipeline's settings refuse a segment that could outlive its visibility timeout, and the
defaults are safe together."""

from __future__ import annotations

import pytest

from pipeline.config import PipelineConfig, check_run_bound
from storage.errors import ConfigError
from storage.settings import DynamoConfig


def test_the_defaults_bound_every_run_inside_the_visibility_timeout() -> None:
    cfg, dynamo = PipelineConfig(), DynamoConfig(region="us-east-1")
    check_run_bound(cfg, dynamo)
    longest = cfg.segment_seconds + dynamo.retry_max_seconds + dynamo.read_timeout
    assert cfg.lease_seconds < longest < cfg.visibility_timeout
    assert cfg.requeue_max_delay < cfg.visibility_timeout


def test_a_segment_that_could_run_past_the_visibility_timeout_is_refused() -> None:
    cfg = PipelineConfig.from_env(
        {"DATAFOLD_VISIBILITY_TIMEOUT": "70", "DATAFOLD_SEGMENT_SECONDS": "30"}
    )
    with pytest.raises(ConfigError, match="DATAFOLD_VISIBILITY_TIMEOUT=70 is too short"):
        check_run_bound(cfg, DynamoConfig(region="us-east-1"))  # 30 + 30 + 10 s
    check_run_bound(cfg, DynamoConfig(region="us-east-1", retry_max_seconds=20))


def test_a_lease_must_expire_before_the_message_comes_back() -> None:
    with pytest.raises(ConfigError, match="DATAFOLD_LEASE_SECONDS"):
        PipelineConfig.from_env({"DATAFOLD_LEASE_SECONDS": "90"})
    cfg = PipelineConfig.from_env({"DATAFOLD_LEASE_SECONDS": "5", "DATAFOLD_SEGMENT_SECONDS": "9"})
    assert (cfg.lease_seconds, cfg.segment_seconds) == (5.0, 9.0)
