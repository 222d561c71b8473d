"""The Decimal and DateTime scalars keep Plivo's text exactly."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

import pytest
from strawberry.types.scalar import ScalarDefinition

from gateway.schema.scalars import SCALAR_MAP, Decimal


def functions(definition: ScalarDefinition) -> tuple[Callable[..., Any], Callable[..., Any]]:
    assert definition.serialize is not None
    assert definition.parse_value is not None
    return definition.serialize, definition.parse_value


def test_decimal_serializes_with_its_precision() -> None:
    serialize, _ = functions(SCALAR_MAP[Decimal])
    assert serialize(decimal.Decimal("0.03300")) == "0.03300"
    assert serialize(decimal.Decimal("1E+2")) == "100"


def test_decimal_input_is_parsed_from_strings_only() -> None:
    _, parse = functions(SCALAR_MAP[Decimal])
    assert parse("0.050") == decimal.Decimal("0.050")
    for bad in (0.05, "abc", "Infinity"):
        with pytest.raises(ValueError, match="Decimal"):
            parse(bad)
