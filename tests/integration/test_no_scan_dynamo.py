"""No Scan anywhere, at run time: every listing and prefix read of both stores, then a look at
the operations the storage metrics recorded in this process."""

from __future__ import annotations

from storage import (
    Dynamo,
    DynamoConfig,
    DynamoNamespacedStore,
    DynamoSchemaStore,
    Schema,
    make_client,
)
from storage.metrics import REQUEST_SECONDS
from tests.doubles import RecordingClient


def operations_recorded() -> set[str]:
    return {
        s.labels["operation"]
        for m in REQUEST_SECONDS.collect()
        for s in m.samples
        if "operation" in s.labels
    }


def test_every_read_path_is_a_query_or_get(schema_config: DynamoConfig, unique: str) -> None:
    client = RecordingClient(make_client(schema_config))
    dynamo = Dynamo(schema_config, client)
    store = DynamoNamespacedStore(schema_config, f"u{unique}", dynamo=dynamo)
    kv = store.open_namespace(f"noscan{unique}")
    kv.batch_put([(b"a%d" % i, b"v") for i in range(30)])
    kv.put(b"t", b"v", seq=1)
    kv.delete(b"t", seq=2)
    assert len(list(kv.scan_prefix(b"a"))) == 30
    assert len(list(kv.scan_keys())) == 31  # keys-only listing includes the tombstone
    assert kv.exists(b"a1") and kv.get(b"a1") == b"v"
    assert f"noscan{unique}" in store.list_namespaces()
    kv.batch_delete(list(kv.scan_keys()))

    schemas = DynamoSchemaStore(schema_config, f"u{unique}", dynamo=dynamo)
    schemas.put_schema(Schema("s", {}))
    assert schemas.list_schema_names() == ["s"]
    assert schemas.list_schema_names(updated_since=0) == ["s"]
    assert [s.name for s in schemas.get_all_schemas()] == ["s"]
    assert schemas.schema_exists("s")
    assert schemas.clear_all_schemas() == 1
    store.delete_namespace(f"noscan{unique}")

    ops = set(client.ops())
    assert {"Query", "GetItem", "ListTables", "BatchWriteItem"} <= ops
    assert "Scan" not in ops
    recorded = operations_recorded()
    assert "Query" in recorded and "Scan" not in recorded
