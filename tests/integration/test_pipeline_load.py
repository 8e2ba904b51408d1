"""Bulk loads through the real queue: `datafold load --wait` against real workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from producers import Producer
from tests.support.pipeline import ROOT, PipelineEnv, Worker, start_workers, stop_all

N = 20_000


def _compact(v: object) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_20k_load_via_cli_is_exact_and_reads_back_byte_for_byte(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, tmp_path: Path, unique: str
) -> None:
    path = tmp_path / "items.jsonl"
    expected: dict[bytes, bytes] = {}
    with path.open("w", encoding="utf-8") as f:
        for i in range(N):
            key, value = f"item-{i:06d}-ключ", {"i": i, "name": f"record {i}", "tags": ["a", i]}
            f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
            expected[key.encode()] = _compact(value)
        # A duplicate key, later in the file (and so in a later segment): the last line wins.
        f.write(json.dumps({"key": "item-000007-ключ", "value": "the last one"}) + "\n")
        expected["item-000007-ключ".encode()] = _compact("the last one")

    ns, user = f"load{unique}", f"user-{unique}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "producers.cli",
            "load",
            str(path),
            "--namespace",
            ns,
            "--user",
            user,
            "--wait",
        ],
        cwd=ROOT,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = next(
        line.split()[-1] for line in proc.stderr.splitlines() if line.startswith("load: job")
    )

    st = producer.job(job_id).status()
    assert st.state == "succeeded"
    assert st.items == N + 1
    assert st.written + st.superseded == N + 1
    assert st.dead_lettered == 0 and st.rejected == 0
    assert st.segments_done == st.segments_planned

    got = dict(penv.store(user).open_namespace(ns).scan_prefix(b""))
    assert got == expected


def test_bad_lines_are_rejected_counted_and_exit_3(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, tmp_path: Path, unique: str
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"key": "a", "value": 1}\nnot json\n{"value": 2}\n{"key": "", "value": 3}\n'
        '{"key": "b", "value": 4}\n',
        encoding="utf-8",
    )
    ns, user = f"bad{unique}", f"user-{unique}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "producers.cli",
            "load",
            str(path),
            "-n",
            ns,
            "--user",
            user,
            "--wait",
        ],
        cwd=ROOT,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    job_id = next(
        line.split()[-1] for line in proc.stderr.splitlines() if line.startswith("load: job")
    )
    job = producer.job(job_id)
    st = job.status()
    assert (st.state, st.items, st.written, st.rejected) == ("partial", 2, 2, 3)
    assert [n for n, _ in job.rejected_lines()] == [2, 3, 4]
    kv = penv.store(user).open_namespace(ns)
    assert kv.get(b"a") == b"1" and kv.get(b"b") == b"4"


def test_strict_refuses_the_whole_file_before_enqueueing(
    penv: PipelineEnv, tmp_path: Path, unique: str
) -> None:
    path = tmp_path / "strict.jsonl"
    path.write_text('{"key": "a", "value": 1}\n{"key": ""}\n', encoding="utf-8")
    before = penv.redis().zcard("datafold:jobs")
    proc = subprocess.run(
        [sys.executable, "-m", "producers.cli", "load", str(path), "-n", f"s{unique}", "--strict"],
        cwd=ROOT,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "line 2" in proc.stderr
    assert penv.redis().zcard("datafold:jobs") == before


def test_messages_name_their_items_which_wait_in_redis_until_written(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    """The task message is small JSON naming the segment; the items wait beside it as one
    binary payload, and are removed once the segment is written."""
    r = isolated_penv.redis()
    producer = Producer(
        isolated_penv.dynamo, isolated_penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="200")
    )
    value = bytes(range(256)) * 8  # 2 KB, not UTF-8
    items = [(b"k%04d" % i, value) for i in range(400)]
    job = producer.load(f"claim{unique}", items, f"user-{unique}")

    queued = [json.loads(m) for m in r.lrange("bulk", 0, -1)]  # no worker here: still queued
    bodies = [json.loads(m["body"]) for m in queued]
    assert len(bodies) >= 2 and all(len(m["body"]) < 1000 for m in queued)
    messages = [args[0] for args, _kwargs, _embed in bodies]
    assert all("ops" not in m and m["v"] == 2 for m in messages)
    assert sum(m["n"] for m in messages) == 400
    payloads = sorted(r.scan_iter(match=f"datafold:job:{{{job.id}}}:payload:*"))
    assert len(payloads) == len(messages) and all(0 < r.ttl(k) <= 7 * 24 * 3600 for k in payloads)

    ws = start_workers(isolated_penv, 1, prefix="claim")
    try:
        st = job.wait(timeout=120)
    finally:
        stop_all(ws)
    assert st.state == "succeeded" and st.written == 400
    assert list(r.scan_iter(match=f"datafold:job:{{{job.id}}}:payload:*")) == []
    got = dict(
        isolated_penv.store(f"user-{unique}").open_namespace(f"claim{unique}").scan_prefix(b"")
    )
    assert got == dict(items)
