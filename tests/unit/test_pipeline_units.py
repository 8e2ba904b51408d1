"""Pure pieces of the pipeline: messages, the segmenter's routing and bounds, backoff, the
progress bar, the CLI's usage errors (no services)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from pipeline.config import PipelineConfig
from pipeline.messages import Segment, SingleWrite
from pipeline.segmenter import Segmenter
from pipeline.states import JobState
from pipeline.status import DeadLetter, JobStatus
from producers.progress import EnqueueProgress, ProgressBar, summary
from producers.session import Progress
from storage.errors import ConfigError
from tests.doubles import FakeClock
from tests.support.pipeline import ROOT
from worker.delivery import requeue_delay


class RecordingLedger:
    def __init__(self) -> None:
        self.planned: list[tuple[str, int]] = []

    def plan(self, job: str, segment: str, items: int) -> None:
        self.planned.append((segment, items))


class RecordingEnqueuer:
    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        self.segments.append(seg)


def _segmenter(**kw: Any) -> tuple[Segmenter, RecordingLedger, RecordingEnqueuer]:
    ledger, enq = RecordingLedger(), RecordingEnqueuer()
    s = Segmenter(
        job="j",
        ns="ns",
        user="u",
        ledger=ledger,
        enqueue=enq,  # type: ignore[arg-type]
        **kw,
    )
    return s, ledger, enq


def test_segment_message_is_json_and_round_trips_binary() -> None:
    seg = Segment(
        job="j",
        seg="s",
        target="kv",
        ns="ns",
        user="u",
        ops=[(b"\x00\xff", b"\x80"), (b"k", None)],
        part="p",
        idx=3,
        attempt=1,
    )
    wire = json.loads(json.dumps(seg.to_message()))
    assert Segment.from_message(wire) == seg.without_ops()
    w = SingleWrite("j", "ns", "u", b"\xfe", None, 42, 2)
    assert SingleWrite.from_message(json.loads(json.dumps(w.to_message()))) == w
    d = DeadLetter(b"\xff", b"v", "why", "Code", None)
    assert DeadLetter.from_json(d.to_json()) == d


def test_same_key_same_partition_and_consecutive_indexes() -> None:
    s, ledger, enq = _segmenter(segment_size=3, partitions=4)
    for i in range(50):
        s.add(b"key-%d" % (i % 7), b"%d" % i)
    s.close()
    where: dict[bytes, set[str | None]] = {}
    for seg in enq.segments:
        for k, _ in seg.ops:
            where.setdefault(k, set()).add(seg.part)
    assert all(len(parts) == 1 for parts in where.values())
    by_part: dict[str | None, list[int]] = {}
    for seg in enq.segments:
        by_part.setdefault(seg.part, []).append(seg.idx)
    assert all(idx == list(range(len(idx))) for idx in by_part.values())
    assert sum(n for _, n in ledger.planned) == 50 == s.items
    assert all(len(seg.ops) <= 3 for seg in enq.segments)


def test_segment_bytes_bound_memory() -> None:
    s, _, enq = _segmenter(segment_size=1000, partitions=1, segment_bytes=10_000)
    for i in range(10):
        s.add(b"k%d" % i, b"x" * 4000)
    assert [len(seg.ops) for seg in enq.segments] == [3, 3, 3]


def test_requeue_delay_is_jittered_exponential_capped_and_never_zero() -> None:
    cfg = replace(PipelineConfig(), requeue_base_delay=1.0, requeue_max_delay=10.0)
    rng = random.Random(3)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (5, 10), (5, 10)]):
        for _ in range(50):
            assert lo <= requeue_delay(attempt, cfg, rng) <= hi


def test_visibility_timeout_must_exceed_the_longest_countdown() -> None:
    with pytest.raises(ConfigError, match="DATAFOLD_VISIBILITY_TIMEOUT"):
        PipelineConfig.from_env(
            {"DATAFOLD_VISIBILITY_TIMEOUT": "30", "DATAFOLD_REQUEUE_MAX_DELAY": "60"}
        )


def test_progress_bar_and_summary() -> None:
    st = JobStatus(
        id="j1",
        state="running",
        items=200,
        written=50,
        superseded=0,
        created_at=100.0,
        started_at=100.0,
    )
    out = io.StringIO()
    bar = ProgressBar(out, every=0)
    bar.update(st)
    assert "25.0%" in out.getvalue() and "50/200 items" in out.getvalue()
    done = replace(st, state="partial", written=198, dead_lettered=2, finished_at=110.0)
    text = summary(done)
    assert "partial" in text and "dead-lettered 2" in text and "20 items/s" in text
    assert "failed:" not in text
    planned = replace(done, state="failed", failures=1, error="[AccessDenied] no Query")
    assert summary(planned).endswith("  failed: [AccessDenied] no Query")


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATAFOLD_DYNAMODB_REGION": "us-east-1",
        "DATAFOLD_REDIS_URL": "redis://127.0.0.1:1/0",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (("load", "/nonexistent/file.jsonl", "-n", "ns"), "no such file"),
        (("load", "-", "-n", "bad name!"), "invalid namespace"),
        (("load", "-", "-n", "ns", "--format", "csv"), "key"),
    ],
)
def test_cli_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    proc = _cli(*args, stdin=b"a,b\n1,2\n")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr.lower()
    assert "Traceback" not in proc.stderr


def test_cli_without_redis_is_one_line_exit_1() -> None:
    proc = _cli("status", "nojob")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_cli_without_a_region_names_the_variable() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "producers.cli", "status", "x"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "DATAFOLD_DYNAMODB_REGION" in proc.stderr


def test_enqueue_progress_says_when_it_waits_for_workers_without_flooding_a_pipe() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = EnqueueProgress(out, clock=clock)
    p = Progress("j", 10, 500, 3 * 2**20, 4 * 2**20, False)
    bar(p)
    bar(p)  # within 5 s on a pipe: quiet
    bar(replace(p, waiting=True))  # the first wait is news
    clock.advance(1)
    bar(p)
    bar(replace(p, waiting=True))  # hovering at the budget: quiet
    assert out.getvalue().splitlines() == [
        "enqueue: 10 lines, 500 items; queued 3.0 of 4 MiB",
        "enqueue: 10 lines, 500 items; queued 3.0 of 4 MiB — waiting for workers",
    ]
    clock.advance(5)
    bar(p)
    assert len(out.getvalue().splitlines()) == 3


def test_the_summary_of_a_stopped_load_says_why_and_how_to_go_on() -> None:
    st = JobStatus(
        id="j1",
        state=JobState.ABANDONED,
        kind="load",
        stopped="producer silent for 61 s",
        lines=4000,
        extra={"file": "data.jsonl"},
    )
    text = summary(st)
    assert "input not read to the end: producer silent for 61 s" in text
    assert "input lines enqueued (checkpoint): 4000" in text
    assert "go on with: datafold load data.jsonl --resume j1" in text
