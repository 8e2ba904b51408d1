"""A schema, and how it is read back from its DynamoDB item (checked: an item that is not
what this project writes is a :class:`~storage.errors.CorruptItemError` naming table and key,
never a raw ``KeyError``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from storage import errors


@dataclass(frozen=True)
class Schema:
    """A schema: ``name`` and a JSON-serialisable ``body``. What the store returns also carries
    ``mutation_mappers``, ``created_at``/``updated_at`` (unix seconds) and ``version``."""

    name: str
    body: dict[str, Any]
    mutation_mappers: dict[str, Any] = field(default_factory=dict)
    created_at: int | None = None
    updated_at: int | None = None
    version: int | None = None


def schema_from_item(item: dict[str, Any], table: str, operation: str) -> Schema:
    """The schema an item holds; CorruptItemError naming table and key if it does not decode
    (a missing or mistyped attribute, JSON that is not an object)."""
    try:
        schema = Schema(
            name=item["SK"]["S"],
            body=json.loads(item["SchemaJson"]["S"]),
            mutation_mappers=json.loads(item.get("MutationMappers", {}).get("S", "{}")),
            created_at=int(item["CreatedAt"]["N"]),
            updated_at=int(item["UpdatedAt"]["N"]),
            version=int(item["Version"]["N"]),
        )
        if not isinstance(schema.body, dict) or not isinstance(schema.mutation_mappers, dict):
            raise ValueError("SchemaJson or MutationMappers is not a JSON object")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        sk = item.get("SK") if isinstance(item, dict) else None
        name = sk.get("S") if isinstance(sk, dict) else None
        what = f"no attribute {exc}" if isinstance(exc, KeyError) else str(exc)[:200]
        raise errors.CorruptItemError(
            f"schema item does not decode: {what}",
            operation=operation,
            table=table,
            key=name,
            code="CorruptItem",
        ) from None
    return schema
