"""The Grafana dashboard covers what operators watch; the PromQL reader the integration test
uses to check it against a live worker finds every selector."""

from __future__ import annotations

import json

from tests.support.ops import DASHBOARD, Ref, dashboard_exprs, refs


def test_reader_finds_selectors_matchers_and_grouping() -> None:
    got, by = refs(
        'histogram_quantile(0.95, sum by (le, table) (rate(x_seconds_bucket{a="b", c!="d"}[5m])))'
    )
    assert got == [Ref("x_seconds_bucket", (("a", "=", "b"), ("c", "!=", "d")))]
    assert by == {"le", "table"}
    got, by = refs("sum by (t) (rate(a_sum[5m])) / sum by (t) (rate(a_count[5m]))")
    assert [r.metric for r in got] == ["a_sum", "a_count"] and by == {"t"}
    got, _ = refs('count(up{job="datafold-worker"} == 1)')
    assert got == [Ref("up", (("job", "=", "datafold-worker"),))]


def test_dashboard_has_the_operator_panels() -> None:
    exprs = dashboard_exprs()
    metrics = {r.metric for e in exprs for r in refs(e)[0]}
    assert {
        "datafold_items_total",
        "datafold_batch_items_total",
        "datafold_dynamodb_request_seconds_bucket",
        "datafold_dynamodb_throttles_total",
        "datafold_dynamodb_retries_total",
        "datafold_dynamodb_errors_total",
        "datafold_limiter_rate_wcu",
        "datafold_limiter_wait_seconds_bucket",
        "datafold_queue_depth",
        "datafold_jobs",
        "datafold_queued_bytes",
        "datafold_limiter_partition_cuts_total",
        "datafold_limiter_partition_rate_wcu",
    } <= metrics
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any('outcome="dead_lettered"' in e for e in exprs)
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in (
        "throughput",
        "latency",
        "throttles",
        "retries",
        "dead letters",
        "limiter rate",
        "queue depth",
        "jobs by state",
        "queued bytes",
        "hot partitions",
    ):
        assert word in titles, word
    # Gauges every worker reports alike are aggregated with max, never summed over workers.
    for e in exprs:
        for gauge in (
            "datafold_queue_depth",
            "datafold_jobs",
            "datafold_queue_unacked",
            "datafold_queued_bytes",
        ):
            if gauge in e:
                assert "max" in e and f"sum(rate({gauge}" not in e, e
