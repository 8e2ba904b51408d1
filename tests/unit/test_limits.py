"""DynamoDB's limits, counted as DynamoDB counts them and checked before any call."""

from __future__ import annotations

from typing import Any

import pytest

from storage import MAX_ITEM_BYTES, MAX_SORT_KEY_BYTES, errors
from storage.limits import (
    check_item,
    check_key,
    check_partition,
    item_size,
    namespace_table,
    number_size,
    write_units,
)


def test_limits_are_dynamodbs() -> None:
    assert MAX_ITEM_BYTES == 400 * 1024
    assert MAX_SORT_KEY_BYTES == 1024


def test_item_size_counts_attribute_names_and_values() -> None:
    item: dict[str, Any] = {"PK": {"S": "default"}, "SK": {"B": b"abc"}, "Value": {"B": b"12345"}}
    assert item_size(item) == (2 + 7) + (2 + 3) + (5 + 5)


def test_strings_and_names_count_in_utf8_bytes() -> None:
    assert item_size({"é": {"S": "日本"}}) == 2 + 6
    assert item_size({"n": {"B": "é".encode()}}) == 1 + 2


# Measured on DynamoDB Local (the official engine) by bisecting the largest item it accepts;
# tests/integration/test_kv_dynamo.py checks the same numbers against it at the boundary.
@pytest.mark.parametrize(
    ("number", "size"),
    [
        ("0", 1),
        ("1", 2),
        ("12", 2),
        ("123", 3),
        ("1234", 3),
        ("100", 2),
        ("1000000", 2),
        ("-5", 3),
        ("0.001", 2),
        ("1.5", 3),
        ("12345678901234567890", 11),
        ("1E+5", 2),
    ],
)
def test_number_sizes(number: str, size: int) -> None:
    assert number_size(number) == size
    assert item_size({"n": {"N": number}}) == 1 + size


def test_other_types() -> None:
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 2 + 2
    assert item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 9
    assert item_size({"m": {"M": {"ab": {"S": "cd"}}}}) == 1 + 8
    assert item_size({"s": {"SS": ["a", "bc"]}}) == 1 + 3


def kv_item(value_len: int, key: bytes = b"key") -> dict[str, dict[str, Any]]:
    return {"PK": {"S": "default"}, "SK": {"B": key}, "Value": {"B": b"x" * value_len}}


OVERHEAD = item_size(kv_item(0))


def test_400_kb_boundary_exactly() -> None:
    at_limit = kv_item(MAX_ITEM_BYTES - OVERHEAD)
    assert check_item(at_limit, key=b"key", table="T", operation="PutItem") == MAX_ITEM_BYTES
    with pytest.raises(errors.ItemTooLargeError) as info:
        check_item(
            kv_item(MAX_ITEM_BYTES - OVERHEAD + 1), key=b"key", table="T", operation="PutItem"
        )
    text = str(info.value)
    assert f"{MAX_ITEM_BYTES + 1} bytes" in text
    assert "'key'" in text and "table 'T'" in text and "PutItem" in text


def test_the_attribute_names_are_what_tips_an_item_over() -> None:
    value = b"x" * (MAX_ITEM_BYTES - len(b"key") - len("default"))
    assert len(value) + len(b"key") + len("default") == MAX_ITEM_BYTES
    with pytest.raises(errors.ItemTooLargeError):  # names PK, SK, Value add 9 bytes
        check_item(
            {"PK": {"S": "default"}, "SK": {"B": b"key"}, "Value": {"B": value}},
            key=b"key",
            table="T",
            operation="PutItem",
        )


def test_empty_key() -> None:
    with pytest.raises(errors.InvalidKeyError, match="empty key"):
        check_key(b"", table="T", operation="PutItem")


def test_1024_byte_key_is_fine_1025_is_not() -> None:
    check_key(b"k" * 1024, table="T", operation="PutItem")
    with pytest.raises(errors.InvalidKeyError) as info:
        check_key(b"k" * 1025, table="T", operation="GetItem")
    assert "1025 bytes" in str(info.value) and "GetItem" in str(info.value)
    assert info.value.key is not None and info.value.key.startswith("'kkk")


def test_keys_are_bytes() -> None:
    with pytest.raises(errors.InvalidKeyError, match="bytes"):
        check_key("text", table="T", operation="PutItem")  # type: ignore[arg-type]
    check_key(bytearray(b"ok"), table="T", operation="PutItem")  # type: ignore[arg-type]


def test_partition_key_limits() -> None:
    check_partition("u" * 2048, table="T", operation="Open")
    for bad in ("", "u" * 2049, "é" * 1025):
        with pytest.raises(errors.InvalidKeyError):
            check_partition(bad, table="T", operation="Open")


def test_write_units() -> None:
    assert [write_units(s) for s in (0, 1, 1024, 1025, 2048, MAX_ITEM_BYTES)] == [
        1,
        1,
        1,
        2,
        2,
        400,
    ]


@pytest.mark.parametrize("name", ["a", "users", "my_ns-1.x", "A" * 200, "0"])
def test_valid_namespace_names(name: str) -> None:
    assert namespace_table("DataFoldStorage", name) == f"DataFoldStorage-{name}"


@pytest.mark.parametrize(
    "name", ["", "a b", "ns/x", "ns\n", "\nns", "ns\x00", "é", "x:y", "x" * 240, None, 5]
)
def test_invalid_namespace_names(name: object) -> None:
    with pytest.raises(errors.InvalidNamespaceError):
        namespace_table("DataFoldStorage", name)  # type: ignore[arg-type]


def test_table_name_length_includes_the_prefix() -> None:
    namespace_table("p", "x" * 253)  # "p-" + 253 = 255 characters
    with pytest.raises(errors.InvalidNamespaceError, match="255"):
        namespace_table("p", "x" * 254)
    assert namespace_table("a", "b") == "a-b"
