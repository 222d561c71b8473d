"""Documents named by their sha256: trusted documents and automatic persisted queries (APQ).

- Trusted documents come from a manifest (GATEWAY_TRUSTED_DOCUMENTS): GraphQL Code Generator's
  client preset (`{"<sha256 hex>": "<text>"}`, keys with or without `sha256:`) or Apollo's
  persisted query manifest. Each is checked once, at start-up: its id is the sha256 of its text,
  it parses, validates, and is within every limit of admission (tokens, depth, aliases, the cost
  of each operation). They are held for the life of the process and never parsed again.
- APQ: a client sends a hash alone; an unknown one is PERSISTED_QUERY_NOT_FOUND, and the client
  sends the hash with the text, which is registered (GATEWAY_APQ_REGISTRATION) once it parsed,
  passed admission and validated. Registered texts are not trusted: they take the normal way
  (the document cache, every limit) each time. The store is this instance's, bounded by count
  and by characters.
- Only trusted documents (GATEWAY_ONLY_TRUSTED_DOCUMENTS): every other document, however sent,
  is PERSISTED_QUERY_NOT_IN_LIST. A text sent in full that is exactly a manifest document is
  served (a safelist).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import orjson
from graphql import GraphQLError, GraphQLSyntaxError

from gateway.errors import ConfigError, LimitExceeded
from gateway.operations.admission import Admission
from gateway.operations.documents import Document, Documents, OperationRequest

APQ_MAX_DOCUMENTS = 1000
APQ_MAX_CHARACTERS = 1 << 20  # the registered texts together (no trees: those are the LRU's)
APOLLO_FORMAT = "apollo-persisted-query-manifest"
NOT_FOUND = ("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")  # what Apollo Client reads
NOT_SUPPORTED = ("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED")
NOT_IN_LIST = (
    "only trusted documents are served: this document is not in the list",
    "PERSISTED_QUERY_NOT_IN_LIST",
)
MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"
_SHA256_ID = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")
_ID_FORM = "sha256: and 64 hexadecimal digits (or the 64 digits alone)"
_SHOWN_PROBLEMS = 3


class PersistedQueryError(ValueError):
    """A request's document id is malformed, or is not the sha256 of the text sent with it."""

    def __init__(self, message: str, code: str = "BAD_REQUEST") -> None:
        self.code = code
        super().__init__(message)


def sha256_id(text: str) -> str:
    """The document id of `text`: `sha256:` and the hex digest of its UTF-8."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def canonical_id(raw: object) -> str | None:
    """`sha256:<hex>` or `<hex>` (either case) as `sha256:<lowercase hex>`; None otherwise."""
    if not isinstance(raw, str):
        return None
    match = _SHA256_ID.fullmatch(raw)
    return None if match is None else "sha256:" + match.group(1).lower()


def requested_id(document_id: object, extensions: object, query: str | None) -> str | None:
    """The document a request names by hash: `documentId`, or APQ's `persistedQuery`.

    PersistedQueryError when either is malformed, when they name different documents, or when
    `query` is sent too and is not the text of that hash. The id is never echoed.
    """
    named = None if document_id in (None, "") else _named(document_id, "documentId")
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is not None:
        hashed = _apq_hash(persisted)
        if named is not None and hashed != named:
            raise PersistedQueryError(
                "documentId and extensions.persistedQuery.sha256Hash name different documents"
            )
        named = hashed
    if named is not None and query is not None and sha256_id(query) != named:
        raise PersistedQueryError("the query is not the document its hash names", MISMATCH)
    return named


def _apq_hash(persisted: object) -> str:
    """APQ's `{"version": 1, "sha256Hash": "<hex>"}` as a document id."""
    version = persisted.get("version") if isinstance(persisted, dict) else None
    if not isinstance(persisted, dict) or type(version) is not int or version != 1:
        raise PersistedQueryError("extensions.persistedQuery must be an object with version 1")
    return _named(persisted.get("sha256Hash"), "extensions.persistedQuery.sha256Hash")


def _named(raw: object, name: str) -> str:
    found = canonical_id(raw)
    if found is None:
        raise PersistedQueryError(f"{name} must be a string: {_ID_FORM}")
    return found


class RegisteredQueries:
    """APQ's registrations: texts by document id, a bounded LRU (count and characters)."""

    def __init__(self, max_documents: int, max_characters: int) -> None:
        self.max_documents, self.max_characters = max_documents, max_characters
        self._texts: OrderedDict[str, str] = OrderedDict()
        self.characters = 0

    def get(self, document_id: str) -> str | None:
        text = self._texts.get(document_id)
        if text is not None:
            self._texts.move_to_end(document_id)
        return text

    def put(self, document_id: str, text: str) -> None:
        """Keep `text` (the caller checked its hash); the least recently used go past a bound."""
        if document_id in self._texts or len(text) > self.max_characters:
            return
        self._texts[document_id] = text
        self.characters += len(text)
        while len(self._texts) > self.max_documents or self.characters > self.max_characters:
            _, dropped = self._texts.popitem(last=False)
            self.characters -= len(dropped)

    def __len__(self) -> int:
        return len(self._texts)


class PersistedDocuments:
    """Finds the document a request names: trusted, registered (APQ), or its own text."""

    def __init__(
        self,
        trusted: Mapping[str, Document] | None = None,
        *,
        only_trusted: bool = False,
        registration: bool = True,
        max_documents: int = APQ_MAX_DOCUMENTS,
        max_characters: int = APQ_MAX_CHARACTERS,
    ) -> None:
        self.trusted = dict(trusted or {})
        self._by_text = {document.text: document for document in self.trusted.values()}
        self.only_trusted = only_trusted
        self.registration = registration and not only_trusted
        self.registered = RegisteredQueries(max_documents, max_characters)

    def find(self, request: OperationRequest) -> Document | str | GraphQLError:
        """A trusted Document (parsed, validated and admitted at load), a text to parse and
        admit, or the refusal to answer with."""
        if request.document_id is None:
            assert request.query is not None  # the transport sends a text or an id
            found = self._by_text.get(request.query)
            if found is not None:
                return found
            return _refusal(NOT_IN_LIST) if self.only_trusted else request.query
        found = self.trusted.get(request.document_id)
        if found is not None:
            return found
        if request.query is not None:  # its hash was checked when the request was read
            return _refusal(NOT_IN_LIST) if self.only_trusted else request.query
        registered = self.registered.get(request.document_id)
        if registered is not None:
            return registered
        # Nothing could ever be found by hash: tell Apollo Client to stop sending hashes alone.
        servable = self.trusted or self.registration
        return _refusal(NOT_FOUND if servable else NOT_SUPPORTED)

    def register(self, document_id: str, text: str) -> None:
        """APQ: keep a document that parsed, passed admission and validated, when registration
        is on; its id is checked again here, so no other text is ever kept under it."""
        if self.registration and sha256_id(text) == document_id:
            self.registered.put(document_id, text)


def _refusal(refusal: tuple[str, str]) -> GraphQLError:
    message, code = refusal
    return GraphQLError(message, extensions={"code": code})


def load_manifest(path: Path, documents: Documents, admission: Admission) -> dict[str, Document]:
    """The manifest's documents by id, each checked once; ConfigError, one line naming the file
    and the documents that fail (the first few), when any does or the file is unusable."""
    where = f"GATEWAY_TRUSTED_DOCUMENTS {path}"
    loaded: dict[str, Document] = {}
    problems: list[str] = []
    for key, text in _read(path, where):
        document_id = canonical_id(key)
        if document_id is None:
            problems.append(f"document {_shown(key)} is not named by a sha256 hash ({_ID_FORM})")
            continue
        found = _checked(document_id, text, documents, admission)
        if isinstance(found, Document):
            loaded[document_id] = found
        else:
            problems.append(f"document {document_id} {found}")
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        raise ConfigError([f"{where}: {shown}" + (f"; and {more} more" if more > 0 else "")])
    return loaded


def _read(path: Path, where: str) -> list[tuple[object, object]]:
    """The manifest's (id, text) pairs; ConfigError when it cannot be read or is no manifest."""
    try:
        return _entries(orjson.loads(path.read_bytes()))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"{where} cannot be read ({reason})"]) from exc
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise ConfigError([f"{where} is not JSON"]) from exc
    except ValueError as exc:
        raise ConfigError([f"{where} {exc}"]) from exc


def _entries(manifest: object) -> list[tuple[object, object]]:
    """(id, text) pairs of a codegen manifest (an object) or of Apollo's (its operations)."""
    if not isinstance(manifest, dict):
        raise ValueError(
            "is not a manifest: a JSON object of sha256 ids to documents (GraphQL Code"
            f" Generator's), or Apollo's {APOLLO_FORMAT}, was expected"
        )
    if "format" not in manifest:
        return list(manifest.items())
    operations = manifest.get("operations")
    if manifest["format"] != APOLLO_FORMAT or manifest.get("version") != 1:
        raise ValueError(f"is of an unknown format: only {APOLLO_FORMAT} version 1 is read")
    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise ValueError("is malformed: its operations must be a list of objects")
    return [(operation.get("id"), operation.get("body")) for operation in operations]


def _checked(
    document_id: str, text: object, documents: Documents, admission: Admission
) -> Document | str:
    """The document, parsed, admitted, validated and costed; or what is wrong with it."""
    if not isinstance(text, str):
        return "is not a string"
    if sha256_id(text) != document_id:
        return "is not the sha256 of its text"
    document = documents.parse(text)
    try:
        admission.document(document)  # tokens (while parsing), depth, aliases
        if isinstance(document.failure, GraphQLSyntaxError):
            return f"does not parse ({_one_line(document.failure.message)})"
        errors = documents.validate(document)
        if errors:
            return f"fails validation ({_one_line(errors[0].message)})"
        for operation in document.operations:  # each costed once: a request reads the memo
            admission.total(admission.cost(document, operation))
    except LimitExceeded as exc:
        return str(exc)
    return document


def _one_line(message: str) -> str:
    return " ".join(message.split())[:200]


def _shown(key: object) -> str:
    return repr(key)[:80]
