"""What `serve` refuses before any work is done: the HTTP layer's safety checks, in one place.

A browser on the same machine is the threat model: a page the user visits can make the browser send
requests to 127.0.0.1 (simple cross-site POSTs, or DNS rebinding, where evil.example resolves to
127.0.0.1 and the page then talks to us as "same origin"). So:

- the Host header must name the bound address, a localhost name, an IP literal (a rebinding page
  always sends its own DNS name), or a name given with `--allow-host`;
- POST /graphql demands `Content-Type: application/json` (a browser cannot send that cross-site
  without a CORS preflight, and we answer no preflight: no CORS headers at all);
- the key is checked before a body is read, and bodies are capped (413);
- a GraphQL document is limited in depth, aliases and estimated cost before it runs, so a few
  hundred bytes cannot burn a core or build an answer of tens of MB.

Presigned-style URLs (`/_mirror/objects/`, `/_mirror/manifest/`, `/_mirror/upload/`) carry a
signature instead of the key, by design: they are checked by their own route.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
)

# Rows in one history/events answer. A history page is asked with `samples` = its step width (the
# official client's scan pages a sparse run with samples of 1e9), so the guard charges a row list at
# most this many rows and the resolvers refuse an answer that would hold more (nodes.sample_indices).
MAX_ANSWER_ROWS = 10_000_000

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
GRAPHQL_PATHS = ("/graphql", "/api/graphql")
# routes that authenticate with a URL signature instead of the key (presigned-style, fetched keyless)
SIGNED_ROUTES = ("/_mirror/objects/", "/_mirror/manifest/", "/_mirror/upload/", "/_mirror/history/",
                 "/_mirror/upload-object/", "/_mirror/upload-manifest/")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask of the server (defaults fit every official client query)."""

    max_body: int = 64 << 20           # bytes of a GraphQL request body
    max_depth: int = 20                # nesting of selection sets, fragments expanded
    max_aliases: int = 100             # aliased fields in one document
    max_cost: int = 250_000            # estimated field resolutions (list sizes multiplied through)
    default_page: int = 100            # a connection asked for without `first` counts as this many
    max_query_chars: int = 256 << 10   # longer query texts are refused (W&B's are a few kB)
    request_log: int = 200_000         # entries kept by the request log (oldest dropped)
    document_cache_chars: int = 16 << 20  # query text held by the parsed-document cache


class Refused(Exception):
    """A request the guard refuses: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status = status
        self.close = close


@dataclass
class HostCheck:
    """Which Host headers `serve` answers (DNS rebinding protection)."""

    bound: str
    allowed: frozenset[str] = field(default_factory=frozenset)

    def ok(self, header: str | None) -> bool:
        if header is None:  # HTTP/1.0 without Host: not a browser
            return True
        name = _host_name(header.strip())
        if not name:
            return False
        if name in LOCAL_NAMES or name in self.allowed or name == self.bound.lower().strip("[]"):
            return True
        try:
            ipaddress.ip_address(name)
            return True  # an IP literal cannot be rebound
        except ValueError:
            return False


def _host_name(header: str) -> str:
    h = header.lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else ""
    name, _, port = h.partition(":")
    if port and not port.isdigit():
        return ""
    return name.rstrip(".")


def check_request(method: str, path: str, headers: Any, hosts: HostCheck) -> None:
    """Refuse by Host, then by a GraphQL POST's content type (the key comes next, then `check_length`)."""
    if not hosts.ok(headers.get("Host")):
        raise Refused(403, f"host {headers.get('Host')!r} is not served here (serve --allow-host NAME to add it)",
                      close=True)
    if method == "POST" and path in GRAPHQL_PATHS:
        ctype = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise Refused(415, "POST /graphql needs Content-Type: application/json", close=True)


def check_length(method: str, headers: Any, limits: Limits) -> None:
    """A POST body announced over the cap is refused before a byte of it is read."""
    if method == "POST":
        length = headers.get("Content-Length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise Refused(400, "Content-Length is not a number", close=True) from None
            if n < 0:
                raise Refused(400, "Content-Length is negative", close=True)
            if n > limits.max_body:
                raise Refused(413, f"request body of {n} bytes is over the limit of {limits.max_body}", close=True)


def needs_key(path: str) -> bool:
    return not path.startswith(SIGNED_ROUTES)


# ------------------------------------------------------------------------------------------ GraphQL cost
def check_document(schema: GraphQLSchema, document: DocumentNode, limits: Limits) -> str | None:
    """Depth and alias limits of a parsed, validated document (variables do not change them)."""
    frags = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    aliases = 0
    for d in document.definitions:
        if isinstance(d, (OperationDefinitionNode, FragmentDefinitionNode)):
            aliases += _count_aliases(d.selection_set)
    if aliases > limits.max_aliases:
        return f"query refused: {aliases} aliases (limit {limits.max_aliases})"
    for d in document.definitions:
        if isinstance(d, OperationDefinitionNode):
            depth = _depth(d.selection_set, frags, limits.max_depth + 1, ())
            if depth > limits.max_depth:
                return f"query refused: nested deeper than {limits.max_depth} levels"
    return None


def _count_aliases(sel: SelectionSetNode | None) -> int:
    if sel is None:
        return 0
    n = 0
    for s in sel.selections:
        if isinstance(s, FieldNode) and s.alias is not None:
            n += 1
        n += _count_aliases(getattr(s, "selection_set", None))
    return n


def _depth(sel: SelectionSetNode | None, frags: dict[str, FragmentDefinitionNode], cap: int,
           seen: tuple[str, ...]) -> int:
    if sel is None or cap <= 0:
        return 0
    best = 0
    for s in sel.selections:
        if isinstance(s, FieldNode):
            d = 1 + _depth(s.selection_set, frags, cap - 1, seen) if s.selection_set else 1
        elif isinstance(s, InlineFragmentNode):
            d = _depth(s.selection_set, frags, cap, seen)
        elif isinstance(s, FragmentSpreadNode) and s.name.value in frags and s.name.value not in seen:
            d = _depth(frags[s.name.value].selection_set, frags, cap, (*seen, s.name.value))
        else:
            d = 0
        best = max(best, d)
        if best >= cap:
            break
    return best


def estimate_cost(schema: GraphQLSchema, document: DocumentNode, operation: str | None,
                  variables: dict[str, Any], limits: Limits) -> int:
    """Field resolutions the operation may cost: each field once per item of every list above it.

    A list's size is its `first`/`last`/`samples` argument (literal or variable), else
    `limits.default_page` for lists of objects. Stops counting once over the limit.
    """
    frags = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    op = next((d for d in document.definitions if isinstance(d, OperationDefinitionNode)
               and (operation is None or (d.name is not None and d.name.value == operation))), None)
    if op is None:
        return 0
    root = schema.mutation_type if op.operation == OperationType.MUTATION else schema.query_type
    values = {v.variable.name.value: int(v.default_value.value) for v in op.variable_definitions or ()
              if isinstance(v.default_value, IntValueNode)}
    values.update({k: v for k, v in variables.items() if v is not None})
    counter = _Cost(frags, values, limits)
    counter.walk(op.selection_set, root, 1, ())
    return counter.total


class _Cost:
    def __init__(self, frags: dict[str, FragmentDefinitionNode], variables: dict[str, Any], limits: Limits):
        self.frags = frags
        self.variables = variables
        self.limits = limits
        self.total = 0

    def walk(self, sel: SelectionSetNode | None, parent: Any, mult: int, seen: tuple[str, ...]) -> None:
        if sel is None or self.total > self.limits.max_cost:
            return
        for s in sel.selections:
            if isinstance(s, FieldNode):
                self.total += mult
                fields = getattr(parent, "fields", None)
                fdef = fields.get(s.name.value) if fields else None
                if fdef is None or s.selection_set is None:
                    # big scalar lists (history rows): their answer is bounded by the rows, at most MAX_ANSWER_ROWS
                    self.total += mult * max(0, min(self._size(s, None), MAX_ANSWER_ROWS) - 1) // 100
                    continue
                t = fdef.type
                while isinstance(t, GraphQLNonNull):
                    t = t.of_type
                is_list = isinstance(t, GraphQLList)
                while isinstance(t, (GraphQLNonNull, GraphQLList)):
                    t = t.of_type
                size = 1
                if is_list or t.name.endswith("Connection"):
                    size = self._size(s, self.limits.default_page)
                if t.name.endswith("Edge") or s.name.value == "edges":
                    size = 1  # the connection above already counted the page
                self.walk(s.selection_set, t, mult * max(1, size), seen)
            elif isinstance(s, InlineFragmentNode):
                self.walk(s.selection_set, parent, mult, seen)
            elif isinstance(s, FragmentSpreadNode) and s.name.value in self.frags and s.name.value not in seen:
                self.walk(self.frags[s.name.value].selection_set, parent, mult, (*seen, s.name.value))

    def _size(self, node: FieldNode, default: int | None) -> int:
        for arg in node.arguments or ():
            if arg.name.value in ("first", "last", "samples"):
                v = arg.value
                if isinstance(v, IntValueNode):
                    return max(0, int(v.value))
                if isinstance(v, VariableNode):
                    x = self.variables.get(v.name.value)
                    if isinstance(x, int) and not isinstance(x, bool):
                        return max(0, x)
        return default if default is not None else 1
