"""The DateTime and Decimal scalars: both travel as strings, exactly as Plivo sent them."""

from __future__ import annotations

import decimal
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition


def _serialize_decimal(value: decimal.Decimal) -> str:
    return format(value, "f")


def _parse_decimal(value: object) -> decimal.Decimal:
    if not isinstance(value, str):
        raise ValueError("Decimal must be given as a string")
    try:
        amount = decimal.Decimal(value)
    except decimal.InvalidOperation as exc:
        raise ValueError("Decimal must be a decimal number") from exc
    if not amount.is_finite():
        raise ValueError("Decimal must be finite")
    return amount


DateTime = NewType("DateTime", str)
Decimal = NewType("Decimal", decimal.Decimal)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    DateTime: strawberry.scalar(
        name="DateTime",
        description="ISO 8601 date and time with its UTC offset, as Plivo sent it.",
        serialize=str,
        parse_value=str,
    ),
    Decimal: strawberry.scalar(
        name="Decimal",
        description='A decimal amount as a string, with Plivo\'s precision kept ("0.03300").',
        serialize=_serialize_decimal,
        parse_value=_parse_decimal,
    ),
}
