"""The pipeline's vocabularies are closed enums whose values are what travels (Redis, JSON,
Lua, metric labels), and the ledger's Lua script spells the job states the same way."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline import ids
from pipeline.messages import Plan, Segment
from pipeline.states import FINAL_STATES, JobKind, JobState, Outcome, PlanKind, Target
from pipeline.status import JobStatus

LEDGER_LUA = Path(__file__).resolve().parents[2] / "pipeline" / "lua" / "ledger.lua"


def test_the_ledger_script_spells_the_job_states_as_the_enum() -> None:
    lua = LEDGER_LUA.read_text(encoding="utf-8")
    quoted = set(re.findall(r"'([a-z_]+)'", lua))
    states = {s.value for s in JobState}
    assert states <= quoted, states - quoted
    finals = re.search(r"if state == (.+?) then return end", lua)
    assert finals is not None
    assert set(re.findall(r"'([a-z]+)'", finals.group(1))) == {s.value for s in FINAL_STATES}


def test_members_travel_as_their_plain_values() -> None:
    assert (
        json.dumps([JobState.RUNNING, Outcome.RESENT, Target.KV]) == '["running", "resent", "kv"]'
    )
    assert JobState("partial") is JobState.PARTIAL and JobState.PARTIAL.final
    assert not JobState.RUNNING.final
    # A plan's kind names the job kind of the same name.
    assert {JobKind(k).value for k in PlanKind} == {k.value for k in PlanKind}


def test_plain_strings_become_members_when_built_directly() -> None:
    seg = Segment(job="j", seg="s", target="kv", ns="n", user="u", ops=[])  # type: ignore[arg-type]
    assert seg.target is Target.KV and seg.letter_ns == "n"
    assert Plan("j", "reset_user", "u").what is PlanKind.RESET_USER  # type: ignore[arg-type]
    assert JobStatus(id="j", state="succeeded").finished  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Plan("j", "drop_everything", "u")  # type: ignore[arg-type]


def test_messages_refuse_values_outside_the_vocabulary() -> None:
    seg = Segment(job="j", seg="s", target=Target.KV, ns="n", user="u", ops=[(b"k", b"v")])
    assert Segment.from_message(seg.to_message()).target is Target.KV
    with pytest.raises(ValueError):
        Segment.from_message({**seg.to_message(), "target": "elsewhere"})
    with pytest.raises(ValueError):
        Plan.from_message({"job": "j", "what": "drop_everything", "user": "u"})


def test_segment_ids_are_built_in_one_place() -> None:
    assert ids.segment("notes", 3, 7) == "notes/p3.7" and ids.partition("notes", 3) == "notes/3"
    assert ids.requeued(ids.requeued("notes/p3.7", 1), 2) == "notes/p3.7.r1.r2"
    assert [ids.single_write(a) for a in (0, 1, 2)] == ["w", "w.r1", "w.r2"]
    assert (ids.planned_scope(2), ids.planned_scope(2, 1)) == ("d2:", "d2x1:")
    assert ids.requeued("s", 1, holder=3, rerun=2) == "s.r1h3x2"
    seg = Segment(job="j", seg="notes/p0.0", target=Target.KV, ns="notes", user="u", ops=[])
    assert (
        seg.child([]).seg == "notes/p0.0.r1" and seg.child([]).child([]).seg == "notes/p0.0.r1.r2"
    )
