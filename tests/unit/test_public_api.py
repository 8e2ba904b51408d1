"""The public surface of ``storage`` is exported in one place, and storage knows no Celery."""

from __future__ import annotations

import subprocess
import sys
import types

import storage

DOCUMENTED = {
    # limits
    "BATCH_WRITE_MAX_ITEMS",
    "MAX_ITEM_BYTES",
    "MAX_SORT_KEY_BYTES",
    # batches
    "BatchResult",
    "BatchWriter",
    "Pacer",
    "Rejected",
    "WriteOp",
    # client and config
    "Dynamo",
    "DynamoConfig",
    "make_client",
    # stores
    "KvStore",
    "DynamoKvStore",
    "DynamoNamespacedStore",
    "MemoryKvStore",
    "MemoryNamespacedStore",
    "DynamoSchemaStore",
    "Schema",
    "create_schema_table",
    # the error tree
    "errors",
}


def test_all_is_exactly_the_documented_surface() -> None:
    assert sorted(storage.__all__) == sorted(DOCUMENTED)
    assert len(storage.__all__) == len(set(storage.__all__))


def test_every_exported_name_exists() -> None:
    for name in storage.__all__:
        assert getattr(storage, name) is not None, name


def test_nothing_public_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(storage).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(storage.__all__)


def test_storage_does_not_import_celery() -> None:
    code = (
        "import storage, sys; assert 'celery' not in sys.modules, 'celery imported'; "
        "assert 'kombu' not in sys.modules, 'kombu imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
