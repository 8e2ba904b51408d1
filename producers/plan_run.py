"""``datafold plan``'s work for a :class:`~producers.api.Producer`: expand and read the
inputs (:func:`producers.plan.plan_load`), then price the load and find the rate to time it
at (:func:`capacity`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.segmenter import DEFAULT_PARTITIONS
from producers.feed import namespace_problem
from producers.multi_load import expand_inputs, key_field
from producers.plan import ASSUMED_WCU_PER_SECOND, PRICE_PER_MILLION_WRU, LoadPlan, plan_load
from storage import errors
from storage.limits import namespace_table
from storage.tables import describe

if TYPE_CHECKING:
    from producers.api import Producer


def capacity(p: Producer, namespace: str | None, user: str) -> tuple[float, str]:
    """The write rate (WCU/s) a load of ``namespace`` will see, and where it comes from: the
    table's provisioned write capacity; else ``DATAFOLD_WRITE_CAPACITY``; else an assumption,
    said as such (a new on-demand table's initial throughput)."""
    if namespace is not None:
        table = namespace_table(p.dynamo_config.table_prefix, namespace)
        desc = describe(p.store(user).dynamo, table)
        if desc is not None:
            mode = (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
            wcu = float((desc.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits", 0))
            if mode != "PAY_PER_REQUEST" and wcu > 0:
                return wcu, f"table {table}'s provisioned write capacity"
    if p.config.write_capacity > 0:
        return p.config.write_capacity, "DATAFOLD_WRITE_CAPACITY"
    return ASSUMED_WCU_PER_SECOND, (
        "assumed: a new on-demand table's initial write throughput; give --wcu"
    )


def plan_for(
    p: Producer,
    inputs: Sequence[str],
    namespace: str | None,
    user_id: str | None,
    format: str = "jsonl",
    key_column: str | None = None,
    key_attribute: str | None = None,
    *,
    compression: str = "auto",
    price: float | None = None,
    wcu: float | None = None,
) -> LoadPlan:
    """The plan of ``p.load_file(inputs, ...)`` with the same options, priced at ``price``
    USD per million write request units (default: the published on-demand price) and timed
    at ``wcu`` WCU/s (default: :func:`capacity`)."""
    user = p._user(user_id)
    if namespace is not None:
        p._ns(namespace)
    if price is not None and not price >= 0:
        raise errors.ValidationError(f"--price must be 0 or more, not {price}", operation="Plan")
    if wcu is not None and not wcu > 0:
        raise errors.ValidationError(f"--wcu must be more than 0, not {wcu}", operation="Plan")
    field = key_field(format, key_column, key_attribute)
    specs, client = expand_inputs(list(inputs))
    valid: set[str] = set()
    plan = plan_load(
        specs,
        namespace,
        user,
        format,
        field,
        partitions=getattr(p, "partitions", DEFAULT_PARTITIONS),
        segment_size=p.config.segment_size,
        namespace_problem=lambda ns: namespace_problem(ns, valid, p._ns),
        compression=compression,
        client=client,
    )
    plan.price = PRICE_PER_MILLION_WRU if price is None else price
    if price is not None:
        plan.price_source = "--price"
    plan.rate, plan.rate_source = (
        (wcu, "--wcu") if wcu is not None else capacity(p, namespace, user)
    )
    return plan
