"""Finding, loading and configuring plugins.

Plugins come from three places, in this order:

1. the built-ins (`plugins/` in the repository, installed as the `wandb_mirror_plugins` package):
   the `wandb_mirror` entry points of this distribution (pyproject.toml);
2. the `wandb_mirror` entry points of other installed distributions;
3. `*.py` files in the configured plugins directory (`[daemon] plugins_dir`), loaded fresh on
   every (re)load so edits take effect without a restart.

A plugin's name is its module's `PLUGIN_NAME` if set, else the entry-point name or file stem.
A plugin that declares its keys (`CONFIG`, a dict of key -> default) gets those defaults filled in
and has any other key in its table refused; one that does not is handed its table as written.
Names are unique: a later source cannot shadow an earlier one (the clash is reported).
Each plugin reads its own `[plugins.NAME]` table; every plugin is off (`enabled = false`) and in
dry-run (`dry_run = true`) unless its table says otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
import types
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from ..times import parse_duration  # re-exported: plugins read durations as the config does
from . import specs

log = logging.getLogger("wandb_mirror.plugins")

BUILTIN_PACKAGE = "wandb_mirror_plugins"
ENTRYPOINT_GROUP = "wandb_mirror"
DISTRIBUTION = "wandb-mirror"
PLUGINS_DIR_PACKAGE = "wandb_mirror_plugins_dir"

# Keys every [plugins.NAME] table may have, handled by the plugin system itself.
COMMON_KEYS: dict[str, type | tuple[type, ...]] = {
    "enabled": bool,
    "dry_run": bool,
    "hook_timeout": (int, float, str),
    "max_failures": int,
}


@dataclass
class PluginInfo:
    """One plugin as loaded: where it came from, which hooks it implements, its settings."""

    name: str
    source: str  # "builtin", "entrypoint <dist> <version>", or "file <path>"
    module: Any = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why it could not be loaded (then it is not registered)
    digest: str = ""  # hash of the source file, to notice edits
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.error is None and bool(self.config.get("enabled", False))

    @property
    def dry_run(self) -> bool:
        return bool(self.config.get("dry_run", True))

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.module) if self.module is not None else ""
        return (doc or "").strip().splitlines()[0] if doc else ""


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(specs.PROJECT)
    pm.add_hookspecs(specs)
    return pm


def _file_digest(path: str | Path | None) -> str:
    if not path:
        return ""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def _load_module_from_path(modname: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return mod


def _import_builtin(name: str) -> types.ModuleType:
    return importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")


class PluginSet:
    """The loaded plugins and their pluggy manager. Build a new one to reload."""

    def __init__(self) -> None:
        self.pm = new_plugin_manager()
        self.plugins: dict[str, PluginInfo] = {}
        self.problems: list[str] = []  # load problems, one line each

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        plugins_dir: str | Path | None = None,
        builtins: bool = True,
        entrypoints: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> PluginSet:
        """Load plugins from every source. `extra` (name -> module/object) is for tests and embedders."""
        ps = cls()
        eps = _entry_points()
        for ep in [ep for ep in eps if _is_builtin(ep)] if builtins else []:
            ps._add_entry_point(ep, "builtin")
        for ep in [ep for ep in eps if not _is_builtin(ep)] if entrypoints else []:
            dist = getattr(ep, "dist", None)
            ps._add_entry_point(ep, f"entrypoint {dist.name} {dist.version}" if dist else f"entrypoint {ep.value}")
        if plugins_dir:
            d = Path(plugins_dir).expanduser()
            if not d.is_dir():
                ps.problems.append(f"plugins directory {d} does not exist")
                log.error("%s", ps.problems[-1])
            else:
                for path in sorted(d.glob("*.py")):
                    if path.name.startswith(("_", ".")):
                        continue
                    modname = f"{PLUGINS_DIR_PACKAGE}.{path.stem}"
                    sys.modules.pop(modname, None)  # always exec the file afresh: this is the reload path
                    try:
                        mod = _load_module_from_path(modname, path)
                    except BaseException as e:  # noqa: BLE001 - SyntaxError, SystemExit, anything
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        ps._problem(PluginInfo(path.stem, f"file {path}", error=f"import failed: {type(e).__name__}: {e}",
                                               digest=_file_digest(path)))
                        continue
                    ps._add(getattr(mod, "PLUGIN_NAME", path.stem), f"file {path}", mod, path)
        for name, obj in (extra or {}).items():
            ps._add(name, "registered", obj, getattr(obj, "__file__", None))
        return ps

    def _add_entry_point(self, ep: metadata.EntryPoint, source: str) -> None:
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop the mirror
            self._problem(PluginInfo(ep.name, source, error=f"import failed: {type(e).__name__}: {e}"))
            return
        self._add(getattr(obj, "PLUGIN_NAME", ep.name), source, obj, getattr(obj, "__file__", None))

    def _problem(self, info: PluginInfo) -> None:
        log.error("plugin %s (%s): %s", info.name, info.source, info.error)
        self.problems.append(f"plugin {info.name} ({info.source}): {info.error}")
        self.plugins.setdefault(info.name, info)

    def _add(self, name: str, source: str, obj: Any, path: Any) -> None:
        if name in self.plugins and self.plugins[name].error is None:
            self.problems.append(
                f"plugin {name} ({source}) not loaded: the name is taken by {self.plugins[name].source}"
            )
            log.error("%s", self.problems[-1])
            return
        info = PluginInfo(name, source, module=obj, digest=_file_digest(path))
        try:
            self.pm.register(obj, name=name)
        except Exception as e:  # noqa: BLE001 - pluggy validation errors name the bad hook
            info.error = f"{type(e).__name__}: {e}"
            self._problem(info)
            return
        hooks = []
        unknown = []
        for caller in self.pm.get_hookcallers(obj) or []:
            if caller.spec is None:
                unknown.append(caller.name)
            else:
                hooks.append(caller.name)
        if unknown:
            self.pm.unregister(obj)
            info.error = f"implements unknown hook(s) {', '.join(sorted(unknown))} (see docs/plugins.md for the hook names)"
            self._problem(info)
            return
        info.hooks = [h for h in specs.ALL_HOOKS if h in hooks]
        self.plugins[name] = info

    # -- configuration -----------------------------------------------------------------------
    def configure(self, sections: dict[str, Any] | None) -> list[str]:
        """Attach each `[plugins.NAME]` table to its plugin; returns the problems found.

        A problem means the configuration must not be used (check-config fails, a reload keeps
        the previous configuration). Unknown plugin names are a problem only when enabled.
        """
        problems = validate_sections(self, sections or {})
        for name, info in self.plugins.items():
            info.config = {**declared_keys(info), **dict((sections or {}).get(name) or {})}
        return problems

    def get(self, name: str) -> PluginInfo | None:
        return self.plugins.get(name)

    def loaded(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error is None]

    def enabled(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.enabled]

    def hook_caller(self, info: PluginInfo, hook: str):
        """A caller for `hook` that runs only this plugin's implementation(s)."""
        others = [p.module for p in self.plugins.values() if p.module is not info.module and p.error is None]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

    def storage_backend(self, store_config: dict[str, Any]) -> Any:
        """The first storage backend an *enabled* plugin offers for this `[store]` table, or None."""
        enabled = {id(p.module) for p in self.enabled()}
        others = [p.module for p in self.loaded() if id(p.module) not in enabled]
        return self.pm.subset_hook_caller("storage_backend", remove_plugins=others)(config=store_config)


def declared_keys(info: PluginInfo) -> dict[str, Any]:
    """The keys a plugin declares with their defaults (its module's `CONFIG`), {} if it declares none."""
    declared = getattr(info.module, "CONFIG", None)
    return dict(declared) if isinstance(declared, dict) else {}


def validate_sections(ps: PluginSet, sections: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(sections, dict):
        return [f"plugins: must be a table of [plugins.NAME] tables, not {type(sections).__name__}"]
    for name, section in sections.items():
        where = f"plugins.{name}"
        if not isinstance(section, dict):
            problems.append(f"{where}: must be a table")
            continue
        for key, typ in COMMON_KEYS.items():
            if key in section and not (isinstance(section[key], typ) and not (typ is int and isinstance(section[key], bool))):
                problems.append(f"{where}.{key}: expected {_typename(typ)}, got {section[key]!r}")
        if "hook_timeout" in section:
            try:
                parse_duration(section["hook_timeout"])
            except ValueError as e:
                problems.append(f"{where}.hook_timeout: {e}")
        if "max_failures" in section and isinstance(section["max_failures"], int) and section["max_failures"] < 1:
            problems.append(f"{where}.max_failures: must be at least 1")
        info = ps.plugins.get(name)
        if info is None:
            if section.get("enabled"):
                known = ", ".join(sorted(ps.plugins)) or "none"
                problems.append(f"{where}: no plugin named {name!r} is installed (known: {known})")
            continue
        if info.error is not None:
            if section.get("enabled"):
                problems.append(f"{where}: plugin failed to load: {info.error}")
            continue
        declared = declared_keys(info)
        if declared:
            allowed = set(COMMON_KEYS) | set(declared)
            unknown = [k for k in section if k not in allowed]
            for key in unknown:
                problems.append(f"{where}.{key}: unknown key (expected one of: {', '.join(sorted(allowed))})")
            if unknown:
                continue
        if "check_config" in info.hooks:
            own = {**declared, **section}
            try:
                results = ps.hook_caller(info, "check_config")(config=own)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{where}: check_config raised {type(e).__name__}: {e}")
                continue
            for res in results or []:
                for msg in res or []:
                    problems.append(msg if msg.startswith(where) else f"{where}.{msg}")
    return problems


def _typename(typ: Any) -> str:
    if isinstance(typ, tuple):
        return " or ".join(_typename(t) for t in typ)
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(typ, typ.__name__)


def _is_builtin(ep: metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name == DISTRIBUTION


def _entry_points() -> list[metadata.EntryPoint]:
    try:
        return list(metadata.entry_points(group=ENTRYPOINT_GROUP))
    except Exception:  # noqa: BLE001 - a broken distribution's metadata must not stop the mirror
        log.exception("reading entry points failed")
        return []


# The built-in plugins' names, as this distribution registers them.
BUILTIN_PLUGINS: tuple[str, ...] = tuple(ep.name for ep in _entry_points() if _is_builtin(ep))
