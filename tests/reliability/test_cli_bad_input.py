"""Bad input through the command line: ``python -m producers.cli load FILE --wait``.

Each case gets a clear one-line error and no traceback, the documented exit code (0 all
written; 3 finished with dead letters or rejected lines; 2 bad usage or input; 1 anything
else), and nothing partial lost: the good lines around a bad one are all written, the bad line
is counted and kept with its number and reason, and a refused file writes nothing at all.
All cases run at once (one CLI process each) against one worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from storage.errors import TableNotFoundError
from storage.limits import MAX_ITEM_BYTES, MAX_SORT_KEY_BYTES
from tests.faults import FaultProxy
from tests.reliability.conftest import Fleet, producer, read_back
from tests.support.pipeline import ROOT, PipelineEnv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GOOD_BEFORE, GOOD_AFTER = b'{"key": "a", "value": 1}\n', b'{"key": "c", "value": [3]}\n'
GOOD = {b"a": b"1", b"c": b"[3]"}


def around(bad: bytes) -> bytes:
    """A file whose line 2 is ``bad``, between two good lines."""
    return GOOD_BEFORE + bad + b"\n" + GOOD_AFTER


@dataclass
class Case:
    content: bytes | None  # None: the file does not exist
    exit: int
    error: str = ""  # piece of the one-line error (exit 2) or of line 2's rejection (exit 3)
    written: dict[bytes, bytes] = field(default_factory=lambda: dict(GOOD))
    args: tuple[str, ...] = ()
    user: str | None = None  # default: one of its own


UNICODE = ["ключ", "鍵", "🔑", "e\u0301", "naïve", "ﬁ"]
CASES = {
    "malformed_json": Case(around(b'{"key": "b", "value": '), 3, "not valid JSON"),
    "line_without_key": Case(around(b'{"value": 2}'), 3, "no key"),
    "empty_key": Case(around(b'{"key": "", "value": 2}'), 3, "empty key"),
    "key_over_1024_bytes": Case(
        around(json.dumps({"key": "k" * (MAX_SORT_KEY_BYTES + 1), "value": 2}).encode()),
        3,
        f"over the {MAX_SORT_KEY_BYTES}-byte limit",
    ),
    "value_too_large": Case(
        around(json.dumps({"key": "b", "value": "x" * MAX_ITEM_BYTES}).encode()),
        3,
        f"item over the {MAX_ITEM_BYTES}-byte limit",
    ),
    "non_utf8_bytes": Case(around(b'{"key": "b\xff\xfe", "value": 2}'), 3, "not UTF-8"),
    "line_of_50_mb": Case(
        around(b'{"key": "b", "value": "' + b"x" * (50 << 20) + b'"}'),
        3,
        "line is over 1048576 bytes",
    ),
    "csv_without_key_column": Case(
        b"name,value\na,1\n",
        2,
        "CSV has no column 'id'",
        {},
        ("--format", "csv", "--key-column", "id"),
    ),
    "invalid_namespace": Case(GOOD_BEFORE, 2, "invalid namespace name", {}, ("-n", "bad ns!")),
    "unicode_keys": Case(
        b"".join(
            json.dumps({"key": k, "value": i}, ensure_ascii=False).encode() + b"\n"
            for i, k in enumerate(UNICODE)
        ),
        0,
        written={k.encode(): b"%d" % i for i, k in enumerate(UNICODE)},
    ),
    "duplicate_keys": Case(
        b'{"key": "k", "value": 1}\n{"key": "j", "value": 2}\n'
        b'{"key": "k", "value": 3}\n{"key": "k", "value": "last"}\n',
        0,
        written={b"k": b'"last"', b"j": b"2"},
    ),
    "empty_file": Case(b"", 0, written={}),
    "missing_file": Case(None, 2, "no such file", {}),
    "empty_user_id": Case(GOOD_BEFORE, 2, "user id is 0 bytes", {}, user=""),
    "user_id_over_2048_bytes": Case(GOOD_BEFORE, 2, "user id is 2049 bytes", {}, user="u" * 2049),
}


@dataclass
class Run:
    ns: str
    user: str
    proc: subprocess.CompletedProcess[str]

    @property
    def job_id(self) -> str:
        return next(
            line.split()[2]
            for line in self.proc.stderr.splitlines()
            if line.startswith("load: job ")
        )


@pytest.fixture(scope="module")
def runs(rpenv: PipelineEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every case's CLI run, all launched at once while one worker serves them."""
    tmp = tmp_path_factory.mktemp("cli-input")
    rpenv.redis().flushdb()
    with FaultProxy(rpenv.dynamo.endpoint_url or "") as proxy:
        fleet = Fleet(rpenv, proxy)
        try:
            fleet.start(1, prefix="cli")
            procs = {}
            for name, case in CASES.items():
                path = tmp / f"{name}.{'csv' if '--format' in case.args else 'jsonl'}"
                if case.content is not None:
                    path.write_bytes(case.content)
                ns = f"cli-{name.replace('_', '-')}"
                user = f"user-{name}" if case.user is None else case.user
                args = ("-n", ns, *case.args) if "-n" not in case.args else case.args
                procs[name] = (
                    ns,
                    user,
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "producers.cli",
                            "load",
                            str(path),
                            *args,
                            "--user",
                            user,
                            "--wait",
                        ],
                        cwd=ROOT,
                        env=rpenv.env(),
                        text=True,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    ),
                )
            out = {}
            for name, (ns, user, p) in procs.items():
                stdout, stderr = p.communicate(timeout=120)
                out[name] = Run(
                    ns, user, subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
                )
            yield out
        finally:
            fleet.stop()


@pytest.mark.parametrize("name", list(CASES))
def test_cli_load(runs: dict[str, Run], rpenv: PipelineEnv, name: str) -> None:
    case, run = CASES[name], runs[name]
    stderr = run.proc.stderr
    assert run.proc.returncode == case.exit, stderr[-2000:]
    assert "Traceback" not in stderr
    if case.exit == 2:
        assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
        assert case.error in stderr, stderr
        assert "load: job" not in stderr  # refused before any job existed
        if case.user is None:
            with pytest.raises(TableNotFoundError):  # nothing was written anywhere
                rpenv.store(run.user).open_namespace(run.ns, create=False)
        return
    job = producer(rpenv).job(run.job_id)
    st = job.status()
    rejected = job.rejected_lines()
    if case.exit == 3:
        assert "1 input lines rejected" in stderr, stderr
        assert st.state == "partial" and st.rejected == 1, st
        assert len(rejected) == 1 and rejected[0][0] == 2, rejected
        assert case.error in rejected[0][1], rejected
    else:
        assert st.state == "succeeded" and st.rejected == 0 and not rejected, (st, rejected)
    assert st.items == st.written + st.superseded and st.dead_lettered == 0, st
    assert st.items == (0 if case.content is None else case.content.count(b"\n")) - st.rejected
    got = read_back(rpenv, run.user, run.ns) if case.written else {}
    assert got == case.written
    if name == "duplicate_keys":
        assert st.superseded == 2, st
