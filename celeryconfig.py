"""Every Celery setting of datafold-dynamo (values come from ``storage.settings``).

Delivery is at-least-once: ``acks_late`` + ``task_reject_on_worker_lost`` + prefetch 1, and the
ledger makes redelivery harmless. The Redis ``visibility_timeout`` (``DATAFOLD_VISIBILITY_TIMEOUT``,
default 300 s) is the recovery time after a worker dies: its unacknowledged messages go back to
the queue when it expires. It exceeds the longest countdown (``DATAFOLD_REQUEUE_MAX_DELAY``,
60 s) and the longest segment run (seconds). JSON only: a pickled message is refused.
"""

from kombu import Exchange, Queue

from storage.settings import PipelineConfig

_cfg = PipelineConfig.from_env()

broker_url = _cfg.broker_url
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": _cfg.visibility_timeout,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}

# JSON only — never pickle.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# No result backend: the job ledger in Redis holds every outcome (DESIGN.md, Delivery).
result_backend = None
task_ignore_result = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_pool = _cfg.worker_pool
worker_concurrency = _cfg.worker_concurrency

# Single writes and bulk work on separate queues: a big load never starves single writes.
task_queues = (
    Queue("writes", Exchange("writes", type="direct"), routing_key="writes"),
    Queue("bulk", Exchange("bulk", type="direct"), routing_key="bulk"),
)
task_default_queue = "bulk"
task_default_exchange = "bulk"
task_default_routing_key = "bulk"
task_routes = {
    "datafold.write": {"queue": "writes", "routing_key": "writes"},
    "datafold.segment": {"queue": "bulk", "routing_key": "bulk"},
    "datafold.plan": {"queue": "bulk", "routing_key": "bulk"},
}

# Events for Flower.
worker_send_task_events = True
task_send_sent_event = True

worker_hijack_root_logger = False
worker_redirect_stdouts = False
