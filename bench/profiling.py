"""Where the time goes: py-spy sampling of a running process, summarised as text.

:class:`Spy` runs ``py-spy record --gil --format raw`` against a process id (a worker, or this
process) while a block runs; ``--gil`` keeps only samples of the thread holding the GIL, so the
result is Python CPU time, not threads waiting on sockets. :func:`summary` turns the collapsed
stacks into the top functions by self and by inclusive time. py-spy needs ptrace rights (root,
or ``kernel.yama.ptrace_scope=0``); without them, or without py-spy installed, the profile is
simply absent and the report says so.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

RATE_HZ = 200


def py_spy() -> str | None:
    """Path of the py-spy executable (next to this interpreter first), or None."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


class Spy:
    """``with Spy(pid, out):`` samples ``pid`` for the duration of the block."""

    def __init__(self, pid: int, out: Path, *, subprocesses: bool = False) -> None:
        self.pid, self.out, self.subprocesses = pid, out, subprocesses
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Spy:
        exe = py_spy()
        if exe is None:
            return self
        cmd = [
            exe,
            "record",
            "--pid",
            str(self.pid),
            "--format",
            "raw",
            "-o",
            str(self.out),
            "--rate",
            str(RATE_HZ),
            "--nonblocking",
            "--gil",
        ]
        if self.subprocesses:
            cmd.append("--subprocesses")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def ok(self) -> bool:
        return self.out.exists() and self.out.stat().st_size > 0


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({tail})"


def summary(path: Path, top: int = 12) -> str:
    """Top functions by self and by inclusive share of the samples, as a Markdown code block.

    Inclusive shares count a function once per sample, whatever its recursion depth; thread
    entry frames (present in every sample) are dropped."""
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return "(no samples)"
    boring = ("Thread.", "_bootstrap", "_worker (concurrent", "_WorkItem.run", "<module>")
    lines = [f"{total} samples at {RATE_HZ} Hz (GIL holder only)", "", "self time:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in self_c.most_common(top)]
    lines += ["", "inclusive time:"]
    shown = [(f, c) for f, c in incl.most_common(top * 4) if not f.startswith(boring)]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in shown[:top]]
    return "```\n" + "\n".join(lines) + "\n```"
