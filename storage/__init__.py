"""datafold-dynamo's storage layer: ``KvStore``, ``NamespacedStore`` and ``SchemaStore`` on
DynamoDB (and in memory). Knows nothing of Celery; reads happen here, directly.

The public surface is exactly ``__all__`` (a test checks it).
"""

from storage import errors
from storage.batch import BatchResult, BatchWriter, Rejected, WriteOp
from storage.client import Dynamo, make_client
from storage.kv import DynamoKvStore, KvStore
from storage.limits import BATCH_WRITE_MAX_ITEMS, MAX_ITEM_BYTES, MAX_SORT_KEY_BYTES
from storage.memory import MemoryKvStore, MemoryNamespacedStore
from storage.namespaced import DynamoNamespacedStore
from storage.pacer import Pacer
from storage.schema import DynamoSchemaStore, create_schema_table
from storage.schema_item import Schema
from storage.settings import DynamoConfig

__all__ = [
    "BATCH_WRITE_MAX_ITEMS",
    "MAX_ITEM_BYTES",
    "MAX_SORT_KEY_BYTES",
    "BatchResult",
    "BatchWriter",
    "Dynamo",
    "DynamoConfig",
    "DynamoKvStore",
    "DynamoNamespacedStore",
    "DynamoSchemaStore",
    "KvStore",
    "MemoryKvStore",
    "MemoryNamespacedStore",
    "Pacer",
    "Rejected",
    "Schema",
    "WriteOp",
    "create_schema_table",
    "errors",
    "make_client",
]
