"""The limiter's buckets in process memory: the Lua script's twin, for tests and Redis-less runs.

It follows ``token_bucket.lua`` step by step (same fields, same order, same
arithmetic), under one lock instead of Redis's single thread, with an injected ``clock`` instead
of Redis ``TIME``. It is a real implementation, not a mock: ``tests/unit/test_limiter.py`` runs
one suite over both backends and checks they answer alike. Limits are per process, so it is
**not** a global limiter: use it where one process is the whole system (unit tests, a local
one-process loader), never for a fleet of workers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.limiter.bucket import BucketParams, BucketReply, Op
from worker.limiter.memory_shares import MemoryShares
from worker.limiter.shares import ShareParams, ShareReply


@dataclass(slots=True)
class _Bucket:
    tokens: float
    ts: float
    rate: float
    win: float
    used: float = 0.0
    thr: bool = False
    pu: float = 0.0
    pd: float = 0.0
    cut: float = 0.0
    nw: float = 0.0
    touched: float = 0.0
    cu: float = 0.0
    st: int = 0
    rp: int = 0
    rpt: float = 0.0
    kr: float = 0.0
    pk: float = 0.0
    rf: float = 0.0
    nf: float = 0.0
    pr: float = 0.0
    pn: float = 0.0
    cr: float = 0.0
    cn: float = 0.0
    bs: float = 0.0
    xa: float = 0.0
    xs: float = 0.0
    lr: float = 0.0
    qw: float = 0.0
    pq: float = 0.0
    cq: float = 0.0
    nt: int = 0
    nr: float = 0.0


class MemoryBucketBackend:
    """Per-table buckets in a dict; idle ones expire after ``params.ttl_seconds`` like keys."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._shares = MemoryShares(clock)

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
        with self._lock:
            now = self._clock()
            stored = self._buckets.get(table)
            if stored is not None and now - stored.touched >= params.ttl_seconds:
                stored = None
            p = params
            if stored is None:
                b = _Bucket(tokens=p.ceiling * p.burst_seconds, ts=now, rate=p.ceiling, win=now)
            else:
                b = _Bucket(
                    stored.tokens,
                    stored.ts,
                    stored.rate,
                    stored.win,
                    stored.used,
                    stored.thr,
                    stored.pu,
                    stored.pd,
                    stored.cut,
                    stored.nw,
                    cu=stored.cu,
                    st=stored.st,
                    rp=stored.rp,
                    rpt=stored.rpt,
                    kr=stored.kr,
                    pk=stored.pk,
                    rf=stored.rf,
                    nf=stored.nf,
                    pr=stored.pr,
                    pn=stored.pn,
                    cr=stored.cr,
                    cn=stored.cn,
                    bs=stored.bs,
                    xa=stored.xa,
                    xs=stored.xs,
                    lr=stored.lr,
                    qw=stored.qw,
                    pq=stored.pq,
                    cq=stored.cq,
                    nt=stored.nt,
                    nr=stored.nr,
                )
            b.rate = min(p.ceiling, max(p.floor, b.rate))
            b.tokens = min(b.rate * p.burst_seconds, b.tokens + max(0.0, now - b.ts) * b.rate)
            b.ts = max(b.ts, now)
            if b.lr > 0:  # quiet time (no replies) is left out of measured rates
                lull = p.min_span + ((b.pu + b.pr) / b.pn / b.rate if b.pn > 0 else 0.0)
                quiet = now - b.lr - lull
                if quiet > 0:
                    b.qw = min(now - b.win, b.qw + quiet)
                    b.cq = min(now - b.cut, b.cq + quiet)
                    b.lr = now - lull
            if now - b.win >= p.window:
                b.pk *= p.peak_decay
                span = now - b.win
                sent = b.used + b.rf
                share = b.rf / sent if sent > 0 else 0.0
                noise = b.rf > 0 and b.bs > 0 and share <= _noise_limit(b.bs, b.nf, p)
                if sent > 0 and (not b.thr or noise) and share < b.bs:
                    b.bs += (share - b.bs) * p.noise_follow
                    if b.bs < p.noise_min:
                        b.bs = 0.0
                if b.used > 0 and (not b.thr or noise):
                    if span <= 2 * p.window and not b.thr:
                        b.pk = max(b.pk, b.used / span)
                    step = p.alpha
                    if b.pk == 0:
                        step = min(p.max_step, p.alpha * 2**b.st)
                    elif b.rate * (1 - b.bs) < p.near_peak * b.pk:
                        half = (p.near_peak * b.pk / (b.rate * (1 - b.bs)) - 1) / 2
                        step = min(p.max_step, max(p.alpha * 2**b.st, half))
                    b.rate = min(p.ceiling, b.rate * (1 + step))
                    b.st = min(b.st + 1, 32)  # past the max step anyway; never an overflow
                elif b.thr:
                    b.st = 0
                if span <= 2 * p.window:
                    b.pu, b.pd, b.pr, b.pn, b.pq = b.used, span, b.rf, b.nf, b.qw
                else:
                    b.pu, b.pd, b.pr, b.pn, b.pq = 0.0, 0.0, 0.0, 0.0, 0.0
                b.win, b.used, b.thr, b.rf, b.nf, b.qw = now, 0.0, False, 0.0, 0.0, 0.0
            wait, did_cut, granted = 0.0, False, False
            if op == "acquire":
                limit = charge  # the longest wait accepted, or -1 for any
                if reserve > 0 and b.tokens - units >= -b.rate * (reserve + p.ahead) - 1e-9:
                    b.tokens -= units
                    granted = True
                    if b.nw > now:
                        b.nw += units / b.rate
                elif b.tokens >= -b.rate * p.ahead - 1e-9:
                    need = (units - b.tokens) / b.rate
                    if limit >= 0 and need > limit:
                        wait = need
                    else:
                        b.tokens -= units
                        granted = True
                        if b.tokens < 0:
                            wait = -b.tokens / b.rate
                        if b.nw > now:
                            b.nw += units / b.rate
                else:
                    drained = now + (-b.tokens / b.rate - p.ahead)
                    wake = min(max(b.nw, drained), drained + p.window)
                    wait = wake - now
                    whole = wait + units / b.rate + p.ahead
                    if limit >= 0 and whole > limit:
                        wait = whole
                    else:
                        b.nw = wake + units / b.rate
            elif op == "feedback":
                refused = -charge if throttled and charge < 0 else 0.0  # granted, not taken
                b.used += units
                b.cu += units
                b.rf += refused
                b.cr += refused
                b.nf += 1
                b.cn += 1
                b.lr = now
                if charge > 0 or not throttled:
                    b.tokens = min(b.rate * p.burst_seconds, b.tokens - charge)
                cuts = throttled
                if tag < 0:
                    b.kr = now
                elif throttled and tag > 0:
                    cuts = (
                        b.rp != 0
                        and b.rp != tag
                        and now - b.rpt <= p.window
                        and now - b.kr > 2 * p.window
                    )
                    b.rp, b.rpt = tag, now
                if throttled:
                    b.thr = True
                calls = b.pn + b.nf
                if cuts and b.bs > 0:  # no more than the noise refuses
                    share = (b.pr + b.rf) / (b.pu + b.pr + b.used + b.rf)
                    cuts = share > _noise_limit(b.bs, calls, p)
                since = now - b.cut - b.cq
                ready = b.cut > 0 and since > 0 and b.cn >= p.min_replies
                took = sent = 0.0
                if ready:
                    took, sent = b.cu / since, (b.cu + b.cr) / since
                if cuts and b.cut > 0 and not ready and calls >= p.min_replies:
                    cuts = False  # wait for the replies to the last cut
                strike = (  # slower than the table took, the same share refused, no plateau
                    cuts
                    and b.xs > 0
                    and ready
                    and since <= 2 * p.window
                    and b.cr > 0
                    and b.xa < b.xs
                    and sent <= p.slower * b.xs
                    and took / sent <= b.xa / b.xs * (1 + b.xs / sent) / 2
                    and _alike(1 - took / sent, 1 - b.xa / b.xs, b.cn, p)
                    and 1 - (took / sent + b.xa / b.xs) / 2 <= p.noise_max
                )
                if strike and b.nt > 0:  # the second cut in a row that cured nothing: noise
                    b.bs = max(b.bs, 1 - (took / sent + b.xa / b.xs) / 2)
                    b.rate = max(b.rate, min(p.ceiling, b.nr))
                    b.xs, b.nt, cuts = 0.0, 0, False
                    b.cut, b.cu, b.cr, b.cn, b.cq = now, 0.0, 0.0, 0.0, 0.0  # measure afresh
                if cuts:
                    span = b.pd - b.pq + (now - b.win) - b.qw
                    enough = span >= p.min_span and calls >= p.min_replies
                    measured = enough and b.pu + b.used > 0
                    target = b.rate * p.fallback_beta
                    if measured:
                        target = min(b.rate, (b.pu + b.used) / span / (1 - b.bs)) * p.beta
                    if ready and took > 0 and p.min_span <= since <= 2 * p.window:
                        target = min(b.rate, took / (1 - b.bs)) * p.beta
                        measured = True
                    target = max(p.floor, target)
                    if now - b.cut >= p.cut_window or (
                        measured and target < b.rate * p.fallback_beta
                    ):
                        b.xa, b.xs = took, sent
                        if strike:
                            b.nt = 1
                        else:
                            b.nt = 0
                            if now - b.cut > 2 * p.window:  # the first cut of a cascade
                                b.nr = b.rate
                        b.rate = target
                        b.tokens = min(b.tokens, 0.0) - b.rate * p.ahead
                        b.cut, did_cut, b.cu, b.st = now, True, 0.0, 0
                        b.cr, b.cn, b.cq = 0.0, 0.0, 0.0
            if op != "state":
                b.touched = now
                self._buckets[table] = b
            return BucketReply(wait, b.rate, b.tokens, did_cut, b.used, b.pu, b.pd, b.cut, granted)

    def share(
        self,
        table: str,
        op: str,
        user: int,
        units: float,
        rate: float,
        params: ShareParams,
        pressed_now: bool = False,
    ) -> ShareReply:
        """``fair_share.lua``'s twin (:class:`~worker.limiter.memory_shares.MemoryShares`)."""
        return self._shares.share(table, op, user, units, rate, params, pressed_now)


def _noise_limit(bs: float, replies: float, p: BucketParams) -> float:
    """The largest refused share of ``replies`` that is still the noise baseline ``bs``'s."""
    return bs * (1 + p.noise_margin) + p.noise_z * math.sqrt(bs * (1 - bs) / max(1.0, replies))


def _alike(a: float, b: float, replies: float, p: BucketParams) -> bool:
    """Whether two refused shares, the smaller measured over ``replies``, are the same noise."""
    return max(a, b) <= _noise_limit(min(a, b), replies, p)
