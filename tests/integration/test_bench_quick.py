"""The benchmark's ``--quick`` mode runs end to end, so the benchmark code never rots.

It needs DynamoDB Local and Redis like the other integration tests; it uses Redis database 13
and tables of its own (``bench<hex>-*``), and removes them. Figures are not checked — a smoke
run on a shared machine measures nothing — only that every section ran and was written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.pipeline import ROOT

SECTIONS = (
    "1. Bulk load",
    "2. Direct reads",
    "3. clear_all_schemas",
    "4. Rate limiter",
    "5. Scaling and defaults",
    "6. Memory",
    "7. Celery overhead per segment message",
    "9. SigV4 signing",
    "10. Single write: put and wait",
    "11. Fair rate limiting: four loads and a single writer",
)


def test_quick_bench_writes_report_and_chart_with_every_section(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = out.read_text(encoding="utf-8")
    assert "section failed" not in report
    for title in SECTIONS:
        assert f"\n## {title}\n" in report, f"section {title!r} missing"
    body = report.split("\n## 1. Bulk load\n", 1)[1]
    assert body.count("\n| contender |") >= 4  # bulk x2, clear_schemas, limiter
    assert "| Producer.get |" in report and "| scan_prefix |" in report
    chart = out.with_suffix(".png")
    assert f"]({chart.name})" in report
    png = chart.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "[bench] wrote" in proc.stderr
