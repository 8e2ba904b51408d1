"""The in-memory store passes the same contract as the DynamoDB one (tests/contract_kv.py)."""

from __future__ import annotations

import pytest

from storage import MemoryNamespacedStore
from tests.contract_kv import KvContract


class TestMemoryKvContract(KvContract):
    @pytest.fixture
    def stores(self) -> tuple[MemoryNamespacedStore, MemoryNamespacedStore]:
        alice = MemoryNamespacedStore("alice", table_prefix="mem")
        return alice, alice.for_user("bob")

    @pytest.fixture
    def ns_name(self, unique: str) -> str:
        return f"ns{unique}"


def test_stores_of_different_prefixes_do_not_share_namespaces() -> None:
    a = MemoryNamespacedStore("u", table_prefix="one")
    b = MemoryNamespacedStore("u", table_prefix="two")
    a.open_namespace("ns").put(b"k", b"v")
    assert b.list_namespaces() == []
    assert b.open_namespace("ns").get(b"k") is None
