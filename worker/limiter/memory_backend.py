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


class MemoryBucketBackend:
    """Per-table buckets in a dict; idle ones expire after ``params.ttl_seconds`` like keys."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        # table -> (last written, user -> [tokens, ts, c, seen, pressed]): fair_share.lua's hash
        self._shares: dict[str, tuple[float, dict[str, list[float]]]] = {}

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
                )
            b.rate = min(p.ceiling, max(p.floor, b.rate))
            b.tokens = min(b.rate * p.burst_seconds, b.tokens + max(0.0, now - b.ts) * b.rate)
            b.ts = max(b.ts, now)
            if now - b.win >= p.window:
                b.pk *= p.peak_decay
                if b.used > 0 and not b.thr:
                    if now - b.win <= 2 * p.window:
                        b.pk = max(b.pk, b.used / (now - b.win))
                    step = p.alpha
                    if b.pk == 0 or b.rate < p.near_peak * b.pk:
                        step = min(p.max_step, p.alpha * 2**b.st)
                    b.rate = min(p.ceiling, b.rate * (1 + step))
                    b.st = min(b.st + 1, 32)  # past the max step anyway; never an overflow
                elif b.thr:
                    b.st = 0
                b.pu, b.pd = (b.used, now - b.win) if now - b.win <= 2 * p.window else (0.0, 0.0)
                b.win, b.used, b.thr = now, 0.0, False
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
                b.used += units
                b.cu += units
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
                if cuts:
                    span = b.pd + (now - b.win)
                    measured = span >= p.min_span and b.pu + b.used > 0
                    target = b.rate * p.fallback_beta
                    if measured:
                        target = min(b.rate, (b.pu + b.used) / span) * p.beta
                    since = now - b.cut
                    if b.cut > 0 and p.min_span <= since <= 2 * p.window and b.cu > 0:
                        target = min(b.rate, b.cu / since) * p.beta
                        measured = True
                    target = max(p.floor, target)
                    if now - b.cut >= p.cut_window or (
                        measured and target < b.rate * p.fallback_beta
                    ):
                        b.rate = target
                        b.tokens = min(b.tokens, 0.0) - b.rate * p.ahead
                        b.cut, did_cut, b.cu, b.st = now, True, 0.0, 0
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
        """``fair_share.lua``, step by step."""
        with self._lock:
            now, me, p = self._clock(), str(user), params
            touched, users = self._shares.get(table, (now, {}))
            if now - touched >= p.ttl_seconds:
                users = {}
            rates, stale = [], []
            tokens, ts, c, pressed, known = 0.0, now, 0.0, 0.0, False
            for who, (a, b, r, seen, pr) in users.items():
                if now - seen > p.active:
                    if who != me:
                        stale.append(who)
                    continue
                r *= math.exp(-max(0.0, now - b) / p.tau)
                if who == me:
                    tokens, ts, c, pressed, known = a, b, r, pr, True
                else:
                    rates.append(math.inf if pr > now else r)
            if pressed_now:
                pressed = now + p.active
            rates.append(math.inf if pressed > now else c)
            rates.sort()
            left, n, level = rate, len(rates), rate
            for i, r in enumerate(rates):
                k = n - i
                if r < p.margin * left / k:
                    left -= r
                else:
                    level = left / k
                    break
            full = level * p.burst
            tokens = min(full, tokens + max(0.0, now - ts) * level) if known else full
            ts = max(ts, now)
            granted, wait = False, 0.0
            if op == "admit":
                need = min(units, full)
                if tokens >= need - 1e-9:
                    tokens -= units
                    c += units / p.tau
                    granted = True
                else:
                    wait = (need - tokens) / level
            elif op == "refund":
                tokens = min(full, tokens + units)
                c = max(0.0, c - units / p.tau)
            if op != "state":
                users = {w: v for w, v in users.items() if w not in stale}
                users[me] = [tokens, ts, c, now, pressed]
                self._shares[table] = (now, users)
            return ShareReply(granted, wait, level, n)
