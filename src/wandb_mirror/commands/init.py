"""Write a commented configuration to start from, and say what to do next.

Creates DIR (default: the current directory) and DIR/config.toml: the documented example with
every option and safe defaults (every plugin off; nothing writes to W&B), its paths pointing
into DIR (the store in DIR/store, exports in DIR/export), relative to the file so the
directory can move. An existing config.toml is never overwritten.

    wandb-mirror init ~/wandb-mirror
    wandb-mirror init ~/wandb-mirror --base-url https://wandb.example.com
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

# the example's absolute service paths -> paths relative to the new file's directory
_PATHS = (
    (re.compile(r'^path = "/var/lib/wandb-mirror"', re.M), 'path = "store"'),
    (re.compile(r'"/var/lib/wandb-mirror/export"'), '"export"'),
    (re.compile(r'"/var/lib/wandb-mirror/best-runs"'), '"best-runs"'),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="where to put config.toml (created if missing)")
    p.add_argument("--base-url", metavar="URL", help="the W&B server (default: the W&B cloud, https://api.wandb.ai)")


def example_text() -> str:
    from importlib import resources

    return (resources.files("wandb_mirror") / "config.example.toml").read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..invocation import command

    d = Path(args.dir).expanduser().absolute()
    cfg = d / "config.toml"
    if cfg.exists():
        raise UsageError(f"{cfg} exists; not overwriting it (check it with: {command('check-config', cfg)})")
    if args.base_url is not None and not re.match(r"https?://[^\s/]+", args.base_url):
        raise UsageError(f"--base-url: expected http(s)://HOST[:PORT], got {args.base_url!r}")
    text = example_text()
    text = text.replace("#   wandb-mirror check-config config.example.toml", "#   wandb-mirror check-config FILE")
    for rx, repl in _PATHS:
        text = rx.sub(repl, text)
    if args.base_url:
        text = re.sub(r'^base_url = "[^"]*"', f'base_url = "{args.base_url.rstrip("/")}"', text, count=1, flags=re.M)
    try:
        d.mkdir(parents=True, exist_ok=True)
        with open(cfg, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UsageError(f"{cfg} exists; not overwriting it") from None
    except OSError as e:
        raise UsageError(f"cannot write {cfg}: {e.strerror or e}") from None
    print(f"wrote {cfg}: every option, commented; every plugin off (nothing writes to W&B)")
    print("next:")
    print(f"  1. edit [source] in it: which entities and projects to mirror ({_base_url(text)})")
    print("  2. give it an API key: `wandb login`, or export WANDB_API_KEY=...")
    print(f"  3. {command('check-config', cfg)}")
    print(f"  4. {command('sync', '--config', cfg, '--once')}        # one pass")
    print(f"  5. {command('status', '--store', d / 'store')}")
    print(f"  then run it as a service: {command('run', '--config', cfg)} (docs/daemon.md)")
    return 0


def _base_url(text: str) -> str:
    m = re.search(r'^base_url = "([^"]*)"', text, re.M)
    return f"now {m.group(1)}" if m else "base_url"
