"""The one boundary between the project and Redis: how a client is built, and how a Redis
failure becomes the project's own error.

Every Redis call in the project runs inside :func:`guard`, which turns any
``redis.RedisError`` — a refused connection, a socket *timeout*, a reply error, a script error —
into :class:`~storage.errors.BackendUnavailableError` (retryable) naming the operation and the
server as ``host:port/db``, never its password. Callers above this line catch one error; the
tasks' ``patiently`` retries it while Redis restarts, and the message stays unacknowledged.

Every client is built by :func:`connect`, with the timeouts of :class:`PipelineConfig`
(``DATAFOLD_REDIS_TIMEOUT``, ``DATAFOLD_REDIS_CONNECT_TIMEOUT``) so no call can hang.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from pipeline.config import PipelineConfig
from storage.errors import BackendUnavailableError

Redis = redis.Redis

UNAVAILABLE = "RedisUnavailable"
"""The error code of every Redis failure."""


def connect(url: str, cfg: PipelineConfig, *, timeout: float | None = None) -> Redis[Any]:
    """A client of ``url`` (bytes replies) with the configured timeouts. ``timeout`` shortens
    both for callers that must answer fast (a metrics scrape), which also get no retry after
    a timeout: their bound is the timeout itself. Connects lazily."""
    sock = cfg.redis_timeout if timeout is None else min(timeout, cfg.redis_timeout)
    conn = cfg.redis_connect_timeout if timeout is None else min(timeout, cfg.redis_connect_timeout)
    return redis.Redis.from_url(
        url,
        socket_timeout=sock,
        socket_connect_timeout=conn,
        health_check_interval=10,
        retry_on_timeout=timeout is None,
    )


def where(client: Redis[Any]) -> str:
    """``host:port/db`` of a client (or ``unix:path``), for messages; never the password."""
    pool = getattr(client, "connection_pool", None)
    kw: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


def socket_timeout(client: Redis[Any]) -> float | None:
    """The seconds a reply may take on ``client``'s connections before the call fails (None:
    no limit): a blocking command must block for less."""
    pool = getattr(client, "connection_pool", None)
    kw: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    value = kw.get("socket_timeout")
    return None if value is None else float(value)


@contextmanager
def guard(
    operation: str,
    client: Redis[Any] | None = None,
    *,
    table: str | None = None,
    consequence: str = "",
) -> Iterator[None]:
    """Run the block's Redis calls; any ``redis.RedisError`` leaves it as
    :class:`BackendUnavailableError` for ``operation`` (``consequence`` is appended to the
    message: what the caller will not do without Redis)."""
    try:
        yield
    except redis.RedisError as exc:
        at = f" at {where(client)}" if client is not None else ""
        tail = f"; {consequence}" if consequence else ""
        raise BackendUnavailableError(
            f"Redis call failed{at} ({type(exc).__name__}){tail}",
            operation=operation,
            table=table,
            code=UNAVAILABLE,
        ) from exc
