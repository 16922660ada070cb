"""A W&B-compatible HTTP server over a store (`wandb-mirror serve`)."""

from __future__ import annotations
