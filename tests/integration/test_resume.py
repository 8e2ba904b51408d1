"""Honest ends and resumption of file loads, on real Redis with an enqueuer that records what
it sends (no workers: these tests are about what the producer plans and sends).

The yardstick is an uninterrupted load of the same file: an interrupted load plus its resume
must send exactly the same segments (ids and items) and plan the same totals.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline import keys
from pipeline.config import PipelineConfig
from pipeline.messages import Op
from pipeline.payloads import PayloadStore
from pipeline.states import JobState
from producers import Producer
from producers.session import Progress
from storage import DynamoConfig
from storage.errors import InputError, InvalidKeyError, NotResumableError, ProducerFencedError
from tests.integration.conftest import SCRATCH_REDIS_URL
from tests.integration.test_segment_runner import ListEnqueuer


class Interrupt(KeyboardInterrupt):
    """Ctrl-C, raised by a progress callback half-way through a load."""


def _producer(
    r: redis.Redis[Any], dynamo: DynamoConfig, enq: ListEnqueuer | None = None, **cfg: Any
) -> tuple[Producer, ListEnqueuer]:
    enq = enq or ListEnqueuer(PayloadStore(r, ttl=600))
    pcfg = PipelineConfig(
        redis_url=SCRATCH_REDIS_URL, segment_size=cfg.pop("segment_size", 7), **cfg
    )
    return Producer(dynamo, pcfg, redis_client=r, enqueue=enq, partitions=4), enq


def _jsonl(path: Path, n: int = 400) -> Path:
    """``n`` lines: keys repeat (the last line per key must win), every 37th line is bad."""
    with path.open("w") as f:
        for i in range(n):
            if i % 37 == 36:
                f.write("{not json\n")
            else:
                f.write(json.dumps({"key": f"k{i % 150}", "value": {"i": i}}) + "\n")
    return path


def _newest_job(r: redis.Redis[Any]) -> str:
    return str(r.zrange(keys.jobs_index(), -1, -1)[0].decode())


def _interrupted(p: Producer, path: Any, user: str = "u", items: int = 150, **kw: Any) -> str:
    """Load ``path`` into ``ns`` and press Ctrl-C once ``items`` are enqueued; the job id."""
    with pytest.raises(Interrupt):
        p.load_file(path, "ns", user, on_progress=_interrupt_after(items), **kw)
    return _newest_job(p.ledger.r)


def _sent(enq: ListEnqueuer) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = {}
    for seg, _ in enq.segments:
        assert seg.ops is not None
        assert out.setdefault(seg.seg, seg.ops) == seg.ops, f"{seg.seg} sent twice, differently"
    return out


def _interrupt_after(items: int) -> Any:
    def on_progress(p: Progress) -> None:
        if p.items >= items:
            raise Interrupt

    return on_progress


def _baseline(r: redis.Redis[Any], dynamo: DynamoConfig, path: Path, **kw: Any) -> Any:
    p, enq = _producer(r, dynamo)
    st = p.load_file(path, "ns", "u", **kw).status()
    return st, _sent(enq)


def test_an_interrupted_load_is_incomplete_and_its_resume_sends_what_one_load_would(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")
    want, want_segs = _baseline(r, dynamo_config, path)
    p, enq = _producer(r, dynamo_config)
    with pytest.raises(Interrupt) as caught:
        p.load_file(path, "ns", "u", on_progress=_interrupt_after(150))
    job_id = _newest_job(r)
    st = p.job(job_id).status()
    assert st.state is JobState.INCOMPLETE and st.stopped == "interrupted (Ctrl-C)"
    assert 0 < st.lines < 400 and st.items < want.items
    assert f"job {job_id} is incomplete" in caught.value.__notes__[0]
    assert f"--resume {job_id}" in caught.value.__notes__[0]
    assert st.rejected == 0  # counted once, when the load ends

    job = p.load_file(path, "ns", "u", resume=job_id)
    assert job.id == job_id
    got = job.status()
    assert (got.items, got.rejected, got.segments_planned) == (
        want.items,
        want.rejected,
        want.segments_planned,
    )
    assert _sent(enq) == want_segs
    assert [n for n, _ in job.rejected_lines()] == [n for n in range(37, 401, 37)]


def test_a_producer_killed_between_planning_and_sending_a_segment_is_resumed_whole(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")
    _, want_segs = _baseline(r, dynamo_config, path)

    class Killed(BaseException):
        pass

    class DiesOnTheTenth(ListEnqueuer):
        def segment(self, seg: Any, countdown: float = 0.0) -> None:
            if len(self.segments) == 9:
                raise Killed  # planned in the ledger, never staged nor sent
            super().segment(seg, countdown)

    p, enq = _producer(r, dynamo_config, DiesOnTheTenth(PayloadStore(r, ttl=600)))
    with pytest.raises(Killed):
        p.load_file(path, "ns", "u")
    job_id = _newest_job(r)
    p2, enq2 = _producer(r, dynamo_config)
    p2.load_file(path, "ns", "u", resume=job_id)
    assert {**_sent(enq), **_sent(enq2)} == want_segs
    assert p2.job(job_id).status().items == sum(len(v) for v in want_segs.values())


def test_a_csv_load_resumes_with_its_header(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n" + "".join(f"r{i % 90},n{i}\n" for i in range(300)))
    kw: dict[str, Any] = {"format": "csv", "key_column": "id"}
    want, want_segs = _baseline(r, dynamo_config, path, **kw)
    p, enq = _producer(r, dynamo_config)
    job_id = _interrupted(p, path, items=120, **kw)
    assert p.job(job_id).status().lines > 1
    got = p.load_file(path, "ns", "u", resume=job_id, **kw).status()
    assert (got.items, got.rejected) == (want.items, want.rejected)
    assert _sent(enq) == want_segs


def test_stdin_resumes_when_the_same_bytes_come_again_and_only_then(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path, monkeypatch: Any
) -> None:
    data = _jsonl(tmp_path / "in.jsonl").read_bytes()
    p, _ = _producer(r, dynamo_config)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(Interrupt):
        p.load_file("-", "ns", "u", on_progress=_interrupt_after(150))
    job_id = _newest_job(r)
    other = data.replace(b'"k1"', b'"kX"', 1)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(other)))
    with pytest.raises(NotResumableError, match="not the same file"):
        p.load_file("-", "ns", "u", resume=job_id)
    assert p.job(job_id).status().state is JobState.INCOMPLETE  # refused before taking over
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    st = p.load_file("-", "ns", "u", resume=job_id).status()
    want, _ = _baseline(r, dynamo_config, tmp_path / "in.jsonl")
    assert (st.items, st.rejected) == (want.items, want.rejected)


def test_resume_refuses_another_file_user_namespace_or_a_finished_job(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")
    p, _ = _producer(r, dynamo_config)
    job_id = _interrupted(p, path)
    longer = tmp_path / "longer.jsonl"
    longer.write_bytes(path.read_bytes() + b'{"key":"z","value":1}\n')
    altered = tmp_path / "altered.jsonl"
    altered.write_bytes(path.read_bytes().replace(b'"k0"', b'"q0"', 1))
    for args, kw, why in [
        ((longer, "ns", "u"), {}, "not the same file"),
        ((altered, "ns", "u"), {}, "not the same file"),
        ((path, "ns", "someone-else"), {}, "not a load of user"),
        ((path, "other", "u"), {}, "namespace"),
        ((path, "ns", "u"), {"format": "csv", "key_column": "key"}, "format"),
    ]:
        with pytest.raises(NotResumableError, match=why):
            p.load_file(*args, resume=job_id, **kw)
    p.load_file(path, "ns", "u", resume=job_id)
    with pytest.raises(NotResumableError, match="read to the end"):
        p.load_file(path, "ns", "u", resume=job_id)
    fresh = p.load_file(path, "ns", "u")
    fresh.status()
    with pytest.raises(NotResumableError):
        p.load_file(path, "ns", "u", resume=fresh.id)


def test_a_producer_whose_job_was_taken_from_it_stops_without_counting(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")
    p, _ = _producer(r, dynamo_config)

    def taken(progress: Progress) -> None:
        if progress.items >= 100:  # as if it stalled past its timeout and was marked abandoned
            r.hset(keys.job(progress.job), "state", JobState.ABANDONED)
            r.hdel(keys.job(progress.job), "producer")

    with pytest.raises(ProducerFencedError):
        p.load_file(path, "ns", "u", on_progress=taken)
    job_id = _newest_job(r)
    st = p.job(job_id).status()
    assert st.state is JobState.ABANDONED and st.items < 400
    assert not r.hget(keys.job(job_id), "sealed")


def test_an_iterable_that_raises_leaves_its_job_incomplete_never_running_or_succeeded(
    r: redis.Redis[Any], dynamo_config: DynamoConfig
) -> None:
    p, _ = _producer(r, dynamo_config)

    def items() -> Iterator[tuple[bytes, bytes]]:
        for i in range(50):
            yield b"k%d" % i, b"v"
        raise OSError("disk went away")

    with pytest.raises(OSError) as caught:
        p.load("ns", items(), "u")
    job_id = _newest_job(r)
    st = p.job(job_id).status()
    assert st.state is JobState.INCOMPLETE
    assert st.stopped == "its input raised OSError: disk went away"
    assert "items enqueued" in caught.value.__notes__[0]


def test_strict_refuses_before_any_job_exists_what_the_load_would_reject(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    p, enq = _producer(r, dynamo_config)
    export_like = tmp_path / "ns.jsonl"
    export_like.write_text(
        '{"key": "a", "value": 1}\n'
        '{"kind": "item", "namespace": "ok", "key": "b", "value": 2}\n'
        + json.dumps({"kind": "item", "namespace": "n" * 250, "key": "c", "value": 3})
        + "\n"
    )
    with pytest.raises(InputError) as caught:
        p.load_file(export_like, None, "u", strict=True)
    assert "line 1: no namespace" in str(caught.value) and "line 3:" in str(caught.value)
    assert r.zcard(keys.jobs_index()) == 0 and enq.segments == []
    with pytest.raises(InvalidKeyError):  # a user id DynamoDB could never store
        p.load_file(export_like, "ns", "u" * 2049, strict=True)
    assert r.zcard(keys.jobs_index()) == 0
    # Without --strict the same lines are rejected lines of a job, never an error half-way.
    st = p.load_file(export_like, None, "u").status()
    assert (st.items, st.rejected) == (1, 2)


def test_the_job_names_its_file_for_the_resume_hint(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / f"{uuid.uuid4().hex}.jsonl", 60)
    p, _ = _producer(r, dynamo_config)
    assert p.load_file(path, "ns", "u").status().extra["file"] == str(path)


def test_schema_lines_read_before_an_interrupt_are_restored_and_stay_so_after_resume(
    r: redis.Redis[Any], schema_config: DynamoConfig, tmp_path: Path
) -> None:
    from storage.schema import DynamoSchemaStore

    user = f"u{uuid.uuid4().hex[:8]}"
    path = tmp_path / "with-schema.jsonl"
    schema = {"kind": "schema", "name": "people", "body": {"fields": ["name"]}, "version": 3}
    path.write_text(json.dumps(schema) + "\n" + _jsonl(tmp_path / "items.jsonl").read_text())
    p, _ = _producer(r, schema_config)
    with pytest.raises(Interrupt):
        p.load_file(path, "ns", user, force=True, on_progress=_interrupt_after(150))
    job_id = _newest_job(r)
    store = DynamoSchemaStore(schema_config, user)
    assert store.get_schema("people") is not None  # restored before the first checkpoint
    p.load_file(path, "ns", user, force=True, resume=job_id)  # an export without its trailer
    got = store.get_schema("people")
    assert got is not None and got.body == {"fields": ["name"]} and got.version == 3


def test_a_killed_producers_never_staged_segment_is_taken_back_so_its_job_can_finish(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")

    class DiesOnTheFifth(ListEnqueuer):
        def segment(self, seg: Any, countdown: float = 0.0) -> None:
            if len(self.segments) == 4:
                raise KeyboardInterrupt  # after planning the fifth, before staging it
            super().segment(seg, countdown)

    p, enq = _producer(r, dynamo_config, DiesOnTheFifth(PayloadStore(r, ttl=600)))
    with pytest.raises(KeyboardInterrupt):
        p.load_file(path, "ns", "u")
    job_id = _newest_job(r)
    st = p.job(job_id).status()
    sent = _sent(enq)
    assert (st.items, st.segments_planned) == (sum(map(len, sent.values())), len(sent))
    for seg in sent:  # what was sent is recorded: the stopped job is finished
        p.ledger.finish(job_id, seg, written=len(sent[seg]))
    assert p.job(job_id).status().finished
    assert p.ledger.producing.queued_bytes() == 0


def test_a_csv_whose_header_follows_blank_lines_and_spans_two_lines_resumes(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(
        b"\xef\xbb\xbf\n\n"
        + b'id,"full\nname"\n'
        + b"".join(b"r%d,n%d\n" % (i % 90, i) for i in range(300))
    )
    kw: dict[str, Any] = {"format": "csv", "key_column": "id"}
    want, want_segs = _baseline(r, dynamo_config, path, **kw)
    p, enq = _producer(r, dynamo_config)
    job_id = _interrupted(p, path, items=120, **kw)
    got = p.load_file(path, "ns", "u", resume=job_id, **kw).status()
    assert (got.items, got.rejected) == (want.items, want.rejected)
    assert _sent(enq) == want_segs


def test_resume_refuses_other_segmenting_settings_before_taking_the_job_over(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")
    p, _ = _producer(r, dynamo_config)
    job_id = _interrupted(p, path)
    other, _ = _producer(r, dynamo_config, segment_size=9)
    with pytest.raises(NotResumableError, match="segment size"):
        other.load_file(path, "ns", "u", resume=job_id)
    assert p.job(job_id).status().state is JobState.INCOMPLETE


def test_a_producer_stopped_after_its_job_was_taken_says_so(
    r: redis.Redis[Any], dynamo_config: DynamoConfig, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "in.jsonl")
    p, _ = _producer(r, dynamo_config)

    def taken_then_interrupted(progress: Progress) -> None:
        r.hdel(keys.job(progress.job), "producer")
        raise Interrupt

    with pytest.raises(Interrupt) as caught:
        p.load_file(path, "ns", "u", on_progress=taken_then_interrupted)
    assert "no longer this producer's" in caught.value.__notes__[0]
