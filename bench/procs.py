"""CPU time and memory of processes, read from ``/proc`` (Linux).

CPU seconds per item are a steadier measure than wall time on a shared machine: they show which
process pays for what (this process, the workers, DynamoDB Local, Redis). DynamoDB Local and
Redis are shared with other users of the machine, so their figures include others' work.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from types import TracebackType

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of ``pid`` in MB; NaN if unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return float("nan")


def find_pid(pattern: str) -> int | None:
    """The first process whose command line matches ``pattern`` (pgrep -f), if any."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    return pids[0] if pids else None


@dataclass
class CpuMeter:
    """``with CpuMeter({"workers": [pids], ...}) as m:`` then ``m.used`` = CPU s per group."""

    groups: dict[str, list[int]]
    used: dict[str, float] = field(default_factory=dict)
    _start: dict[int, float] = field(default_factory=dict)

    @classmethod
    def standard(cls, workers: list[int] = ()) -> CpuMeter:  # type: ignore[assignment]
        """This process, the given workers, and DynamoDB Local when it can be found."""
        groups = {"bench": [os.getpid()], "workers": list(workers)}
        java = find_pid("DynamoDBLocal.jar")
        if java:
            groups["dynamodb-local"] = [java]
        return cls(groups)

    def __enter__(self) -> CpuMeter:
        self._start = {p: cpu_seconds(p) for ps in self.groups.values() for p in ps}
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.used = {
            g: sum(cpu_seconds(p) - self._start[p] for p in ps) for g, ps in self.groups.items()
        }

    def per_item_us(self, n: int) -> dict[str, float]:
        return {g: s * 1e6 / n for g, s in self.used.items()}
