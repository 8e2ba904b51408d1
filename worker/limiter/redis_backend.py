"""The limiter's buckets in Redis: one hash per table, changed only by ``token_bucket.lua``.

The script is loaded once per client with ``register_script`` (EVALSHA, falling back to EVAL
when Redis has flushed its script cache). Every call is one round trip and atomic; the bucket's
clock is Redis ``TIME``, never a caller's. Any Redis failure leaves through the project's Redis
boundary as :class:`~storage.errors.BackendUnavailableError` naming the limiter, the table and
host:port/db (never a password): the limiter never fails open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import keys
from pipeline.redis_boundary import Redis, guard
from worker.limiter.bucket import BucketParams, BucketReply, Op
from worker.limiter.shares import ShareParams, ShareReply

_SCRIPT = (Path(__file__).parent / "token_bucket.lua").read_text(encoding="utf-8")
_SHARES = (Path(__file__).parent / "fair_share.lua").read_text(encoding="utf-8")


class RedisBucketBackend:
    """The buckets in Redis, shared by every process that uses the same Redis.

    ``now`` exists for tests only: it replaces Redis ``TIME`` so the script itself can run
    under a fake clock. Leave it ``None`` in production.
    """

    def __init__(self, client: Redis[Any], *, now: Callable[[], float] | None = None) -> None:
        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._shares = client.register_script(_SHARES)
        self._now = now

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
        now = "" if self._now is None else repr(self._now())
        args = [
            op,
            now,
            repr(float(units)),
            "1" if throttled else "0",
            repr(float(charge)),
            *params.argv(),
            str(tag),
            *params.argv_evidence(),
            repr(float(reserve)),
        ]
        with guard(
            f"RateLimiter.{op}",
            self._client,
            table=table,
            consequence="refusing to write without the limit",
        ):
            raw = self._script(keys=[keys.limiter_bucket(table)], args=args)
        return BucketReply.parse(raw)

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
        """One step of ``fair_share.lua`` on the table's shares (:mod:`worker.limiter.shares`)."""
        now = "" if self._now is None else repr(self._now())
        args = [op, now, str(user), repr(float(units)), repr(float(rate)), *params.argv()]
        args.append("1" if pressed_now else "0")
        with guard(
            f"RateLimiter.share.{op}",
            self._client,
            table=table,
            consequence="refusing to write without the limit",
        ):
            raw = self._shares(keys=[keys.limiter_shares(table)], args=args)
        return ShareReply(raw[0] in (b"1", "1"), float(raw[1]), float(raw[2]), int(raw[3]))
