"""The ``KvStore`` / ``NamespacedStore`` contract: one suite, run against every backend.

A subclass provides two fixtures:

* ``stores``: ``(alice, bob)``, two NamespacedStores of different users over the *same* tables;
* ``ns_name``: a namespace name unique to the test (the subclass cleans it up).

``tests/unit/test_memory_store.py`` runs it on the in-memory store, and
``tests/integration/test_kv_dynamo.py`` on DynamoDB Local: the double behaves like the real thing.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from storage import MAX_ITEM_BYTES, MAX_SORT_KEY_BYTES, errors

BINARY_KEYS = [b"\xff\xfe", b"\x80abc", b"\x00", b"k\x00\xff", b"\xc3\x28", b"plain", b"\xe2\x82"]
BINARY_VALUES = [
    bytes(range(256)),
    b"\xc3\x28",
    b"",
    b"\x00\x00",
    b"\xff" * 3,
    b"text",
    "é".encode("latin-1"),
]


def kv_item_overhead(user_id: str, key: bytes) -> int:
    """Bytes of a KV item besides the value bytes, as DynamoDB counts them: names + PK + SK."""
    return len("PK") + len(user_id.encode()) + len("SK") + len(key) + len("Value")


class KvContract:
    @pytest.fixture
    def alice(self, stores: tuple[Any, Any], ns_name: str) -> Any:
        return stores[0].open_namespace(ns_name)

    @pytest.fixture
    def bob(self, stores: tuple[Any, Any], ns_name: str, alice: Any) -> Any:
        return stores[1].open_namespace(ns_name)

    # -- single reads and writes ------------------------------------------------------------
    def test_get_of_a_missing_key_is_none(self, alice: Any) -> None:
        assert alice.get(b"nothing") is None
        assert alice.exists(b"nothing") is False

    def test_put_then_get_and_overwrite(self, alice: Any) -> None:
        alice.put(b"k", b"v1")
        assert alice.get(b"k") == b"v1"
        alice.put(b"k", b"v2")
        assert alice.get(b"k") == b"v2"

    def test_binary_keys_and_values_round_trip_losslessly(self, alice: Any) -> None:
        pairs = dict(zip(BINARY_KEYS, BINARY_VALUES, strict=True))
        for key, value in pairs.items():
            alice.put(key, value)
        for key, value in pairs.items():
            got = alice.get(key)
            assert got == value and type(got) is bytes, key
            assert alice.exists(key)
        assert list(alice.scan_prefix(b"")) == sorted(pairs.items())
        assert list(alice.scan_keys()) == sorted(pairs)

    def test_empty_value_is_a_value_not_a_missing_key(self, alice: Any) -> None:
        alice.put(b"empty", b"")
        assert alice.get(b"empty") == b""
        assert alice.exists(b"empty")
        assert alice.delete(b"empty") is True

    def test_delete_returns_whether_the_key_existed(self, alice: Any) -> None:
        alice.put(b"k", b"v")
        assert alice.delete(b"k") is True
        assert alice.get(b"k") is None
        assert alice.exists(b"k") is False
        assert alice.delete(b"k") is False
        assert alice.delete(b"never-there") is False

    def test_non_bytes_value_is_a_validation_error(self, alice: Any) -> None:
        with pytest.raises(errors.ValidationError):
            alice.put(b"k", "text")
        assert alice.get(b"k") is None

    # -- prefix reads -----------------------------------------------------------------------
    def test_scan_prefix_is_sorted_by_unsigned_key_bytes(self, alice: Any) -> None:
        keys = [
            b"a",
            b"a\x00",
            b"a\x01",
            b"a\x7f",
            b"a\x80",
            b"a\xff",
            b"a\xff\x00",
            b"ab",
            b"`",
            b"b",
            b"\xffa",
            b"A",
        ]
        shuffled = keys[:]
        random.Random(7).shuffle(shuffled)
        for i, key in enumerate(shuffled):
            alice.put(key, b"%d" % i)
        got = [k for k, _ in alice.scan_prefix(b"a")]
        assert got == sorted(k for k in keys if k.startswith(b"a"))
        # unsigned: 0x80 and 0xff sort after 0x7f (a signed-byte order would put them first)
        assert got == [b"a", b"a\x00", b"a\x01", b"ab", b"a\x7f", b"a\x80", b"a\xff", b"a\xff\x00"]
        assert [k for k, _ in alice.scan_prefix(b"")] == sorted(keys)
        assert [k for k, _ in alice.scan_prefix(b"a\xff")] == [b"a\xff", b"a\xff\x00"]
        assert list(alice.scan_prefix(b"zz")) == []

    def test_scan_prefix_returns_the_values(self, alice: Any) -> None:
        alice.batch_put([(b"p/%02d" % i, b"value-%d" % i) for i in range(30)] + [(b"q", b"x")])
        assert list(alice.scan_prefix(b"p/")) == [
            (b"p/%02d" % i, b"value-%d" % i) for i in range(30)
        ]

    def test_scan_prefix_limit(self, alice: Any) -> None:
        for i in range(5):
            alice.put(b"k%d" % i, b"v")
        assert [k for k, _ in alice.scan_prefix(b"k", limit=2)] == [b"k0", b"k1"]
        assert list(alice.scan_prefix(b"k", limit=0)) == []
        assert len(list(alice.scan_prefix(b"k", limit=50))) == 5

    def test_scan_prefix_is_an_iterator(self, alice: Any) -> None:
        alice.put(b"k", b"v")
        it = alice.scan_prefix(b"")
        assert iter(it) is it
        assert next(it) == (b"k", b"v")

    # -- batches ----------------------------------------------------------------------------
    def test_batch_put_last_value_per_key_wins(self, alice: Any) -> None:
        result = alice.batch_put([(b"k1", b"first"), (b"k2", b"two"), (b"k1", b"last")])
        assert (result.written, result.complete) == (2, True)
        assert alice.get(b"k1") == b"last"
        assert alice.get(b"k2") == b"two"

    def test_batch_put_and_delete_many(self, alice: Any) -> None:
        items = [(b"item/%03d" % i, b"v%d" % i) for i in range(60)]
        result = alice.batch_put(items)
        assert result.written == 60 and result.complete
        assert list(alice.scan_prefix(b"item/")) == items
        deleted = alice.batch_delete([k for k, _ in items[:40]])
        assert deleted.deleted == 40 and deleted.complete
        assert list(alice.scan_prefix(b"item/")) == items[40:]

    def test_batch_put_isolates_invalid_items_and_writes_the_rest(self, alice: Any) -> None:
        big = b"x" * MAX_ITEM_BYTES
        items = [
            (b"", b"v"),
            (b"ok1", b"v1"),
            (b"k" * (MAX_SORT_KEY_BYTES + 1), b"v"),
            (b"big", big),
            (b"ok2", b"v2"),
        ]
        with pytest.raises(errors.BatchIncompleteError) as info:
            alice.batch_put(items)
        assert sorted(info.value.items) == sorted([items[0], items[2], items[3]])
        assert alice.get(b"ok1") == b"v1" and alice.get(b"ok2") == b"v2"

        result = alice.batch_put(items, raise_on_incomplete=False)
        assert result.written == 2
        kinds = sorted(type(r.error).__name__ for r in result.rejected)
        assert kinds == ["InvalidKeyError", "InvalidKeyError", "ItemTooLargeError"]
        assert result.written + len(result.rejected) == len(items)

    # -- DynamoDB's limits, checked before any call ------------------------------------------
    def test_key_limits(self, alice: Any) -> None:
        longest = b"k" * MAX_SORT_KEY_BYTES
        alice.put(longest, b"v")
        assert alice.get(longest) == b"v"
        too_long = longest + b"k"
        for method in ("put", "get", "exists", "delete"):
            args = (too_long, b"v") if method == "put" else (too_long,)
            with pytest.raises(errors.InvalidKeyError, match="1025"):
                getattr(alice, method)(*args)
        for method in ("put", "get", "exists", "delete"):
            args = (b"", b"v") if method == "put" else (b"",)
            with pytest.raises(errors.InvalidKeyError, match="empty"):
                getattr(alice, method)(*args)

    def test_item_size_limit_is_400_kb_as_dynamodb_counts_it(self, alice: Any) -> None:
        user = alice.user_id
        fits = b"f" * (MAX_ITEM_BYTES - kv_item_overhead(user, b"edge"))
        alice.put(b"edge", fits)
        assert alice.get(b"edge") == fits
        with pytest.raises(errors.ItemTooLargeError) as info:
            alice.put(b"over", b"f" * (MAX_ITEM_BYTES - kv_item_overhead(user, b"over") + 1))
        assert "'over'" in str(info.value) and str(MAX_ITEM_BYTES + 1) in str(info.value)
        assert alice.get(b"over") is None

    # -- isolation of users -------------------------------------------------------------------
    def test_one_user_never_sees_another_users_items(self, alice: Any, bob: Any) -> None:
        alice.put(b"secret/1", b"alice's")
        alice.put(b"\x00", b"alice's binary")
        crafted = [
            b"",
            b"s",
            b"secret",
            b"secret/1",
            b"\x00",
            alice.user_id.encode(),
            b"#",
            b"default",
        ]
        for prefix in crafted:
            assert list(bob.scan_prefix(prefix)) == [], prefix
            assert list(bob.scan_keys(prefix)) == [], prefix
        for key in (b"secret/1", b"\x00"):
            assert bob.get(key) is None
            assert bob.exists(key) is False
            assert bob.delete(key) is False
        bob.batch_delete([b"secret/1", b"\x00"])
        bob.put(b"secret/1", b"bob's")
        assert alice.get(b"secret/1") == b"alice's"
        assert alice.get(b"\x00") == b"alice's binary"
        assert bob.get(b"secret/1") == b"bob's"
        assert list(alice.scan_prefix(b"secret")) == [(b"secret/1", b"alice's")]

    # -- sequenced (ordered) writes -----------------------------------------------------------
    def test_an_older_sequenced_put_never_overwrites_a_newer_one(self, alice: Any) -> None:
        alice.put(b"k", b"v5", seq=5)
        with pytest.raises(errors.ConditionFailedError):
            alice.put(b"k", b"v4", seq=4)
        with pytest.raises(errors.ConditionFailedError):
            alice.put(b"k", b"v5-again", seq=5)
        assert alice.get(b"k") == b"v5"
        alice.put(b"k", b"v6", seq=6)
        assert alice.get(b"k") == b"v6"
        assert alice.seq_of(b"k") == 6 and alice.seq_of(b"never") is None

    def test_a_sequenced_delete_leaves_a_tombstone_older_puts_cannot_pass(self, alice: Any) -> None:
        alice.put(b"k", b"v1", seq=1)
        assert alice.delete(b"k", seq=3) is True
        assert alice.get(b"k") is None
        assert alice.exists(b"k") is False
        assert list(alice.scan_prefix(b"")) == []
        with pytest.raises(errors.ConditionFailedError):
            alice.put(b"k", b"late", seq=2)
        assert alice.get(b"k") is None
        assert alice.delete(b"k", seq=4) is False
        assert alice.seq_of(b"k") == 4  # the tombstone's
        alice.put(b"k", b"v5", seq=5)
        assert alice.get(b"k") == b"v5"

    def test_a_sequenced_write_repeated_finds_itself_and_reports_as_it_landed(
        self, alice: Any
    ) -> None:
        """A retry or a redelivery of the same write (same sequence, same value) is not
        superseded, and a repeated delete answers what its first landing found."""
        alice.put(b"k", b"v2", seq=2)
        alice.put(b"k", b"v2", seq=2)
        assert (alice.get(b"k"), alice.seq_of(b"k")) == (b"v2", 2)
        assert alice.delete(b"k", seq=3) is True
        assert alice.delete(b"k", seq=3) is True
        assert alice.delete(b"gone", seq=3) is False
        assert alice.delete(b"gone", seq=3) is False
        with pytest.raises(errors.ConditionFailedError):
            alice.put(b"k", b"v3", seq=3)  # the tombstone's sequence, but no such put
        assert (alice.get(b"k"), alice.seq_of(b"k")) == (None, 3)

    def test_an_unsequenced_delete_removes_a_tombstone_too(self, alice: Any) -> None:
        alice.put(b"k", b"v", seq=5)
        assert alice.delete(b"k", seq=6) is True
        assert alice.delete(b"k") is False
        assert list(alice.scan_keys()) == [] and alice.seq_of(b"k") is None
        alice.put(b"k", b"again", seq=1)  # no fence left
        assert alice.get(b"k") == b"again"

    # -- namespaces ---------------------------------------------------------------------------
    def test_open_list_and_delete_a_namespace(self, stores: tuple[Any, Any], ns_name: str) -> None:
        ns = stores[0]
        kv = ns.open_namespace(ns_name)
        kv.put(b"k", b"v")
        assert ns_name in ns.list_namespaces()
        assert ns.open_namespace(ns_name).get(b"k") == b"v"
        assert ns.delete_namespace(ns_name) is True
        assert ns_name not in ns.list_namespaces()
        assert ns.delete_namespace(ns_name) is False
        assert ns.open_namespace(ns_name).get(b"k") is None

    def test_opening_a_missing_namespace_without_create_fails(
        self, stores: tuple[Any, Any], ns_name: str
    ) -> None:
        with pytest.raises(errors.TableNotFoundError) as info:
            stores[0].open_namespace(ns_name + "x", create=False)
        assert ns_name + "x" in str(info.value)

    @pytest.mark.parametrize(
        "bad", ["", "a b", "ns/x", "ns\n", "ns\x00", "é", "x" * 300, "semi;colon"]
    )
    def test_invalid_namespace_names(self, stores: tuple[Any, Any], bad: str) -> None:
        with pytest.raises(errors.InvalidNamespaceError):
            stores[0].open_namespace(bad)

    def test_flush_is_harmless(self, alice: Any) -> None:
        alice.put(b"k", b"v")
        alice.flush()
        assert alice.get(b"k") == b"v"
