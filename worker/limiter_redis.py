"""The limiter's buckets in Redis: one hash per table, changed only by the Lua script.

The script ``worker/lua/token_bucket.lua`` is loaded once per client with ``register_script``
(EVALSHA, falling back to EVAL when Redis has flushed its script cache). Every call is one
round trip and atomic; the bucket's clock is Redis ``TIME``. Any Redis failure becomes
:class:`~storage.errors.BackendUnavailableError` naming the limiter, the table and host:port/db
(never a password): the limiter never fails open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from storage.errors import BackendUnavailableError
from worker import keys
from worker.limiter import BucketParams, BucketReply, Op

if TYPE_CHECKING:
    from redis import Redis

_SCRIPT = (Path(__file__).parent / "lua" / "token_bucket.lua").read_text(encoding="utf-8")


class RedisBucketBackend:
    """The buckets in Redis, one hash per table, changed only by the Lua script.

    ``now`` exists for tests only: it replaces Redis ``TIME`` so the script itself can run
    under a fake clock. Leave it ``None`` in production.
    """

    def __init__(self, client: Redis[Any], *, now: Callable[[], float] | None = None) -> None:
        self._client = client
        self._script = client.register_script(_SCRIPT)
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
    ) -> BucketReply:
        now = "" if self._now is None else repr(self._now())
        args = [
            op,
            now,
            repr(float(units)),
            "1" if throttled else "0",
            repr(float(charge)),
            *params.argv(),
        ]
        try:
            raw = self._script(keys=[keys.limiter_bucket(table)], args=args)
        except RedisError as exc:
            raise BackendUnavailableError(
                f"rate limiter cannot use Redis at {self.where} ({type(exc).__name__}); "
                "refusing to write without the limit",
                operation=f"RateLimiter.{op}",
                table=table,
            ) from exc
        return BucketReply.parse(raw)

    @property
    def where(self) -> str:
        """host:port/db of the client (never its password)."""
        kw = self._client.connection_pool.connection_kwargs
        if "path" in kw:
            return f"unix:{kw['path']}"
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
