"""Bulk deletes through the queue: clear_all_schemas and reset_user leave nothing of the user
behind and touch no other user."""

from __future__ import annotations

from producers import Producer
from storage import DynamoSchemaStore, Schema
from tests.support.pipeline import PipelineEnv, Worker


def _fill(penv: PipelineEnv, user: str, namespaces: list[str], n: int, schemas: int) -> None:
    store = penv.store(user)
    for ns in namespaces:
        kv = store.open_namespace(ns)
        kv.batch_put([(b"k%05d" % i, user.encode() + b"-v") for i in range(n)])
        kv.put(b"tomb", b"x", seq=1)
        kv.delete(b"tomb", seq=2)  # a tombstone is an item too: it must go as well
    ss = DynamoSchemaStore(penv.dynamo, user)
    for i in range(schemas):
        ss.put_schema(Schema(f"schema-{i:04d}", {"fields": [i]}))


def test_clear_all_schemas_through_the_queue(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, unique: str
) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    _fill(penv, alice, [], 0, 1200)
    _fill(penv, bob, [], 0, 30)
    st = producer.clear_all_schemas(alice).wait(timeout=120)
    assert (st.state, st.items, st.deleted, st.dead_lettered) == ("succeeded", 1200, 1200, 0)
    assert DynamoSchemaStore(penv.dynamo, alice).list_schema_names() == []
    assert len(DynamoSchemaStore(penv.dynamo, bob).list_schema_names()) == 30


def test_reset_user_erases_every_namespace_and_schema_of_that_user_only(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, unique: str
) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    namespaces = [f"r{unique}a", f"r{unique}b"]
    _fill(penv, alice, namespaces, 1500, 40)
    _fill(penv, bob, namespaces, 700, 10)

    st = producer.reset_user(alice).wait(timeout=180)
    assert st.state == "succeeded", st
    assert st.deleted == st.items == 2 * 1501 + 40

    for ns in namespaces:
        assert list(penv.store(alice).open_namespace(ns).scan_keys()) == []
        bob_kv = penv.store(bob).open_namespace(ns)
        assert sum(1 for _ in bob_kv.scan_prefix(b"")) == 700
        assert bob_kv.get(b"k00000") == bob.encode() + b"-v"
    assert DynamoSchemaStore(penv.dynamo, alice).list_schema_names() == []
    assert len(DynamoSchemaStore(penv.dynamo, bob).list_schema_names()) == 10
