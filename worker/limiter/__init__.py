"""The global adaptive rate limiter, as a package: the interface (:mod:`.bucket`), the limiter
(:mod:`.rate_limiter`), and the two homes of its buckets — Redis + Lua, shared by every worker
(:mod:`.redis_backend`), and its in-memory twin for one-process runs (:mod:`.memory_backend`).
One test suite runs over both backends. Modules import ``bucket`` and nothing above it: no cycle.
"""

from worker.limiter.bucket import (
    COALESCE_SECONDS,
    BucketBackend,
    BucketParams,
    BucketReply,
    Grant,
)
from worker.limiter.memory_backend import MemoryBucketBackend
from worker.limiter.rate_limiter import RateLimiter
from worker.limiter.redis_backend import RedisBucketBackend

__all__ = [
    "COALESCE_SECONDS",
    "BucketBackend",
    "BucketParams",
    "BucketReply",
    "Grant",
    "MemoryBucketBackend",
    "RateLimiter",
    "RedisBucketBackend",
]
