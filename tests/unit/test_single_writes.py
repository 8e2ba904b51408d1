"""The retry-safe single writes on a scripted DynamoDB: the paths a real one only takes under
races (an item changing between the steps of a delete) or failures."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storage import Dynamo, DynamoConfig, errors
from storage.single_writes import (
    delete_marked,
    delete_sequenced,
    delete_unsequenced,
    put_sequenced,
)
from tests.doubles import FakeClient, FakeClock, client_error

KEY = {"PK": {"S": "u"}, "SK": {"S": "s"}}


def refused(item: dict[str, Any] | None, operation: str) -> Exception:
    exc = client_error("ConditionalCheckFailedException", operation)
    if item is not None:
        exc.response["Item"] = item  # type: ignore[typeddict-unknown-key]
    return exc


def scripted(**handlers: Callable[..., dict[str, Any]]) -> tuple[Dynamo, FakeClient]:
    client = FakeClient(handlers)
    config = DynamoConfig(region="us-east-1", max_attempts=3)
    return Dynamo(config, client, sleep=FakeClock().sleep), client


def answers(*outcomes: dict[str, Any] | Exception) -> Callable[..., dict[str, Any]]:
    """A handler giving ``outcomes`` in turn (an exception is raised)."""
    it: Iterator[dict[str, Any] | Exception] = iter(outcomes)

    def handle(**params: Any) -> dict[str, Any]:
        out = next(it)
        if isinstance(out, Exception):
            raise out
        return out

    return handle


def test_a_marked_delete_whose_mark_was_replaced_runs_again_on_the_item_as_it_is() -> None:
    other_mark = {**KEY, "DelId": {"S": "someone-else"}}
    dynamo, client = scripted(
        UpdateItem=answers({}, {}),
        DeleteItem=answers(refused(other_mark, "DeleteItem"), {}),
    )
    assert delete_marked(dynamo, "t", "s", KEY) is True
    marks = [p["ExpressionAttributeValues"][":w"] for p in client.params("UpdateItem")]
    deletes = [p["ExpressionAttributeValues"][":w"] for p in client.params("DeleteItem")]
    assert marks == deletes and marks[0] != marks[1]


@pytest.mark.parametrize(("earlier", "result"), [(None, False), ("InternalServerError", True)])
def test_a_marked_delete_finding_nothing_was_its_own_only_after_an_unknown_attempt(
    earlier: str | None, result: bool
) -> None:
    lost = [client_error(earlier, "DeleteItem", status=500)] if earlier else []
    dynamo, _ = scripted(
        UpdateItem=answers({}), DeleteItem=answers(*lost, refused(None, "DeleteItem"))
    )
    assert delete_marked(dynamo, "t", "s", KEY) is result


def test_a_marked_delete_of_nothing_is_false_in_one_call() -> None:
    dynamo, client = scripted(UpdateItem=answers(refused(None, "UpdateItem")))
    assert delete_marked(dynamo, "t", "s", KEY) is False and client.ops() == ["UpdateItem"]


def test_a_sequenced_delete_gives_up_on_a_key_that_keeps_changing() -> None:
    dynamo, client = scripted(
        UpdateItem=answers(*[refused({**KEY, "Seq": {"N": "1"}}, "UpdateItem")] * 8)
    )
    with pytest.raises(errors.TransientError) as info:
        delete_sequenced(dynamo, "t", b"k", KEY, 5, 0)
    assert info.value.code == "KeyKeptChanging" and info.value.table == "t"
    assert len(client.calls) == 8


def test_a_sequenced_delete_finding_its_own_tombstone_answers_from_it() -> None:
    ours = {**KEY, "Seq": {"N": "5"}, "Tomb": {"BOOL": True}, "Had": {"BOOL": True}}
    dynamo, client = scripted(UpdateItem=answers(refused(ours, "UpdateItem")))
    assert delete_sequenced(dynamo, "t", b"k", KEY, 5, 0) is True and len(client.calls) == 1


def test_a_sequenced_put_of_the_same_seq_but_another_value_is_superseded() -> None:
    stored = {**KEY, "Seq": {"N": "5"}, "Value": {"B": b"theirs"}}
    dynamo, _ = scripted(PutItem=answers(refused(stored, "PutItem")))
    with pytest.raises(errors.ConditionFailedError):
        put_sequenced(dynamo, "t", b"k", {**KEY, "Value": {"B": b"mine"}}, 5)


def test_an_unsequenced_delete_stands_when_its_tombstone_cannot_be_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dynamo, client = scripted(
        UpdateItem=answers({}),
        DeleteItem=answers(*[client_error("ServiceUnavailable", "DeleteItem", status=503)] * 3),
    )
    with caplog.at_level(logging.WARNING, logger="storage.single_writes"):
        assert delete_unsequenced(dynamo, "t", b"k", KEY, 0) is True
    assert client.ops() == ["UpdateItem"] + ["DeleteItem"] * 3
    assert "tombstone left to its TTL" in caplog.text and "ServiceUnavailable" in caplog.text


def test_an_unsequenced_delete_of_nothing_is_false_in_one_call() -> None:
    dynamo, client = scripted(UpdateItem=answers(refused(None, "UpdateItem")))
    assert delete_unsequenced(dynamo, "t", b"k", KEY, 0) is False and client.ops() == ["UpdateItem"]
