"""One error tree, branches callers act on, and messages that carry their context."""

from __future__ import annotations

import inspect

import pytest

from storage import errors
from storage.errors import KEY_PREVIEW

RETRYABLE = [errors.ThrottledError, errors.TransientError, errors.BackendUnavailableError]
PERMANENT = [
    errors.TableNotFoundError,
    errors.ValidationError,
    errors.ItemTooLargeError,
    errors.InvalidKeyError,
    errors.InvalidNamespaceError,
    errors.ConditionFailedError,
    errors.BatchIncompleteError,
    errors.AccessDeniedError,
    errors.InputError,
    errors.JobNotFoundError,
]


def all_error_classes() -> list[type[BaseException]]:
    return [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, BaseException) and c.__module__ == errors.__name__
    ]


def test_every_error_has_the_one_root() -> None:
    classes = all_error_classes()
    assert len(classes) >= 17
    assert all(issubclass(c, errors.StorageError) for c in classes)


def test_every_leaf_is_either_retryable_or_permanent() -> None:
    branches = {
        errors.StorageError,
        errors.RetryableError,
        errors.PermanentError,
        errors.ConfigError,
    }
    for cls in all_error_classes():
        if cls in branches:
            continue
        assert issubclass(cls, errors.RetryableError) != issubclass(cls, errors.PermanentError)
    assert not issubclass(errors.RetryableError, errors.PermanentError)
    assert not issubclass(errors.PermanentError, errors.RetryableError)


@pytest.mark.parametrize("cls", RETRYABLE)
def test_retryable_branch(cls: type[errors.StorageError]) -> None:
    assert issubclass(cls, errors.RetryableError)
    assert not issubclass(cls, errors.PermanentError)


@pytest.mark.parametrize("cls", PERMANENT)
def test_permanent_branch(cls: type[errors.StorageError]) -> None:
    assert issubclass(cls, errors.PermanentError)
    assert not issubclass(cls, errors.RetryableError)


@pytest.mark.parametrize(
    "cls", [errors.ItemTooLargeError, errors.InvalidKeyError, errors.InvalidNamespaceError]
)
def test_size_and_name_errors_are_validation_errors(cls: type[errors.StorageError]) -> None:
    assert issubclass(cls, errors.ValidationError)


def test_message_names_operation_table_key_and_code() -> None:
    err = errors.ThrottledError(
        "slow down",
        operation="PutItem",
        table="DataFoldStorage-ns",
        key=b"user/42",
        code="ThrottlingException",
    )
    text = str(err)
    assert (
        text == "PutItem on table 'DataFoldStorage-ns', key 'user/42': "
        "[ThrottlingException] slow down"
    )
    assert (err.operation, err.table, err.key, err.code) == (
        "PutItem",
        "DataFoldStorage-ns",
        "'user/42'",
        "ThrottlingException",
    )


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({}, "boom"),
        ({"operation": "Query"}, "Query: boom"),
        ({"table": "T"}, "table 'T': boom"),
        ({"table": "T", "key": "k"}, "table 'T', key 'k': boom"),
        ({"operation": "GetItem", "key": "k"}, "GetItem, key 'k': boom"),
        ({"code": "X"}, "[X] boom"),
    ],
)
def test_message_with_partial_context(context: dict[str, str], expected: str) -> None:
    assert str(errors.StorageError("boom", **context)) == expected


def test_a_long_key_is_shortened() -> None:
    key = "k" * 5000
    err = errors.InvalidKeyError("too long", operation="PutItem", table="T", key=key)
    assert err.key is not None and len(err.key) <= KEY_PREVIEW
    assert err.key.endswith("…")
    assert len(str(err)) < 200
    long_bytes = b"x" * 5000
    assert len(str(errors.InvalidKeyError("too long", key=long_bytes))) < 200


def test_a_binary_key_is_shown_in_hex_with_its_length() -> None:
    key = bytes([0xFF, 0xFE]) * 300
    err = errors.ItemTooLargeError("too large", operation="PutItem", table="T", key=key)
    assert err.key is not None
    assert err.key.startswith("0xfffe")
    assert "(600 bytes)" in err.key
    assert len(str(err)) < 200
    short = errors.ItemTooLargeError("x", key=b"\x80\x01")
    assert short.key == "0x8001"


def test_batch_incomplete_error_carries_the_items_left() -> None:
    left = [(b"k1", b"v1"), b"k2"]
    err = errors.BatchIncompleteError(
        "not all written",
        items=left,
        operation="BatchWriteItem",
        table="T",
        code="UnprocessedItems",
    )
    assert err.items == left
    assert "2 items left" in str(err)
    assert "[UnprocessedItems]" in str(err) and "table 'T'" in str(err)


def test_input_error_names_the_line() -> None:
    assert "line 7: bad json" in str(errors.InputError("bad json", line=7))
