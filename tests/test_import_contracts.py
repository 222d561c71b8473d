"""Every module of gateway/ is bound by an import-linter contract (GUIDE §1)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def contract_sources() -> set[str]:
    """The modules the contracts constrain: forbidden contracts' sources, and layers."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named: set[str] = set()
    for contract in config["contracts"]:
        for item in [*contract.get("source_modules", []), *contract.get("layers", [])]:
            named.update(part.strip() for part in item.split("|"))
    return named


def modules() -> list[str]:
    found = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(".".join(parts))
    return [module for module in found if module != "gateway"]


def unbound(named: set[str]) -> list[str]:
    """Modules that neither they nor any package above them is a contract's source."""
    return [
        module
        for module in modules()
        if not any(
            ".".join(module.split(".")[:i]) in named for i in range(2, module.count(".") + 2)
        )
    ]


def test_every_module_of_the_gateway_is_in_a_contract() -> None:
    assert modules(), "no modules found"
    assert unbound(contract_sources()) == []


def test_a_module_in_no_contract_is_named() -> None:
    named = contract_sources() - {"gateway.metrics"}
    assert unbound(named) == ["gateway.metrics"]
