"""The fair shares in process memory: ``fair_share.lua``'s twin, for tests and one-process runs.

It follows the script step by step (same fields, same order, same arithmetic) under one lock,
with an injected clock instead of Redis ``TIME``; ``tests/unit/test_limiter_shares.py`` runs
both with the same operations and checks they answer alike. Used by
:class:`~worker.limiter.memory_backend.MemoryBucketBackend`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from worker.limiter.shares import ShareParams, ShareReply


class MemoryShares:
    """Each table's shares hash as a dict; an idle one is forgotten after the ttl, like a key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # table -> (last written, user -> [tokens, ts, c, seen, pressed]): the script's hash
        self._shares: dict[str, tuple[float, dict[str, list[float]]]] = {}

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
        """One step of ``fair_share.lua``, step by step alike."""
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
