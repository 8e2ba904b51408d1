"""The errors of the capacity model: which limit refused, said as DynamoDB says it.

Since 2025 DynamoDB's throttling errors carry a list of ``{"reason", "resource"}`` objects
(DynamoDB API reference, ``ThrottlingReason``; botocore's DynamoDB model). ``reason`` is
ResourceType + OperationType + LimitType (``TableWriteKeyRangeThroughputExceeded``,
``TableWriteProvisionedThroughputExceeded``, ``TableWriteMaxOnDemandThroughputExceeded``, ...) and
``resource`` the table's ARN. The list's member name follows the exception's model:
``ThrottlingReasons`` in ProvisionedThroughputExceededException (and RequestLimitExceeded),
``throttlingReasons`` in ThrottlingException. A key range or provisioned refusal is a
ProvisionedThroughputExceededException; an on-demand maximum refusal a ThrottlingException.
A BatchWriteItem that is only partly refused gives no reason: its rest comes back unprocessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .capacity import PARTITION
from .config import FaultConfig, FaultKind
from .protocol import ERROR_PREFIX, ERRORS, Response, json_response

ACCOUNT = "123456789012"
"""The made-up account of the simulated tables' ARNs."""

LIMIT_TYPES = {
    "key_range": "KeyRangeThroughputExceeded",
    "provisioned": "ProvisionedThroughputExceeded",
    "on_demand": "MaxOnDemandThroughputExceeded",
}


def table_arn(region: str, table: str) -> str:
    """``arn:aws:dynamodb:<region>:123456789012:table/<table>``."""
    return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"


def reason_for(limit: str, config: FaultConfig) -> str:
    """The ``reason`` of a write refused by `limit` (`PARTITION` or `TABLE`)."""
    if limit == PARTITION:
        return "TableWrite" + LIMIT_TYPES["key_range"]
    kind = "on_demand" if config.on_demand else "provisioned"
    return "TableWrite" + LIMIT_TYPES[kind]


def throttling_reasons(
    refusals: Sequence[tuple[str, str]], config: FaultConfig
) -> list[dict[str, str]]:
    """One ``{"reason", "resource"}`` per distinct (table, limit) of `refusals`, in order."""
    out: list[dict[str, str]] = []
    for table, limit in refusals:
        entry = {"reason": reason_for(limit, config), "resource": table_arn(config.region, table)}
        if entry not in out:
            out.append(entry)
    return out


def throttle_response(refusals: Sequence[tuple[str, str]], config: FaultConfig) -> Response:
    """The 400 answer to a call refused whole; the first refusal picks the exception.

    `refusals` holds (table, limit) per refused write, at least one.
    """
    reasons = throttling_reasons(refusals, config)
    on_demand = reasons[0]["reason"].endswith(LIMIT_TYPES["on_demand"])
    kind = FaultKind.THROTTLING if on_demand else FaultKind.PROVISIONED
    status, code, message = ERRORS[kind]
    note = "simulated " + ("partition key" if refusals[0][1] == PARTITION else "table")
    note += " capacity"
    body: dict[str, Any] = {"__type": ERROR_PREFIX + code, "message": f"{message} ({note})"}
    body["throttlingReasons" if on_demand else "ThrottlingReasons"] = reasons
    return json_response(status, body)
