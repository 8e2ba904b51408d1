"""The limiter's interface: the adaptive token bucket's parameters and answers, and the
backend protocol its two implementations share (Redis + Lua, and the in-memory twin).

Units are write capacity units (WCU): an item write costs ceil(size / 1 KB); rates are WCU/s.
The constants below are the AIMD tuning; ``docs/design.md`` ("The rate limiter") says why each
has its value, and BENCHMARKS.md what they achieve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

WINDOW_SECONDS = 1.0
"""Measurement window: one clean window raises the rate once."""
CUT_WINDOW_SECONDS = 0.5
"""At most one cut per this span: longer than a round trip, so one congestion is one cut."""
BETA = 0.9
"""Cut to 90 % of the measured consumption: headroom for the table to refill its burst."""
FALLBACK_BETA = 0.7
"""Cut to 70 % of the rate when nothing was measured (the beta of botocore's CUBIC)."""
ALPHA = 0.02
"""Raise 2 % of the rate in the first clean window after a cut: a small overshoot. Below the
peak (:data:`NEAR_PEAK`), each clean window in a row doubles the step (4 %, 8 %, ...) up to
:data:`MAX_STEP`."""
MAX_STEP = 0.5
"""The largest raise per clean window (+50 %): once refusals have stopped, a rate cut to the
floor by a storm is back at a table's thousands of WCU/s in seconds, not minutes."""
NEAR_PEAK = 0.9
"""Below this share of the highest consumption a window without refusals has seen lately (the
peak), each clean window raises by half the way back to it, or by the doubled step if that is
more (at most :data:`MAX_STEP`); before any peak, the step doubles. Far below the peak (after a
storm, or a cut on a measure that read low) the table is known to take more; near it, 2 % a
window keeps the overshoot, and the writes refused with it, small."""
PEAK_DECAY = 0.995
"""The peak fades by 0.5 % a window, so a table whose capacity has really dropped stops being
raced back toward the old one within minutes."""
MIN_SPAN_SECONDS = 0.1
"""Less measured time than this is noise (a reply's latency): use the fallback cut. A gap
between replies longer than this (plus what the rate takes for an average reply) is quiet:
left out of every measured rate, so writers backing off, a stall or a load's end never make
one read low."""
MIN_REPLIES = 32
"""A measure rests on at least this many replies, or none is taken (the fallback cut): over a
few, the calls in flight at either end (and a partition's bucket that only some processes report
to yet) swing it low, and cuts on such measures compounded far below the table's capacity. While
there are replies enough to measure, a cut also waits for as many replies to the last one: the
calls in flight when it was made cannot compound it, and they say whether slowing down helped."""
SLOWER = 0.8
"""A cut is a test of what refuses. When the replies to it were sent at most this share of the
rate of the replies before it, if the same share of them was refused and the table took less by
about as much (no plateau at a capacity), the cut cured nothing; two such cuts in a row show
noise (one can be a measure inflated by the table's burst). A measured cut against noise
slows down by more than this; a smaller slowdown is too little to tell the two apart."""
NOISE_MARGIN = 0.25
"""A refused share is still the noise baseline's up to this much above it (relative), ..."""
NOISE_Z = 2.5
"""... plus this many standard errors of a share measured over as many replies as it was: a
window of a slow load holds few replies, and its share wanders widely around the noise's."""
NOISE_FOLLOW = 0.2
"""A window refused less than the baseline moves it this share of the way down to its own share:
noise that shrinks or stops is forgotten within seconds. Nothing moves it up but a cut that cured
nothing, so refusals that grow with the rate (a capacity) are never learnt as noise."""
NOISE_MIN = 0.01
"""A baseline that has fallen under this share is gone: the noise stopped."""
NOISE_MAX = 0.5
"""The largest refused share ever taken for noise: a storm that refuses more is slowed for,
whatever its cause."""
AHEAD_SECONDS = 0.05
"""Grants run at most this far ahead. Promises made before a cut go out at the old rate: ~50 ms
of them costs a few refused calls, not one per waiting thread. Also the pause after a cut."""
RETRY_FLOOR_SECONDS = 0.001
"""A refused caller waits at least this long before asking again: no busy loop on Redis."""
COALESCE_SECONDS = 0.05
"""While a table's rate stands at its ceiling (nothing has cut it: DynamoDB Local, on-demand,
or a configured limit that holds), workers report clean calls at most this often, summed: one
round trip per batch was half the limiter's cost, ~8 % of a worker's CPU (bench/). Once a cut
has happened, every call is reported at once again, so the next cut measures everything (the
other processes' pending reports included) — coalescing there cost ~10 % of utilisation."""
IDLE_TTL_SECONDS = 300.0
"""An untouched bucket expires after 5 minutes; the table then starts optimistic again."""

Op = Literal["acquire", "feedback", "state"]


@dataclass(frozen=True, slots=True)
class BucketParams:
    """What every script call needs besides the op: limits (WCU/s) and the adaptive constants."""

    ceiling: float
    floor: float
    burst_seconds: float = 1.0
    ttl_seconds: float = IDLE_TTL_SECONDS
    window: float = WINDOW_SECONDS
    cut_window: float = CUT_WINDOW_SECONDS
    beta: float = BETA
    fallback_beta: float = FALLBACK_BETA
    alpha: float = ALPHA
    min_span: float = MIN_SPAN_SECONDS
    ahead: float = AHEAD_SECONDS
    max_step: float = MAX_STEP
    near_peak: float = NEAR_PEAK
    peak_decay: float = PEAK_DECAY
    min_replies: float = MIN_REPLIES
    slower: float = SLOWER
    noise_margin: float = NOISE_MARGIN
    noise_z: float = NOISE_Z
    noise_follow: float = NOISE_FOLLOW
    noise_min: float = NOISE_MIN
    noise_max: float = NOISE_MAX

    def argv(self) -> list[str]:
        """ARGV[6..19] of the Lua script, in its order (:meth:`argv_evidence`: ARGV[21..])."""
        return [
            repr(self.ceiling),
            repr(self.floor),
            repr(self.burst_seconds),
            str(max(1, round(self.ttl_seconds * 1000))),
            repr(self.window),
            repr(self.cut_window),
            repr(self.beta),
            repr(self.fallback_beta),
            repr(self.alpha),
            repr(self.min_span),
            repr(self.ahead),
            repr(self.max_step),
            repr(self.near_peak),
            repr(self.peak_decay),
        ]

    def argv_evidence(self) -> list[str]:
        """ARGV[21..27] of the Lua script: the evidence a cut needs and the noise baseline."""
        return [
            repr(float(self.min_replies)),
            repr(self.slower),
            repr(self.noise_margin),
            repr(self.noise_z),
            repr(self.noise_follow),
            repr(self.noise_min),
            repr(self.noise_max),
        ]


@dataclass(frozen=True, slots=True)
class Grant:
    """Answer of ``RateLimiter.try_acquire``: charged or not, and how long to wait."""

    granted: bool
    wait: float


@dataclass(frozen=True, slots=True)
class BucketReply:
    """One script answer. ``tokens`` < 0 is debt being paid off by sleeping callers.

    For acquire: ``granted`` means the units are charged, spend them after ``wait`` seconds;
    otherwise nothing was charged, ask again after ``wait`` seconds.
    """

    wait: float
    rate: float
    tokens: float
    cut: bool
    window_units: float
    prev_units: float
    prev_span: float
    last_cut: float
    granted: bool = False

    @classmethod
    def parse(cls, raw: Sequence[str | bytes]) -> BucketReply:
        v = [float(x) for x in raw]
        return cls(v[0], v[1], v[2], v[3] != 0.0, v[4], v[5], v[6], v[7], v[8] != 0.0)


class BucketBackend(Protocol):
    """Where buckets live: :mod:`worker.limiter.redis_backend` (shared by every process:
    production) or :mod:`worker.limiter.memory_backend` (one process: tests, local runs)."""

    def run(
        self,
        table: str,
        op: Op,
        params: BucketParams,
        *,
        units: float = 0.0,
        throttled: bool = False,
        charge: float = 0.0,
        tag: int = 0,
        reserve: float = 0.0,
    ) -> BucketReply:
        """Apply ``op`` to the table's bucket atomically and return its state after it.
        ``charge``: for feedback, WCU charged beyond the grant (for a throttled call, what was
        granted and not consumed is what was refused); for acquire, the longest wait the caller
        accepts (-1: any), past which nothing is granted or booked. ``tag``: for a
        throttled feedback, the partition a refusal without a reason came from (0: none); it
        cuts this bucket only if another partition was refused within the last window and no
        refusal named a key range lately. A negative tag records a key range's refusal.
        ``reserve`` > 0: an acquire of a single write, granted at once while the bucket's debt
        stays within that many seconds of the rate (:mod:`worker.limiter.shares`)."""
        ...
