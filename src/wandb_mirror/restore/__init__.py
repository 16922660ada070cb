"""Give a store's data back to a W&B server (`restore`) or to a folder (`checkout`).

Restore speaks W&B's write protocol directly (restore/target.py), the way the official client's
wandb-core does, rather than replaying the official client's offline run format: only the
protocol can carry a run's original `_step`, `_timestamp` and `_runtime`, its system-metric events,
its run id and files byte for byte, and artifact manifests with their digests, and it keeps the
official client out of the package's runtime dependencies. docs/restore.md has the details.
"""

from .runner import Counts, ProjectRestore

__all__ = ["Counts", "ProjectRestore"]
