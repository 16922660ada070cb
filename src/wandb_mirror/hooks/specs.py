"""Hook specifications (pluggy project `wandb_mirror`).

A plugin implements any subset of these with `@wandb_mirror.hooks.hookimpl` and names only the
arguments it needs: pluggy passes only what an implementation's signature asks for.

Every *event* hook also accepts three context arguments:

- `upstream`: an `Upstream` writer for this plugin (dry-run aware, journaled; see hooks/upstream.py);
- `config`: this plugin's own `[plugins.NAME]` table as a dict (with `enabled` and `dry_run`);
- `store`: a read-only `StoreView` of the mirror (runs, history, files, object bytes) plus this
  plugin's own small key/value state (`store.state`).

Events are delivered after the catalog commit, in change order (so in order per run), at least
once: a hook must tolerate seeing the same event again after a crash. Return values of event
hooks are ignored. A hook that raises is retried with backoff and the plugin is disabled after
repeated failures; a hook that runs past the timeout is abandoned. Neither stops the mirror.

Every hook here must be documented in docs/plugins.md (a test checks it).
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "wandb_mirror"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The context arguments every event hook may name, in this order, after its own arguments.
CONTEXT_ARGS = ("upstream", "config", "store")


@hookspec
def run_created(run, upstream, config, store) -> None:
    """A run was mirrored for the first time.

    `run` is a `hooks.types.Run`.
    """


@hookspec
def run_state_changed(run, old, new, upstream, config, store) -> None:
    """A run's state changed, e.g. "running" -> "finished".

    `old` and `new` are W&B state strings (`old` may be None); `run` is a `hooks.types.Run`.
    """


@hookspec
def run_updated(run, changes, upstream, config, store) -> None:
    """Fields of an already mirrored run changed (config, summary, tags, notes, ...).

    `changes` maps a field name (a `Run` field, e.g. "summary", "tags") to a
    `hooks.types.FieldChange(before, after)` of decoded values; for "summary" and "config" these
    are dicts of only the keys that differ (config values in W&B's wrapped form).
    """


@hookspec
def history_appended(run, first_step, last_step, upstream, config, store) -> None:
    """History rows `first_step..last_step` (inclusive) of `run` were mirrored.

    Read them with `store.history(run, min_step=first_step)`.
    """


@hookspec
def file_mirrored(run, file, upstream, config, store) -> None:
    """A run file was mirrored and verified; its bytes are in the store under `file.md5`.

    `file` is a `hooks.types.File`; `file.changed` is False if only its listing was refreshed.
    """


@hookspec
def artifact_version_mirrored(artifact, upstream, config, store) -> None:
    """An artifact version was mirrored and verified against its manifest.

    `artifact` is a `hooks.types.Artifact`; list its files with `store.artifact_files(artifact)`.
    """


@hookspec
def artifact_aliases_changed(artifact, added, removed, upstream, config, store) -> None:
    """The aliases of an artifact version changed upstream.

    `added` and `removed` are lists of alias names.
    """


@hookspec
def sweep_updated(sweep, upstream, config, store) -> None:
    """A sweep was mirrored for the first time or its fields (state, run count, ...) changed.

    `sweep` is a `hooks.types.Sweep`; its runs are `store.runs(sweep=sweep)`.
    """


@hookspec
def sweep_finished(sweep, upstream, config, store) -> None:
    """A sweep reached a final state (FINISHED, CANCELED, CRASHED)."""


@hookspec
def tombstoned(kind, key, upstream, config, store) -> None:
    """Something was deleted upstream; the mirror keeps it and marks it with a tombstone.

    `kind` is "project", "run", "file", "artifact", "collection", "sweep", "report" or "registry"; `key`
    is its path, e.g. "entity/project/run", "entity/project/run/file.txt" or "org-entity/wandb-registry-NAME".
    """


@hookspec
def artifact_linked(artifact, registry, collection, upstream, config, store) -> None:
    """An artifact version the mirror holds was linked into a registry collection.

    `artifact` is the linked (source) `hooks.types.Artifact`; `registry` is the registry's name
    (without the `wandb-registry-` prefix) and `collection` the registry collection's name.
    """


@hookspec
def artifact_unlinked(artifact, registry, collection, upstream, config, store) -> None:
    """A link from a registry collection to an artifact version was removed upstream.

    Same arguments as `artifact_linked`; the mirror keeps the link with a tombstone.
    """


@hookspec
def registry_aliases_changed(artifact, registry, collection, added, removed, upstream, config, store) -> None:
    """The aliases of a linked version in a registry collection changed (an alias moved).

    `added` and `removed` are lists of alias names of that link.
    """


@hookspec
def console_appended(run, first_line, last_line, upstream, config, store) -> None:
    """New console output of a run was mirrored: line numbers `first_line` to `last_line`."""


@hookspec
def automation_changed(automation, changes, upstream, config, store) -> None:
    """An automation was mirrored for the first time, or its name, description, enabled flag,
    scope, event or action changed. `automation` is a `hooks.types.Automation`; `changes` maps
    a field name to a `FieldChange` (empty for a new automation)."""


@hookspec
def cycle_finished(stats, upstream, config, store) -> None:
    """A daemon cycle (sync pass + event delivery) ended; `stats` is a `hooks.types.CycleStats`.

    Not durable: a cycle interrupted by a stop does not call it. Good for batching work that
    the event hooks marked as pending in `store.state`.
    """


@hookspec
def register_commands(cli) -> None:
    """Add subcommands to `wandb-mirror`.

    `cli` is the argparse subparsers object: `p = cli.add_parser("name", help="...")`, add
    arguments, then `p.set_defaults(_run=func)` where `func(args) -> int` is the exit code.
    Called for built-in and entry-point plugins (and plugins-dir plugins when
    WANDB_MIRROR_PLUGINS_DIR is set) whether or not they are enabled in a config.
    """


@hookspec(firstresult=True)
def storage_backend(config) -> Any:
    """Provide the object store for a store directory (first non-None result wins).

    `config` is the `[store]` table. Return an object implementing `wandb_mirror.store.Objects`
    (store/object_api.py) or None to leave the choice to other plugins; without any, the
    `[store] objects` location (default: the local `objects/md5/` store) is used.
    """


@hookspec
def check_config(config) -> list[str] | None:
    """Validate this plugin's `[plugins.NAME]` table before it is used.

    Return a list of problems ("key: why"), or None/[] when the table is fine. Called with only
    this plugin's own table when the configuration is loaded or reloaded; a plugin with problems
    keeps its previous configuration on reload, and fails `check-config`.
    """


# Every hook declared above, in declaration order. The event hooks are named like the change kinds
# (wandb_mirror.events), which build their arguments.
ALL_HOOKS: tuple[str, ...] = tuple(name for name, obj in list(globals().items())
                                   if callable(obj) and hasattr(obj, f"{PROJECT}_spec"))
