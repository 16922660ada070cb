"""GraphQL execution: schema-first over the project's SDL, with a cache of validated documents.

The official client resends the same few documents thousands of times, so parsing and validating
once per distinct query text matters more than anything else here. Quirks of the W&B wire handled
here (see reference notes in the SDL header):
- `operationName: ""` means "none" (raw Public-API documents are sent that way);
- variables the selected operation does not declare are dropped before execution
  (`Run._exec` always adds entity/project/name, even to `UpsertBucket($id ...)`);
- leading `#graphql` comment lines are ordinary GraphQL comments.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    is_abstract_type,
    parse,
    validate,
)

from .artifact_writes import ArtifactMutations
from .guard import Limits, check_document, estimate_cost
from .rewind import RewindMutations
from .roots import Mutation, Query
from .schema import build_schema
from .sweep_writes import SweepMutations

log = logging.getLogger(__name__)

_OP_NAME_RE = re.compile(r"^\s*(?:#[^\n]*\n\s*)*(query|mutation|subscription)\s+(\w+)", re.S)


def operation_name_from_text(query: str) -> str:
    """The first operation's name, as W&B's own test spy derives it (skips whitespace and # comments)."""
    m = _OP_NAME_RE.match(query or "")
    return m.group(2) if m else ""


class MutationRoot(Mutation, ArtifactMutations, SweepMutations, RewindMutations):
    """Every mutation resolver: run and file mutations (roots.py), logging artifacts (artifact_writes.py),
    sweeps (sweep_writes.py), rewinding a run (rewind.py)."""


@dataclass
class Prepared:
    document: DocumentNode | None
    errors: list[dict[str, Any]]
    # operation name (None for an anonymous one) -> (operation type, declared variable names)
    operations: dict[str | None, tuple[OperationType, frozenset[str]]]


class GraphQLExecutor:
    def __init__(self, schema: GraphQLSchema | None = None, cache_size: int = 512, limits: Limits | None = None):
        self.schema = schema or build_schema()
        for t in self.schema.type_map.values():  # unions and interfaces: values name their type
            if is_abstract_type(t):
                t.resolve_type = _resolve_type  # type: ignore[attr-defined]
        self._cache: OrderedDict[str, Prepared] = OrderedDict()
        self._cache_size = cache_size
        self._cache_chars = 0
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self.query_root = Query()
        self.mutation_root = MutationRoot()

    def prepare(self, query: str) -> Prepared:
        with self._lock:
            hit = self._cache.get(query)
            if hit is not None:
                self._cache.move_to_end(query)
                return hit
        prepared = self._prepare(query)
        with self._lock:
            if query not in self._cache:
                self._cache_chars += len(query)
            self._cache[query] = prepared
            # bounded by count and by the text held: a client sending distinct documents cannot grow it
            while self._cache and (len(self._cache) > self._cache_size
                                   or self._cache_chars > self.limits.document_cache_chars):
                old, _ = self._cache.popitem(last=False)
                self._cache_chars -= len(old)
        return prepared

    def _prepare(self, query: str) -> Prepared:
        try:
            document = parse(query)
        except GraphQLError as e:
            return Prepared(None, [dict(e.formatted)], {})
        errors = validate(self.schema, document)
        if errors:
            return Prepared(document, [dict(e.formatted) for e in errors], {})
        refused = check_document(self.schema, document, self.limits)
        if refused:
            return Prepared(None, [{"message": refused}], {})
        ops: dict[str | None, tuple[OperationType, frozenset[str]]] = {}
        for d in document.definitions:
            if isinstance(d, OperationDefinitionNode):
                names = frozenset(v.variable.name.value for v in d.variable_definitions or ())
                ops[d.name.value if d.name else None] = (d.operation, names)
        return Prepared(document, [], ops)

    def select(self, prepared: Prepared, operation_name: str | None) -> tuple[str | None, OperationType | None,
                                                                               frozenset[str], str | None]:
        """(operation name, type, declared variables, error message)."""
        ops = prepared.operations
        if operation_name:
            if operation_name not in ops:
                return operation_name, None, frozenset(), f'Unknown operation named "{operation_name}".'
            t, names = ops[operation_name]
            return operation_name, t, names, None
        if len(ops) != 1:
            return None, None, frozenset(), "Must provide operation name if query contains multiple operations."
        name, (t, names) = next(iter(ops.items()))
        return name, t, names, None

    def execute(self, body: Any, ctx: Any, *, read_only: bool) -> tuple[dict[str, Any], str]:
        """Run one GraphQL request body; returns (response JSON object, operation name for the log)."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return {"errors": [{"message": "request body must be a JSON object with a 'query' string"}]}, ""
        query = body["query"]
        if len(query) > self.limits.max_query_chars:
            return {"errors": [{"message": f"query refused: longer than {self.limits.max_query_chars} characters"}]}, ""
        operation_name = body.get("operationName") or None  # "" means none
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return {"errors": [{"message": "variables must be a JSON object"}]}, ""
        prepared = self.prepare(query)
        if prepared.errors or prepared.document is None:
            return {"errors": prepared.errors}, operation_name or operation_name_from_text(query)
        name, op_type, declared, err = self.select(prepared, operation_name)
        log_name = name or operation_name_from_text(query)
        if err:
            return {"errors": [{"message": err}]}, log_name
        if op_type == OperationType.MUTATION and read_only:
            return {"errors": [{"message": f"this wandb-mirror server is read-only: mutation {log_name or ''} refused"
                                .replace("  ", " ")}]}, log_name
        variables = {k: v for k, v in variables.items() if k in declared}
        cost = estimate_cost(self.schema, prepared.document, name, variables, self.limits)
        if cost > self.limits.max_cost:
            return {"errors": [{"message": f"query refused: it would cost over {self.limits.max_cost} field "
                                           "resolutions; ask for smaller pages"}]}, log_name
        root = self.mutation_root if op_type == OperationType.MUTATION else self.query_root
        result = execute_sync(self.schema, prepared.document, root_value=root, context_value=ctx,
                              variable_values=variables, operation_name=name)
        out: dict[str, Any] = {}
        if result.errors:
            for e in result.errors:
                if e.original_error is not None and not isinstance(e.original_error, GraphQLError):
                    log.warning("error resolving %s at %s: %r", log_name, e.path, e.original_error,
                                exc_info=e.original_error)
            out["errors"] = [e.formatted for e in result.errors]
        out["data"] = result.data
        return out, log_name


def _resolve_type(value: Any, info: Any, abstract_type: Any) -> str | None:
    typename = value.get("typename") if isinstance(value, dict) else getattr(value, "typename", None)
    if typename:
        return typename
    from .nodes import EntityNode, ProjectNode, RunNode

    for cls, name in ((RunNode, "Run"), (ProjectNode, "Project"), (EntityNode, "Entity")):
        if isinstance(value, cls):
            return name
    return None
