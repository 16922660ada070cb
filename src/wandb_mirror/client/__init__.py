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
    "WandbClient", "Transport", "RetryPolicy", "RequestStats", "resolve_api_key", "connect",
    "ApiError", "AuthError", "ApiKeyMissing", "GraphQLError", "NotFound", "PaginationError", "RetryBudgetExhausted",
    "ArtifactTypeInfo", "Problem", "RemoteArtifact", "RemoteCollection", "RemoteFile", "RunListing", "RunsInfo", "Viewer",
]


def connect(base_url: str, api_key: str | None = None, *, concurrency: int = 4, rate_limit: float = 0.0,
            timeout: float = 60.0, retry: RetryPolicy | None = None, user_agent: str | None = None,
            page_size: int = 50) -> WandbClient:
    """A ready client for `base_url`; the key defaults to WANDB_API_KEY, then ~/.netrc."""
    key = resolve_api_key(base_url, api_key)
    t = Transport(base_url, key, concurrency=concurrency, rate_limit=rate_limit, timeout=timeout, retry=retry,
                  user_agent=user_agent)
    return WandbClient(t, page_size=page_size)
