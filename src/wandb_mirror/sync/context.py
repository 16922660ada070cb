"""What the engine hands down to every unit of a pass (nothing reaches back up):

- `Context`: the client, the catalog, the object store, the pass's ledger and progress, the sync
  settings, and the few things units of one pass share (artifact locks, project pks);
- `ProjectRef`: the project a unit works in (entity, name, catalog pk, options, change scope).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..client import WandbClient
from ..config import ProjectOptions, SyncConfig
from ..store import Catalog, Objects
from . import changes as ch
from .ledger import Ledger
from .progress import Progress


class KeyedLocks:
    """One lock per key (an artifact id): two runs logging the same version mirror it once."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            lk = self._locks.get(key)
            if lk is None:
                lk = self._locks[key] = threading.Lock()
            return lk


@dataclass
class Context:
    settings: SyncConfig
    client: WandbClient
    catalog: Catalog
    objects: Objects
    ledger: Ledger
    progress: Progress
    artifact_lock: KeyedLocks = field(default_factory=KeyedLocks)
    _project_pks: dict[tuple[str, str], int] = field(default_factory=dict)
    _project_lock: threading.Lock = field(default_factory=threading.Lock)

    def project_pk(self, entity: str, name: str, *, id: str | None = None, internal_id: str | None = None) -> int:
        """The pk of a project row, creating a minimal one (for artifacts that live in other projects)."""
        with self._project_lock:
            pk = self._project_pks.get((entity, name))
            if pk is None:
                pk = self._project_pks[(entity, name)] = self.catalog.ensure_project(
                    entity, name, id=id, internal_id=internal_id)
            return pk

    def known_project(self, entity: str, name: str, pk: int) -> None:
        with self._project_lock:
            self._project_pks[(entity, name)] = pk


@dataclass
class ProjectRef:
    entity: str
    name: str
    pk: int
    opts: ProjectOptions
    scope: ch.Scope
    ok: bool = True  # no unit failed (a quarantine is not a failure): a reconcile may count as done

    @property
    def where(self) -> str:
        return f"{self.entity}/{self.name}"

    def failed(self) -> None:
        self.ok = False
