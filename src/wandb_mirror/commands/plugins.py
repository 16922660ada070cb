"""List the plugins that would load: name, source (built-in, entry point, plugins-dir file),
whether the configuration enables them and in which mode, and the hooks each implements.

With --config, the [plugins.NAME] tables and [daemon] plugins_dir of that file are used, and the
store's delivery state (cursor, failures, disabled) is shown. --reset NAME re-enables a plugin
that was disabled after repeated failures (its cursor is kept).
"""

from __future__ import annotations

import argparse
import json

from .options import add_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser)
    parser.add_argument("--plugins-dir", metavar="DIR", help="also load *.py plugins from DIR")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--reset", metavar="NAME", help="clear NAME's failures and disabled mark (needs --config)")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..hooks.manager import PluginSet
    from ..hooks.plugin_status import effect, plugin_rows

    cfg = None
    sections: dict = {}
    pdir = args.plugins_dir
    if args.config:
        from ..config import load_config
        from ..daemon.host import PluginConfig

        cfg = load_config(args.config)
        pc = PluginConfig.from_config(cfg)
        sections = pc.sections
        pdir = pdir or pc.plugins_dir
    elif args.reset:
        raise UsageError("--reset needs --config (to find the store)")
    ps = PluginSet.load(plugins_dir=pdir)
    problems = ps.configure(sections)
    state: dict = {}
    from ..store.location import StoreLocation, open_store

    loc = StoreLocation.from_config(cfg) if cfg is not None else None
    if loc is not None and loc.exists():
        if args.reset:
            with open_store(loc, create=False) as store:
                n = store.catalog.conn.execute(
                    "UPDATE plugin_cursors SET failures = 0, disabled_at = NULL, retry_at = NULL WHERE plugin = ?",
                    [args.reset]).rowcount
                store.catalog.conn.commit()
            if not n:
                raise UsageError(f"no delivery state for plugin {args.reset!r} in {loc.describe_catalog()}")
            print(f"plugin {args.reset}: failures cleared, re-enabled (a running daemon picks it up on reload)")
        with open_store(loc, create=False, readonly=True) as store:
            state = {r["name"]: r for r in plugin_rows(store)}
    elif args.reset and loc is not None:
        raise UsageError(f"catalog {loc.describe_catalog()} does not exist yet; nothing to reset")
    out = []
    for info in ps.plugins.values():
        out.append({
            "name": info.name, "source": info.source, "enabled": info.enabled, "dry_run": info.dry_run,
            "writes": getattr(info.module, "WRITES", "upstream"), "mode": effect(info),
            "hooks": info.hooks, "error": info.error, "description": info.description,
            **({"delivery": state[info.name]} if info.name in state else {}),
        })
    if args.json:
        print(json.dumps({"plugins": out, "problems": ps.problems + problems}, indent=2))
        return 0
    for p in out:
        print(f"{p['name']:<18} {p['mode']:<40} {p['source']}")
        if p["description"]:
            print(f"    {p['description']}")
        if p["error"]:
            print(f"    error: {p['error']}")
        else:
            print(f"    hooks: {', '.join(p['hooks']) or 'none'}")
        d = p.get("delivery")
        if d:
            line = f"    delivery: cursor {d['seq']}, {d['pending']} pending, {d['failures']} consecutive failures"
            if d["disabled_at"]:
                line += f", DISABLED at {d['disabled_at']}"
            print(line)
            if d["last_error"]:
                print(f"    last error: {d['last_error'].splitlines()[0]}")
    for prob in ps.problems + problems:
        print(f"problem: {prob}")
    return 0
