"""A W&B-compatible HTTP server over a store (`wandb-mirror serve`).

In-process use (tests, demo, bench)::

    from wandb_mirror.server import start_server
    handle = start_server("/path/to/store")      # port 0: a free port
    api = wandb.Api(api_key="x" * 40, overrides={"base_url": handle.url})
    ...
    handle.request_log(); handle.reset_log(); handle.stop()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ServerHandle, start_server

__all__ = ["start_server", "ServerHandle"]


def __getattr__(name: str) -> Any:
    # lazy, so `wandb_mirror.server.schema` (used by the sync engine) does not pull in the HTTP stack
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
