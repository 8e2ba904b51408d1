"""Each worker serves ``/metrics`` when ``DATAFOLD_METRICS_PORT`` > 0 (Celery signals, wired by
``worker.celery_app``'s ``include``).

What is served: every metric of ``storage.metrics``, ``worker.metrics`` and the limiter, plus
the live Redis readings of :class:`worker.exporter.PipelineCollector` (queue depth, jobs by
state). The server starts on ``worker_init`` in the worker's main process, on
``DATAFOLD_METRICS_ADDR`` (default 127.0.0.1: set 0.0.0.0 in a container so Prometheus reaches
it). One port per worker process: two workers on one host need two ports. A port already taken
is logged as an error and the worker runs on without metrics (a failing hook never stops work).

Pools:

* ``threads`` (the default) and ``solo``: one process; the default registry is served as is.
* ``prefork``: tasks run in child processes whose counters the main process cannot see. Set
  ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, writable, one per worker instance, in the
  worker's environment *before it starts* (prometheus_client picks its storage at import). Each
  process then keeps its values in memory-mapped files there, and the main process serves the
  sum through a ``MultiProcessCollector``, so the numbers add up across children, also those
  replaced since. The directory's files are deleted when the worker starts (stale counts from a
  previous run would otherwise be added). Without the directory, a prefork worker logs an error
  and serves only its main process's metrics, in which no task runs.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_shutdown,
    worker_shutdown,
)
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from pipeline.config import PipelineConfig
from storage.redact import ScrubFilter
from worker.exporter import PipelineCollector

log = logging.getLogger(__name__)

_lock = threading.Lock()
_server: Any = None
_served: tuple[CollectorRegistry, PipelineCollector] | None = None


def pool_name(pool_cls: object) -> str:
    """``threads``, ``prefork``, ``solo`` (or the class name) for a Celery pool alias or class."""
    if isinstance(pool_cls, str):
        alias = pool_cls.split(":")[0].rsplit(".", 1)[-1].lower()
    else:
        alias = getattr(pool_cls, "__module__", "").rsplit(".", 1)[-1]
    return {"thread": "threads", "processes": "prefork"}.get(alias, alias)


def clear_multiproc_dir(path: str | Path) -> int:
    """Delete the ``*.db`` files of a previous run in ``path`` (created if missing); returns
    how many were deleted."""
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    stale = list(d.glob("*.db"))
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)


def build_registry(
    cfg: PipelineConfig, collector: PipelineCollector | None = None
) -> CollectorRegistry:
    """The registry a worker serves: a multiprocess one over ``metrics_multiproc_dir`` when set,
    else the process's default registry; plus ``collector`` (queue depth, job states)."""
    if cfg.metrics_multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=cfg.metrics_multiproc_dir
        )
    else:
        registry = REGISTRY
    if collector is not None:
        registry.register(collector)
    return registry


def start(cfg: PipelineConfig, pool: str = "threads") -> Any:
    """Start this process's metrics server if ``cfg.metrics_port`` > 0 (at most once).

    Returns the server (``server_port``, ``shutdown()``) or None when metrics are off. Raises
    OSError when the port cannot be bound."""
    global _server, _served
    with _lock:
        if _server is not None or cfg.metrics_port == 0:
            return _server
        if cfg.metrics_multiproc_dir:
            n = clear_multiproc_dir(cfg.metrics_multiproc_dir)
            log.info(
                "metrics: multiprocess mode in %s (%d stale files deleted)",
                cfg.metrics_multiproc_dir,
                n,
            )
        elif pool == "prefork":
            log.error(
                "metrics: the prefork pool runs tasks in child processes; without "
                "PROMETHEUS_MULTIPROC_DIR their metrics are not served"
            )
        collector = PipelineCollector.from_config(cfg)
        registry = build_registry(cfg, collector)
        try:
            _server, _ = start_http_server(
                cfg.metrics_port, addr=cfg.metrics_addr, registry=registry
            )
        except BaseException:
            registry.unregister(collector)
            raise
        _served = (registry, collector)
        log.info("metrics: serving http://%s:%d/metrics", cfg.metrics_addr, cfg.metrics_port)
        return _server


def stop() -> None:
    """Stop this process's metrics server, if running, and unregister its collector."""
    global _server, _served
    with _lock:
        if _server is not None:
            _server.shutdown()
            _server.server_close()
            _server = None
        if _served is not None:
            _served[0].unregister(_served[1])
            _served = None


@after_setup_logger.connect  # type: ignore[untyped-decorator]
@after_setup_task_logger.connect  # type: ignore[untyped-decorator]
def _scrub_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    """Every handler Celery sets up writes scrubbed lines (no credential value)."""
    for handler in logger.handlers if logger is not None else []:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


@worker_init.connect  # type: ignore[untyped-decorator]
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    try:
        start(PipelineConfig.from_env(), pool_name(getattr(sender, "pool_cls", "threads")))
    except Exception:
        log.exception("metrics: could not start the /metrics server; running without it")


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _on_worker_shutdown(**_: Any) -> None:
    stop()


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    cfg = PipelineConfig.from_env()
    if cfg.metrics_multiproc_dir and pid is not None:
        # Drops the exited child's live gauges; its counters stay counted.
        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            pid, cfg.metrics_multiproc_dir
        )
