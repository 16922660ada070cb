"""The upstream client: requests + tenacity over W&B's GraphQL API (see transport.py, api.py)."""

from __future__ import annotations

from .api import PaginationError, WandbClient
from .auth import ApiKeyMissing, resolve_api_key
from .transport import (
    ApiError,
    AuthError,
    GraphQLError,
    NotFound,
    RequestStats,
    RetryBudgetExhausted,
    RetryPolicy,
    Transport,
)
from .types import (
    ArtifactTypeInfo,
    Problem,
    RemoteArtifact,
    RemoteCollection,
    RemoteFile,
    RunListing,
    RunsInfo,
    Viewer,
)

__all__ = [
    "WandbClient", "Transport", "RetryPolicy", "RequestStats", "resolve_api_key",
    "ApiError", "AuthError", "ApiKeyMissing", "GraphQLError", "NotFound", "PaginationError", "RetryBudgetExhausted",
    "ArtifactTypeInfo", "Problem", "RemoteArtifact", "RemoteCollection", "RemoteFile", "RunListing", "RunsInfo", "Viewer",
]
