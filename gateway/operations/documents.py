"""Documents, parsed once: each text is parsed (within the token limit) and validated on first
sight, and kept in a bounded cache with what admission and execution learn of it.

The parser stops at the token limit, so no document, however long, holds the event loop; a
document over it keeps its refusal, never a syntax tree.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    parse,
    specified_rules,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.schema.schema import validate_document

from gateway.errors import LimitExceeded, OperationNotSelected

MAX_DOCUMENTS = 1000
# All texts kept, together. A syntax tree takes 90 to 300 bytes a character of its text (a
# dense document of 2,000 tokens in 4 kB takes about 1 MB), so this bounds the cache at
# about 75 MB in the worst case; a frontend's few hundred documents fit many times over.
MAX_DOCUMENT_CHARACTERS = 256 * 1024


@dataclass(frozen=True)
class OperationRequest:
    """One GraphQL operation as a transport read it: a document, its variables, a name.

    `document_id` (`sha256:` and 64 lowercase hex digits) is the document a client named by its
    hash (`documentId`, or APQ's `extensions.persistedQuery`); `query` is then None or a text
    whose sha256 the transport checked to be that id.
    """

    query: str | None
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    document_id: str | None = None


class Document:
    """One document text: its syntax tree or why it has none, and what was derived from it."""

    __slots__ = ("errors", "failure", "fragments", "memo", "node", "operations", "text")

    def __init__(self, text: str, node: DocumentNode | None, failure: Exception | None) -> None:
        self.text, self.node, self.failure = text, node, failure
        self.errors: list[GraphQLError] | None = None  # validation's, once it ran
        definitions = node.definitions if node is not None else ()
        self.operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
        self.fragments = {
            d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.memo: dict[object, Any] = {}  # admission's measures, execution's plans

    def operation(self, name: str | None) -> OperationDefinitionNode:
        """The operation to run: the one named, or the only one (GraphQL's GetOperation)."""
        if name is None:
            if len(self.operations) == 1:
                return self.operations[0]
            raise OperationNotSelected(
                "the document holds several operations: name one in operationName"
                if self.operations
                else "the document holds no operation"
            )
        for operation in self.operations:
            if operation.name is not None and operation.name.value == name:
                return operation
        raise OperationNotSelected("no operation with that name")


class Documents:
    """Parsed and validated documents by text: a bounded LRU."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        max_tokens: int,
        max_depth: int,
        introspection: bool = True,
        max_documents: int = MAX_DOCUMENTS,
        max_characters: int = MAX_DOCUMENT_CHARACTERS,
    ) -> None:
        self.schema, self.max_tokens, self.max_depth = schema, max_tokens, max_depth
        rules: list[type[ASTValidationRule]] = list(specified_rules)
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self.max_documents, self.max_characters = max_documents, max_characters
        self._documents: OrderedDict[str, Document] = OrderedDict()
        self._characters = 0

    def get(self, text: str) -> Document:
        """The document for `text`, parsed on first sight."""
        document = self._documents.get(text)
        if document is not None:
            self._documents.move_to_end(text)
            return document
        document = self.parse(text)
        if len(text) <= self.max_characters:
            self._documents[text] = document
            self._characters += len(text)
            while len(self._documents) > self.max_documents or (
                self._characters > self.max_characters
            ):
                dropped, _ = self._documents.popitem(last=False)
                self._characters -= len(dropped)
        return document

    def validate(self, document: Document) -> list[GraphQLError]:
        """The document's validation errors, found once."""
        if document.errors is None:
            assert document.node is not None
            document.errors = validate_document(self.schema, document.node, self.rules)
        return document.errors

    def parse(self, text: str) -> Document:
        """A new Document for `text` (within the token limit), not kept."""
        try:
            node = parse(text, max_tokens=self.max_tokens)
        except GraphQLSyntaxError as exc:
            if "Parsing aborted" in exc.message and "tokens" in exc.message:
                return Document(text, None, LimitExceeded("tokens", self.max_tokens))
            if "Parsing aborted" in exc.message and "nested too deeply" in exc.message:
                return Document(text, None, LimitExceeded("depth", self.max_depth))
            return Document(text, None, exc)
        except RecursionError:  # nesting too deep for the parser itself
            return Document(text, None, LimitExceeded("depth", self.max_depth))
        return Document(text, node, None)

    def __len__(self) -> int:
        return len(self._documents)
