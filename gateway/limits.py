"""Document limits checked before execution: tokens (while parsing), depth and aliases.

Introspection fields (`__schema`, `__type`) are not counted for depth: their nesting is
bounded by the schema itself, and GraphiQL's introspection query is deeper than any query of
the data needs. Fragments are followed where they are spread, each fragment measured once
(memoised), and a cycle of fragments stops the walk (validation then rejects the document),
so no document, however built, makes this slow or deep.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)

from gateway.errors import LimitExceeded


@dataclass(frozen=True)
class QueryLimits:
    """The most a document may hold."""

    max_depth: int = 8
    max_aliases: int = 20
    max_tokens: int = 2000


class DocumentChecker:
    """check_document with its answers remembered per document text (bounded)."""

    def __init__(self, limits: QueryLimits, max_documents: int = 1000) -> None:
        self.limits = limits
        self._answers: OrderedDict[str, str | LimitExceeded | None] = OrderedDict()
        self._max = max_documents

    def check(self, query: str) -> str | None:
        """As check_document, remembered."""
        if query in self._answers:
            self._answers.move_to_end(query)
            answer = self._answers[query]
        else:
            try:
                answer = check_document(query, self.limits)
            except LimitExceeded as exc:
                answer = exc
            self._answers[query] = answer
            if len(self._answers) > self._max:
                self._answers.popitem(last=False)
        if isinstance(answer, LimitExceeded):
            raise LimitExceeded(answer.limit, answer.maximum)
        return answer


def check_document(query: str, limits: QueryLimits) -> str | None:
    """Raise LimitExceeded when `query` is over a limit; syntax errors are left to execution.

    Returns the name of the document's operation when it has exactly one, named.
    """
    try:
        document = parse(query, max_tokens=limits.max_tokens, no_location=True)
    except GraphQLSyntaxError as exc:
        if "Parsing aborted" in exc.message and "tokens" in exc.message:
            raise LimitExceeded("tokens", limits.max_tokens) from exc
        if "Parsing aborted" in exc.message and "nested too deeply" in exc.message:
            raise LimitExceeded("depth", limits.max_depth) from exc
        return None
    except RecursionError as exc:  # nesting too deep for the parser itself
        raise LimitExceeded("depth", limits.max_depth) from exc
    measure = _Measure(document)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            depth, aliases = measure.selection(definition.selection_set)
            if depth > limits.max_depth:
                raise LimitExceeded("depth", limits.max_depth)
            if aliases > limits.max_aliases:
                raise LimitExceeded("aliases", limits.max_aliases)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) == 1 and operations[0].name is not None:
        return operations[0].name.value
    return None


class _Measure:
    """Depth and alias count of selection sets, fragments expanded once each."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.memo: dict[str, tuple[int, int]] = {}
        self.visiting: set[str] = set()

    def selection(self, selection_set: SelectionSetNode | None) -> tuple[int, int]:
        if selection_set is None:
            return 0, 0
        depth, aliases = 0, 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                inner_depth, inner_aliases = self.selection(node.selection_set)
                if node.name.value.startswith("__"):  # introspection: bounded by the schema
                    inner_depth = 0
                depth = max(depth, 1 + inner_depth)
                aliases += inner_aliases + (1 if node.alias is not None else 0)
            elif isinstance(node, InlineFragmentNode):
                inner_depth, inner_aliases = self.selection(node.selection_set)
                depth, aliases = max(depth, inner_depth), aliases + inner_aliases
            elif isinstance(node, FragmentSpreadNode):
                inner_depth, inner_aliases = self.fragment(node.name.value)
                depth, aliases = max(depth, inner_depth), aliases + inner_aliases
        return depth, aliases

    def fragment(self, name: str) -> tuple[int, int]:
        if name in self.memo:
            return self.memo[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.visiting:
            return 0, 0
        self.visiting.add(name)
        try:
            self.memo[name] = self.selection(definition.selection_set)
        finally:
            self.visiting.discard(name)
        return self.memo[name]
