"""Single conditional writes of the stores, each safe to retry: a retried attempt whose earlier
attempt landed (its answer lost to a timeout or a dropped connection) reports exactly what that
earlier attempt would have reported, and never applies it twice.

How each write recognises its own landing, with ``ReturnValuesOnConditionCheckFailure=ALL_OLD``
(the item the failed condition saw comes back at no extra cost):

- sequenced put: the stored item has its ``Seq`` and its ``Value``: it landed, success.
- sequenced delete: the stored tombstone has its ``Seq``; the tombstone records in ``Had``
  whether it replaced a value, so the answer of the lost attempt is read back from it.
- unsequenced delete: first an UpdateItem turns a value into a tombstone marked ``DelId`` = a
  token of this call (condition: it holds a value), then a DeleteItem removes the tombstone. A
  retry of the first step finds its own ``DelId``: it held a value.
- marked delete (schemas, which have no tombstones): an UpdateItem marks the item ``DelId``,
  then a DeleteItem conditional on the mark removes it. Marking again is harmless; a retried
  DeleteItem that finds no item after an attempt of unknown outcome reports its own landing.

The exactness holds when no other writer replaces the item between the lost answer and the
retry (milliseconds to seconds apart); if one does, the retry is a new write after it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from storage import errors
from storage.client import Dynamo

log = logging.getLogger(__name__)

_NEWER = "(attribute_not_exists(#seq) OR #seq < :seq)"
_TOMB_SET = "SET #seq = :seq, Tomb = :t, ExpiresAt = :exp, Had = :had REMOVE #v, DelId"
_ROUNDS = 4  # rounds of a delete on an item that keeps changing under it, before giving up
_WHAT: dict[str, Any] = {"#seq": "Seq", "#v": "Value"}


def _seq(item: dict[str, Any] | None) -> int | None:
    seq = (item or {}).get("Seq")
    return None if seq is None else int(seq["N"])


def put_sequenced(dynamo: Dynamo, table: str, key: bytes, item: dict[str, Any], seq: int) -> None:
    """PutItem of ``item`` (which carries ``Seq`` = ``seq``) unless a write of the key with a
    sequence >= ``seq`` is stored. Its own landing (same Seq, same Value) is success; anything
    else refused is :class:`ConditionFailedError` (superseded)."""
    try:
        dynamo.call(
            "PutItem",
            table,
            key,
            Item=item,
            ConditionExpression=_NEWER,
            ExpressionAttributeNames={"#seq": "Seq"},
            ExpressionAttributeValues={":seq": {"N": str(seq)}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except errors.ConditionFailedError as exc:
        old = exc.item or {}
        if _seq(old) == seq and "Value" in old and bytes(old["Value"]["B"]) == item["Value"]["B"]:
            return
        raise


def delete_sequenced(
    dynamo: Dynamo, table: str, key: bytes, keyattrs: dict[str, Any], seq: int, expires: int
) -> bool:
    """Replace the item of ``key`` by a tombstone of sequence ``seq`` unless a write with a
    sequence >= ``seq`` is stored; whether a value was there.

    One UpdateItem when the key holds a value (condition: it does, and is older), else a
    second one for the no-value case; the tombstone's ``Had`` says which, so a retry (or a
    redelivery) finding its own tombstone answers as the attempt that wrote it did.
    :class:`ConditionFailedError` if superseded."""
    values = {":seq": {"N": str(seq)}, ":t": {"BOOL": True}, ":exp": {"N": str(expires)}}
    for _ in range(_ROUNDS):
        for had, guard in ((True, "attribute_exists(#v)"), (False, "attribute_not_exists(#v)")):
            try:
                dynamo.call(
                    "UpdateItem",
                    table,
                    key,
                    Key=keyattrs,
                    UpdateExpression=_TOMB_SET,
                    ConditionExpression=f"{guard} AND {_NEWER}",
                    ExpressionAttributeNames=_WHAT,
                    ExpressionAttributeValues={**values, ":had": {"BOOL": had}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return had
            except errors.ConditionFailedError as exc:
                stored = _seq(exc.item)
                if stored == seq and "Tomb" in (exc.item or {}):  # our own tombstone
                    return bool((exc.item or {}).get("Had", {}).get("BOOL"))
                if stored is not None and stored >= seq:
                    raise
                # The other case (value or not) holds now: try it.
    raise errors.TransientError(
        f"the key changed between value and no value {2 * _ROUNDS} times",
        operation="UpdateItem",
        table=table,
        key=key,
        code="KeyKeptChanging",
    )


def delete_unsequenced(
    dynamo: Dynamo, table: str, key: bytes, keyattrs: dict[str, Any], expires: int
) -> bool:
    """Remove the item of ``key`` (value or tombstone); whether it held a value.

    A value is first turned into a tombstone marked with this call's token (one UpdateItem,
    conditional on a value), then the item is deleted unless a value is back (one DeleteItem).
    A key with no item costs one failed UpdateItem. If the DeleteItem keeps failing with a
    retryable error, the tombstone stays (absent to every read, expiring with its TTL) and
    the answer stands: the value was deleted by the first step."""
    token = uuid.uuid4().hex
    try:
        dynamo.call(
            "UpdateItem",
            table,
            key,
            Key=keyattrs,
            UpdateExpression="SET Tomb = :t, ExpiresAt = :exp, DelId = :w REMOVE #v, #seq, Had",
            ConditionExpression="attribute_exists(#v)",
            ExpressionAttributeNames=_WHAT,
            ExpressionAttributeValues={
                ":t": {"BOOL": True},
                ":exp": {"N": str(expires)},
                ":w": {"S": token},
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        had = True
    except errors.ConditionFailedError as exc:
        if exc.item is None:
            return False  # no item at all: nothing to delete
        had = exc.item.get("DelId") == {"S": token}  # our own mark: our first attempt landed
    try:
        dynamo.call(
            "DeleteItem",
            table,
            key,
            Key=keyattrs,
            ConditionExpression="attribute_not_exists(#v)",
            ExpressionAttributeNames={"#v": "Value"},
        )
    except errors.ConditionFailedError:
        pass  # a value was put after our delete: it stands
    except errors.RetryableError as exc:
        log.warning("tombstone left to its TTL: %s", exc)
    return had


def delete_marked(dynamo: Dynamo, table: str, key: str, keyattrs: dict[str, Any]) -> bool:
    """Delete the item of ``key``; whether there was one. An UpdateItem marks it with this
    call's token (``DelId``; condition: the item exists, else False), then a DeleteItem removes
    it if it still bears the mark. If the mark is gone (a write, or another delete's mark, came
    between) both steps run again on the item as it now is. If the item is gone, it was this
    call's DeleteItem only if an earlier attempt of it had an unknown outcome; otherwise
    another delete took it first, and this one reports False, as DynamoDB's ALL_OLD would."""
    for _ in range(_ROUNDS):
        token = {"S": uuid.uuid4().hex}
        try:
            dynamo.call(
                "UpdateItem",
                table,
                key,
                Key=keyattrs,
                UpdateExpression="SET DelId = :w",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues={":w": token},
            )
        except errors.ConditionFailedError:
            return False
        try:
            dynamo.call(
                "DeleteItem",
                table,
                key,
                Key=keyattrs,
                ConditionExpression="DelId = :w",
                ExpressionAttributeValues={":w": token},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True
        except errors.ConditionFailedError as exc:
            if exc.item is None:
                return exc.after_unknown
    raise errors.TransientError(
        f"the item changed under {_ROUNDS} attempts to delete it",
        operation="DeleteItem",
        table=table,
        key=key,
        code="KeyKeptChanging",
    )
