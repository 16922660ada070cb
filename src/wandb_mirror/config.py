"""The configuration file (TOML): what to mirror, where to, how often, and the plugins' sections.

    [source]
    base_url = "https://api.wandb.ai"  # default: $WANDB_BASE_URL, wandb's settings file, the W&B cloud
    entities = ["my-team"]           # default: the API key's default entity
    projects = ["my-team/*"]         # globs over "entity/project" (or over "project"); default: all
    exclude_projects = []
    history = true                   # the per-project toggles, defaults for every project
    events = true
    files = true
    files_include = ["*"]
    files_exclude = []
    artifacts = true
    artifact_types = []              # empty: every type
    sweeps = true
    reports = true

    [[source.override]]              # per-project toggles, later overrides win
    match = "my-team/huge-*"
    files_exclude = ["media/*"]

    [store]
    path = "mirror"                  # relative to this file's directory

    [sync]                           # durations: 90, "90s", "5m", "1h30m", "1d"
    poll_interval = "60s"
    concurrency = 8
    rate_limit = 0                   # requests per second, 0: unlimited (shared by a store's workers)
    reconcile_interval = "1h"

    [daemon]                         # read by the daemon: poll_interval, jitter, plugins_dir, metrics_port,
                                     # metrics_host, hook_timeout, max_failures, retry_backoff(_max), stop_grace, lease
    [plugins.NAME]                   # owned by each plugin; validated by the plugin system

Errors name the key and its line and exit 2 (UsageError). The sections this module does not own
([daemon] beyond the keys above, [plugins.*]) are kept verbatim in `Config.raw`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import sys
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import UsageError
from .times import parse_duration

DEFAULT_BASE_URL = "https://api.wandb.ai"
MAX_CONCURRENCY = 64


class ConfigError(UsageError):
    """A configuration problem; the message names the file, line and key."""


# ---------------------------------------------------------------------------------------------
# the declarations: every key once, on the dataclass field that holds it
# ---------------------------------------------------------------------------------------------
# kinds: str, url, bool, int+ (>0), int0 (>=0), port (1-65535), float0 (>=0), duration, duration+ (>0),
#        strlist, globlist, path, location (a path or scheme://...), progress
T = TypeVar("T")


@dataclass(frozen=True)
class Key:
    """One configuration key: how its value is checked, its default (None: unset) and what it means."""

    kind: str
    default: Any
    help: str


def setting(kind: str, default: T, help: str) -> T:
    """A dataclass field that is also a configuration key (read back by `keys_of`)."""
    meta = {"key": Key(kind, default, help)}
    if isinstance(default, list):
        items = list(default)
        return cast(T, field(default_factory=lambda: list(items), metadata=meta))
    return cast(T, field(default=default, metadata=meta))


def keys_of(cls: type) -> dict[str, Key]:
    """The configuration keys a dataclass declares, in declaration order."""
    return {f.name: f.metadata["key"] for f in dataclasses.fields(cls) if "key" in f.metadata}


@dataclass
class ProjectOptions:
    """What to mirror of one project: [source] holds the defaults, [[source.override]] per-project values."""

    history: bool = setting("bool", True, "full, unsampled history")
    events: bool = setting("bool", True, "system metrics")
    files: bool = setting("bool", True, "run files")
    files_include: list[str] = setting("globlist", ["*"], "globs over file names")
    files_exclude: list[str] = setting("globlist", [], "globs over file names, excluded")
    artifacts: bool = setting("bool", True, "artifact versions")
    artifact_types: list[str] = setting("strlist", [], "artifact types to mirror; empty: every type")
    sweeps: bool = setting("bool", True, "sweeps")
    reports: bool = setting("bool", True, "reports")

    def want_file(self, name: str) -> bool:
        if not self.files:
            return False
        if not any(fnmatch.fnmatchcase(name, g) for g in self.files_include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in self.files_exclude)

    def want_artifact_type(self, type_name: str) -> bool:
        return self.artifacts and (not self.artifact_types or type_name in self.artifact_types)


@dataclass
class SourceConfig:
    base_url: str = setting("url", DEFAULT_BASE_URL, "the W&B API; a self-hosted server works the same way")
    entities: list[str] = setting("strlist", [], "entities to mirror; default: the API key's default entity")
    projects: list[str] = setting("globlist", [], "globs over \"entity/project\" (or \"project\"); default: all")
    exclude_projects: list[str] = setting("globlist", [], "globs of projects left out")
    user_agent: str | None = setting("str", None, "default: wandb-mirror/VERSION")
    timeout: float = setting("duration+", 60.0, "per HTTP request")
    page_size: int = setting("int+", 50, "items per page when listing")
    defaults: ProjectOptions = field(default_factory=ProjectOptions)
    overrides: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)


@dataclass
class StoreConfig:
    path: Path | None = setting("path", None, "catalog.db + objects/md5/..; one daemon per store")
    catalog: str | None = setting("location", None, "the SQLite catalog elsewhere (default PATH/catalog.db), "
                                                 "or postgresql://USER@HOST:PORT/DB")
    objects: str | None = setting("location", None, "a directory or s3://BUCKET/PREFIX (default PATH/objects)")
    s3_endpoint_url: str | None = setting("url", None, "S3-compatible endpoint; default $AWS_ENDPOINT_URL, else AWS")


@dataclass
class SyncConfig:
    poll_interval: float = setting("duration+", 60.0, "how often a pass starts (the daemon's [daemon] value wins)")
    concurrency: int = setting("int+", 8, f"parallel requests (at most {MAX_CONCURRENCY})")
    rate_limit: float = setting("float0", 0.0, "requests per second, 0: unlimited (shared by a store's workers)")
    reconcile_interval: float = setting("duration+", 3600.0,
                                        "full listing to find edits of finished runs and deletions")
    marker_listing_max_runs: int = setting("int0", 10000, "projects with at most this many runs list every "
                                           "run's change markers each pass (edits arrive at the next pass)")
    max_retries: int = setting("int+", 10, "per request (429, 5xx, connection errors; Retry-After honoured)")
    retry_wait_min: float = setting("duration", 1.0, "first wait before a retry")
    retry_wait_max: float = setting("duration", 60.0, "longest wait before a retry")
    max_call_time: float = setting("duration+", 300.0, "per request, waits included")
    retry_budget: int = setting("int0", 500, "retries per pass before it gives up")
    history_page_size: int = setting("int+", 1000, "history rows per request")
    events_samples: int = setting("int+", 100000, "system-metrics rows per run")
    max_response_mb: int = setting("int+", 512, "a GraphQL answer larger than this (MB) fails the call")
    progress: str = setting("progress", "auto", "auto | always | never (a status line on a terminal)")
    organization: bool = setting("bool", True, "registries and their links, console output, team members, "
                                 "automations and integrations (never secrets)")


@dataclass
class DaemonConfig:
    poll_interval: float = setting("duration+", 60.0, "a cycle (sync pass, then plugin delivery) starts this often")
    jitter: float = setting("duration", 0.0, "+- random seconds per cycle, to spread many mirrors out")
    plugins_dir: Path | None = setting("path", None, "*.py plugins, hot-reloaded on edit")
    metrics_port: int | None = setting("port", None, "Prometheus text endpoint (GET /metrics); off by default")
    metrics_host: str = setting("str", "127.0.0.1", "keep it on loopback unless you know better")
    # plugin delivery (hooks/delivery.py); a plugin's own table may override hook_timeout and max_failures
    hook_timeout: float = setting("duration+", 60.0, "a hook running longer is abandoned (and counts as a failure)")
    max_failures: int = setting("int+", 5, "consecutive failures before a plugin is disabled")
    retry_backoff: float = setting("duration", 5.0, "first retry after a failure; doubles each time")
    retry_backoff_max: float = setting("duration", 600.0, "the longest retry_backoff")
    stop_grace: float = setting("duration", 5.0, "on SIGTERM, how long a hook in flight may still run")
    lease: float = setting("duration+", 60.0, "several workers: a dead worker's project is taken over after this")


PROJECT_TOGGLES = keys_of(ProjectOptions)
SOURCE_KEYS = {**keys_of(SourceConfig), **PROJECT_TOGGLES}
STORE_KEYS = keys_of(StoreConfig)
SYNC_KEYS = keys_of(SyncConfig)
DAEMON_KEYS = keys_of(DaemonConfig)
SECTIONS = ("source", "store", "sync", "daemon", "plugins")


# ---------------------------------------------------------------------------------------------
# the config object
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    source: SourceConfig
    store_path: Path | None  # None when [store] names catalog and objects instead of one directory
    store: dict[str, Any] = field(default_factory=dict)  # the checked [store] table (store/location.py)
    sync: SyncConfig = field(default_factory=SyncConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict, repr=False)

    def line_of(self, *keys: Any) -> int | None:
        """The line of a key (or table header) in the file, for messages about keys others own."""
        return self.lines.get(tuple(keys))

    def where(self, *keys: Any) -> str:
        line = self.line_of(*keys)
        name = str(self.path) if self.path else "config"
        return f"{name}:{line}" if line else name

    def selects(self, entity: str, project: str) -> bool:
        """Whether entity/project is to be mirrored (projects globs, minus exclude_projects)."""
        if self.source.projects and not any(_glob_hits(g, entity, project) for g in self.source.projects):
            return False
        return not any(_glob_hits(g, entity, project) for g in self.source.exclude_projects)

    def unmatched(self, listed: Iterable[tuple[str, str]], entities: Iterable[str]) -> list[str]:
        """What the configuration names that no listed (entity, project) matches: a typo, most likely."""
        listed = list(listed)
        have = {e for e, _ in listed}
        out = [f"entity {e!r} has no project the API key can see" for e in entities if e not in have]
        for key in ("projects", "exclude_projects"):
            for g in getattr(self.source, key):
                if not any(_glob_hits(g, e, p) for e, p in listed):
                    out.append(f"[source] {key} glob {g!r} matches no project")
        return out

    def project_options(self, entity: str, project: str) -> ProjectOptions:
        opts = dataclasses.replace(self.source.defaults, files_include=list(self.source.defaults.files_include),
                                   files_exclude=list(self.source.defaults.files_exclude),
                                   artifact_types=list(self.source.defaults.artifact_types))
        for globs, values in self.source.overrides:
            if any(_glob_hits(g, entity, project) for g in globs):
                for k, v in values.items():
                    setattr(opts, k, list(v) if isinstance(v, list) else v)
        return opts


def _glob_hits(glob: str, entity: str, project: str) -> bool:
    """A project glob matches "entity/project" when it has a "/", else the project name alone."""
    return fnmatch.fnmatchcase(f"{entity}/{project}" if "/" in glob else project, glob)


# ---------------------------------------------------------------------------------------------
# line numbers: tomllib gives none for keys, so find them in the text
# ---------------------------------------------------------------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _read_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """Parse a dotted TOML key starting at `pos`; returns (parts, position after the key)."""
    parts: list[str] = []
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n:
            return None
        c = text[pos]
        if c in "\"'":
            end = pos + 1
            buf = []
            while end < n and text[end] != c:
                if c == '"' and text[end] == "\\" and end + 1 < n:
                    buf.append(text[end + 1])
                    end += 2
                    continue
                buf.append(text[end])
                end += 1
            if end >= n:
                return None
            parts.append("".join(buf))
            pos = end + 1
        else:
            m = _BARE.match(text, pos)
            if not m:
                return None
            parts.append(m.group(0))
            pos = m.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


def locate_keys(text: str) -> dict[tuple[Any, ...], int]:
    """Map key paths (as tuples; array-of-table items carry their index) to 1-based line numbers."""
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    aot_counts: dict[tuple[Any, ...], int] = {}
    in_multiline: str | None = None
    depth = 0  # open brackets of a multi-line array value
    for i, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        stripped = line.strip()
        if depth > 0:
            depth += stripped.count("[") - stripped.count("]")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            got = _read_key(stripped, 2)
            if got:
                path = tuple(got[0])
                idx = aot_counts.get(path, 0)
                aot_counts[path] = idx + 1
                table = path + (idx,)
                lines.setdefault(path, i)
                lines[table] = i
            continue
        if stripped.startswith("["):
            got = _read_key(stripped, 1)
            if got:
                table = tuple(got[0])
                lines[table] = i
            continue
        got = _read_key(stripped, 0)
        if not got:
            continue
        parts, pos = got
        if pos >= len(stripped) or stripped[pos] != "=":
            continue
        key = table + tuple(parts)
        lines.setdefault(key, i)
        value = stripped[pos + 1:].strip()
        for q in ('"""', "'''"):
            if value.startswith(q) and value.count(q) == 1:
                in_multiline = q
        if value.startswith("["):
            depth = _bracket_balance(value)
    return lines


def _bracket_balance(value: str) -> int:
    depth = 0
    quote = None
    for c in value:
        if quote:
            if c == quote:
                quote = None
            continue
        if c in "\"'":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "#":
            break
    return max(depth, 0)


# ---------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------
class _Checker:
    def __init__(self, path: Path | None, lines: dict[tuple[Any, ...], int]):
        self.path = path
        self.lines = lines

    def fail(self, keys: tuple[Any, ...], message: str) -> ConfigError:
        line = None
        for n in range(len(keys), 0, -1):
            line = self.lines.get(keys[:n])
            if line:
                break
        where = str(self.path) if self.path else "config"
        if line:
            where += f":{line}"
        return ConfigError(f"{where}: {_dotted(keys)}: {message}")

    def value(self, keys: tuple[Any, ...], kind: str, value: Any, base_dir: Path | None) -> Any:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise self.fail(keys, f"expected {what}, got {_show(value)}")

        if kind == "str":
            need(isinstance(value, str), "a string")
            return value
        if kind == "url":
            netloc = value.split("//", 1)[1].split("/", 1)[0] if isinstance(value, str) and "//" in value else ""
            if "@" in netloc:
                # never echo it: the part before "@" is a secret
                raise self.fail(keys, "must not contain credentials (user:key@); the API key belongs in "
                                      "WANDB_API_KEY or ~/.netrc, never in the configuration")
            need(isinstance(value, str) and re.match(r"^https?://[^/\s]+", value or "") is not None,
                 "an http:// or https:// URL")
            return value.rstrip("/")
        if kind == "bool":
            need(isinstance(value, bool), "true or false")
            return value
        if kind in ("int+", "int0", "port"):
            need(isinstance(value, int) and not isinstance(value, bool), "an integer")
            if kind == "int+":
                need(value > 0, "an integer > 0")
            elif kind == "int0":
                need(value >= 0, "an integer >= 0")
            else:
                need(1 <= value <= 65535, "a port number (1-65535)")
            return value
        if kind == "float0":
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, "a number >= 0")
            return float(value)
        if kind in ("duration", "duration+"):
            try:
                secs = parse_duration(value)
            except ValueError as e:
                raise self.fail(keys, str(e)) from None
            if kind == "duration+" and secs <= 0:
                raise self.fail(keys, f"expected a duration > 0, got {_show(value)}")
            return secs
        if kind in ("strlist", "globlist"):
            if isinstance(value, str):
                value = [value]
            need(isinstance(value, list) and all(isinstance(x, str) and x for x in value),
                 "a list of non-empty strings")
            return list(value)
        if kind == "location":  # a URL (scheme://...) kept as written, or a path resolved like one
            need(isinstance(value, str) and value != "", "a path or a URL")
            if re.match(r"^[a-z][a-z0-9+.-]*://", value):
                return value
            kind = "path"
        if kind == "path":
            need(isinstance(value, str) and value != "", "a path")
            p = Path(value).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            return p
        if kind == "progress":
            if isinstance(value, bool):
                return "always" if value else "never"
            need(value in ("auto", "always", "never"), "\"auto\", \"always\", \"never\", true or false")
            return value
        raise AssertionError(kind)

    def section(self, name: tuple[Any, ...], table: Any, spec: dict[str, Key],
                base_dir: Path | None, *, extra: Set[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.fail(name, f"expected a table ([{_dotted(name)}]), got {_show(table)}")
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key in extra:
                continue
            if key not in spec:
                raise self.fail(name + (key,), f"unknown key (expected one of: {', '.join(sorted(set(spec) | extra))})")
            out[key] = self.value(name + (key,), spec[key].kind, value, base_dir)
        return out


def _dotted(keys: tuple[Any, ...]) -> str:
    out = ""
    for k in keys:
        if isinstance(k, int):
            out += f"[{k}]"
        else:
            k = str(k)
            seg = k if _BARE.fullmatch(k) else f'"{k}"'
            out += f".{seg}" if out else seg
    return out or "(top level)"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_config(text: str, path: Path | None = None) -> Config:
    """Validate TOML text and build a Config. Relative paths resolve against `path`'s directory."""
    where = str(path) if path else "config"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[:m.start()].strip() + f" (column {m.group(2)})"
            raise ConfigError(f"{where}:{m.group(1)}: not valid TOML: {msg}") from None
        raise ConfigError(f"{where}: not valid TOML: {msg}") from None
    lines = locate_keys(text)
    chk = _Checker(path, lines)
    base_dir = path.resolve().parent if path else Path.cwd()

    for key in raw:
        if key not in SECTIONS:
            raise chk.fail((key,), f"unknown section or key (expected: {', '.join(f'[{s}]' for s in SECTIONS)})")

    # [source]
    src_raw = raw.get("source", {})
    src = chk.section(("source",), src_raw, SOURCE_KEYS, base_dir, extra={"override"})
    if "base_url" not in src:
        src["base_url"] = _default_base_url()
    toggles = {k: v for k, v in src.items() if k in PROJECT_TOGGLES}
    defaults = ProjectOptions(**toggles)
    overrides: list[tuple[list[str], dict[str, Any]]] = []
    ov_raw = src_raw.get("override", [])
    if isinstance(ov_raw, dict):
        ov_raw = [ov_raw]
    if not isinstance(ov_raw, list):
        raise chk.fail(("source", "override"), "expected [[source.override]] tables")
    for i, ov in enumerate(ov_raw):
        name = ("source", "override", i)
        if not isinstance(ov, dict):
            raise chk.fail(name, "expected a table")
        if "match" not in ov:
            raise chk.fail(name, "missing required key match (a project glob, or a list of them)")
        globs = chk.value(name + ("match",), "globlist", ov["match"], base_dir)
        values = chk.section(name, ov, PROJECT_TOGGLES, base_dir, extra={"match"})
        overrides.append((globs, values))
    source = SourceConfig(**{k: v for k, v in src.items() if k not in PROJECT_TOGGLES}, defaults=defaults,
                          overrides=overrides)

    # [store]
    if "store" not in raw:
        raise ConfigError(f"{where}: missing [store] section (it needs path)")
    store = chk.section(("store",), raw["store"], STORE_KEYS, base_dir)
    if "path" not in store and not ("catalog" in store and "objects" in store):
        raise chk.fail(("store",), "missing required key path (or both catalog and objects)")
    for key, schemes in (("catalog", ("sqlite", "postgresql", "postgres")), ("objects", ("s3",))):
        scheme = str(store.get(key, "")).partition("://")[0] if "://" in str(store.get(key, "")) else None
        if scheme is not None and scheme not in schemes:
            raise chk.fail(("store", key), f"unsupported URL scheme {scheme}:// (expected a path or "
                                           + " or ".join(f"{x}://" for x in schemes) + ")")

    # [sync], [daemon]
    sync_vals = chk.section(("sync",), raw.get("sync", {}), SYNC_KEYS, base_dir)
    daemon_vals = chk.section(("daemon",), raw.get("daemon", {}), DAEMON_KEYS, base_dir)
    poll = sync_vals.get("poll_interval") or daemon_vals.get("poll_interval") or 60.0
    sync_vals["poll_interval"] = poll
    if sync_vals.get("concurrency", 8) > MAX_CONCURRENCY:
        raise chk.fail(("sync", "concurrency"), f"expected at most {MAX_CONCURRENCY}, got {sync_vals['concurrency']}")
    if sync_vals.get("retry_wait_min", 1.0) > sync_vals.get("retry_wait_max", 60.0):
        raise chk.fail(("sync", "retry_wait_min"), "must not exceed retry_wait_max")
    sync = SyncConfig(**sync_vals)
    daemon = DaemonConfig(**{**daemon_vals, "poll_interval": daemon_vals.get("poll_interval") or poll})

    # [plugins.NAME]: tables whose keys belong to each plugin
    plugins_raw = raw.get("plugins", {})
    if not isinstance(plugins_raw, dict):
        raise chk.fail(("plugins",), "expected [plugins.NAME] tables")
    plugins: dict[str, dict[str, Any]] = {}
    for name, table in plugins_raw.items():
        if not isinstance(table, dict):
            raise chk.fail(("plugins", name), f"expected a table [plugins.{name}], got {_show(table)}")
        plugins[name] = resolve_plugin_paths(table, base_dir)

    return Config(source=source, store_path=store.get("path"), store=store, sync=sync, daemon=daemon, plugins=plugins, raw=raw,
                  path=path, lines=lines)


def _default_base_url() -> str:
    """The upstream when [source] names none: where the official client would look (client/auth.py)."""
    from .client.auth import default_base_url

    url, origin = default_base_url()
    try:
        return _Checker(None, {}).value(("base_url",), "url", url, None)
    except ConfigError:
        raise ConfigError(f"{origin}: base_url: expected an http:// or https:// URL, got {_show(url)}") from None


def is_path_key(key: str) -> bool:
    """Plugin keys that name a filesystem path, by convention: `out`, `path`, `*_dir`, `*_path`."""
    return key in ("out", "path") or key.endswith(("_dir", "_path"))


def resolve_plugin_paths(table: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Relative paths in a plugin table mean "relative to the config file", like [store] path."""
    out = dict(table)
    for key, value in table.items():
        if is_path_key(key) and isinstance(value, str) and value:
            p = Path(value).expanduser()
            out[key] = str(p if p.is_absolute() or base_dir is None else (base_dir / p))
    return out


def load_config(path: str | Path) -> Config:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {p} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {p}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    return parse_config(text, p)


def minimal_config(base_url: str, store_path: str | Path, **sync: Any) -> Config:
    """A Config without a file: mirror every project of the key's default entity."""
    return Config(source=SourceConfig(base_url=base_url.rstrip("/")), store_path=Path(store_path),
                  sync=SyncConfig(**sync))
