"""Loads from a local S3 (moto's server), compressed, several objects as one job, DynamoDB-JSON
lines, and a plan whose WCU the load then consumes: each through the real queue and workers,
compared with the store."""

from __future__ import annotations

import base64
import bz2
import csv
import gzip
import io
import json
import subprocess
import sys
from typing import Any

import pytest
import zstandard

from producers import Producer
from storage.errors import InputError
from tests.support.pipeline import ROOT, PipelineEnv, Worker


def _compact(v: object) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _cli(penv: PipelineEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _job_of(proc: subprocess.CompletedProcess[str]) -> str:
    return next(x.split()[-1] for x in proc.stderr.splitlines() if x.startswith("load: job"))


def _stored(penv: PipelineEnv, user: str, ns: str) -> dict[bytes, bytes]:
    kv = penv.store(user).open_namespace(ns, create=False)
    return dict(kv.scan_prefix(b""))


def test_gzip_jsonl_object_loads_through_the_queue(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    expected = {f"k{i:05d}".encode(): _compact({"i": i, "s": "é" * (i % 50)}) for i in range(3000)}
    lines = [json.dumps({"key": k.decode(), "value": json.loads(v)}) for k, v in expected.items()]
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    client.put_object(Bucket=bucket, Key="in/items.jsonl.gz", Body=body)
    ns, user = f"s3gz{unique}", f"u-{unique}"

    proc = _cli(
        penv, "load", f"s3://{bucket}/in/items.jsonl.gz", "-n", ns, "--user", user, "--wait"
    )

    assert proc.returncode == 0, proc.stderr
    assert _stored(penv, user, ns) == expected


def test_zstd_csv_object_loads_through_the_api(
    penv: PipelineEnv,
    workers: list[Worker],
    producer: Producer,
    s3_bucket: tuple[Any, str],
    unique: str,
) -> None:
    client, bucket = s3_bucket
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["id", "name", "city"])
    rows = [[f"id-{i}", f"name {i}", "Zürich"] for i in range(1500)]
    w.writerows(rows)
    body = zstandard.ZstdCompressor().compress(out.getvalue().encode())
    client.put_object(Bucket=bucket, Key="people.csv.zst", Body=body)
    ns, user = f"s3zst{unique}", f"u-{unique}"

    job = producer.load_file(
        f"s3://{bucket}/people.csv.zst", ns, user, format="csv", key_column="id"
    )
    st = job.wait(timeout=180)

    assert st.state == "succeeded" and st.items == 1500
    expected = {r[0].encode(): _compact({"id": r[0], "name": r[1], "city": r[2]}) for r in rows}
    assert _stored(penv, user, ns) == expected


def test_a_prefix_of_three_objects_is_one_job_last_line_wins_in_listed_order(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    parts = {
        "exports/part-1.jsonl.gz": [{"key": f"a{i}", "value": 1} for i in range(400)],
        "exports/part-2.jsonl.bz2": [{"key": f"b{i}", "value": 2} for i in range(400)]
        + [{"key": "a7", "value": "from part 2"}],
        "exports/part-3.jsonl": [{"key": f"c{i}", "value": 3} for i in range(400)]
        + [{"key": "a7", "value": "from part 3"}],
    }
    for key, recs in parts.items():
        text = "\n".join(json.dumps(r) for r in recs) + "\n"
        if key == "exports/part-2.jsonl.bz2":
            text = text.replace('{"key": "b3", "value": 2}', "{broken")  # line 4 of part 2
        raw = text.encode()
        body = gzip.compress(raw) if key.endswith(".gz") else raw
        body = bz2.compress(raw) if key.endswith(".bz2") else body
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key="other/ignored.jsonl", Body=b'{"key":"x","value":0}\n')
    ns, user = f"s3pre{unique}", f"u-{unique}"

    proc = _cli(penv, "load", f"s3://{bucket}/exports/", "-n", ns, "--user", user, "--wait")

    assert proc.returncode == 3, proc.stderr  # finished, with a rejected line
    job = _job_of(proc)
    status = json.loads(_cli(penv, "status", job, "--json").stdout)
    assert status["items"] == 400 + 400 + 400 + 2 - 1
    assert status["rejected"] == 1
    assert status["rejected_lines"] == [
        [4, f"s3://{bucket}/exports/part-2.jsonl.bz2: not valid JSON "
         "(Expecting property name enclosed in double quotes at column 2)"]
    ]  # fmt: skip
    stored = _stored(penv, user, ns)
    assert len(stored) == 1199
    assert stored[b"a7"] == _compact("from part 3")
    assert stored[b"a8"] == b"1" and stored[b"c0"] == b"3" and b"b3" not in stored

    again = _cli(penv, "load", f"s3://{bucket}/exports/", "-n", ns, "--resume", job)
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        .splitlines()[0]
        .startswith("error: Resume: 3 inputs: only a load of one")
    )


def _ddb_export(n: int) -> bytes:
    lines = []
    for i in range(n):
        item = {
            "PK": {"S": f"user#{i}"},
            "n": {"N": str(i * 7)},
            "blob": {"B": base64.b64encode(bytes([i % 256]) * 3).decode()},
            "tags": {"SS": ["a", "b"]},
            "m": {"M": {"x": {"BOOL": True}, "y": {"NULL": True}}},
        }
        lines.append(json.dumps({"Item": item}))
    return ("\n".join(lines) + "\n").encode()


def test_a_dynamodb_json_export_file_loads_whole_items(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    body = gzip.compress(_ddb_export(800))
    client.put_object(Bucket=bucket, Key="AWSDynamoDB/0001/data/abc.json.gz", Body=body)
    ns, user = f"s3ddb{unique}", f"u-{unique}"

    proc = _cli(
        penv,
        "load",
        f"s3://{bucket}/AWSDynamoDB/0001/data/*.json.gz",
        "-n",
        ns,
        "--user",
        user,
        "--format",
        "ddb-json",
        "--wait",
    )

    assert proc.returncode == 0, proc.stderr
    stored = _stored(penv, user, ns)
    assert len(stored) == 800
    item = json.loads(stored[b"user#5"])
    assert item == {
        "PK": {"S": "user#5"},
        "n": {"N": "35"},
        "blob": {"B": base64.b64encode(b"\x05" * 3).decode()},
        "tags": {"SS": ["a", "b"]},
        "m": {"M": {"x": {"BOOL": True}, "y": {"NULL": True}}},
    }


def test_plan_wcu_equals_the_wcu_the_load_consumed(
    penv: PipelineEnv, workers: list[Worker], s3_bucket: tuple[Any, str], unique: str
) -> None:
    client, bucket = s3_bucket
    # Values from a few bytes to ~5 KB, and keys repeated within and across segments.
    recs = [{"key": f"k{i % 2500}", "value": "v" * ((i * 37) % 5000)} for i in range(4000)]
    body = gzip.compress(("\n".join(json.dumps(r) for r in recs) + "\n").encode())
    client.put_object(Bucket=bucket, Key="plan/items.jsonl.gz", Body=body)
    url = f"s3://{bucket}/plan/items.jsonl.gz"
    ns, user = f"s3plan{unique}", f"u-{unique}"

    planned = _cli(penv, "plan", url, "-n", ns, "--user", user, "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    loaded = _cli(penv, "load", url, "-n", ns, "--user", user, "--wait")
    assert loaded.returncode == 0, loaded.stderr
    status = json.loads(_cli(penv, "status", _job_of(loaded), "--json").stdout)

    assert plan["items"] == status["items"] == 4000
    assert plan["wcu"] > 4000  # sizes over 1 KB count more than one unit
    assert abs(status["consumed_wcu"] - plan["wcu"]) <= 0.01 * plan["wcu"]
    assert plan["cost_usd"] == round(plan["wcu"] / 1e6 * 0.625, 6)


def test_a_many_input_load_that_stops_ends_incomplete_never_succeeded(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, s3_bucket: tuple[Any, str],
    unique: str,
) -> None:  # fmt: skip
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="p1.jsonl", Body=b'{"key":"a","value":1}\n' * 3)
    ns, user = f"s3stop{unique}", f"u-{unique}"

    with pytest.raises(InputError) as info:
        producer.load_file([f"s3://{bucket}/p1.jsonl", f"s3://{bucket}/gone.jsonl"], ns, user)

    assert "cannot open s3://" in str(info.value) and "gone.jsonl" in str(info.value)
    (note,) = info.value.__notes__
    assert "does not resume" in note
    job = producer.job(note.split()[1])
    st = job.wait(timeout=60)
    assert st.state == "incomplete" and "gone.jsonl" in st.stopped
