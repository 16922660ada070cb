"""The GraphQL schema the server answers: the project's own SDL (server/schema.graphql).

The SDL is a reconstruction of W&B's private schema (see its header) extended with what wandb-mirror
serves beyond it (artifact alias/update mutations, Artifact.artifactMemberships). The sync engine
validates its own documents against the same SDL, so `load_sdl()` is the single source.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from graphql import GraphQLSchema
from graphql import build_schema as _build_schema


@lru_cache(maxsize=1)
def load_sdl() -> str:
    """The SDL text shipped as package data (`wandb_mirror/server/schema.graphql`)."""
    here = resources.files("wandb_mirror.server")
    return "\n".join(here.joinpath(name).read_text(encoding="utf-8") for name in ("schema.graphql", "schema_org.graphql"))


def build_schema() -> GraphQLSchema:
    """A fresh graphql-core schema built from `load_sdl()` (no resolvers attached)."""
    return _build_schema(load_sdl())
