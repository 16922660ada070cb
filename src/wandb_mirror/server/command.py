"""Serve a store over the W&B API, so the official `wandb` client (and wandb-mirror itself) can read it.

The first line on stdout is `listening on http://HOST:PORT` (so `--port 0` is usable by scripts).
Without --api-key any key is accepted; with it, GraphQL and file downloads demand Basic auth
`api:KEY` and directUrls carry a signature derived from the key.

Read-only by default: the store is opened read-only (safe beside a daemon writing it) and every
mutation and upload is refused; --writable accepts them (a test upstream, the demo, `restore`
targets: what wandb.init / log / log_artifact / finish and `restore` send). Requests whose Host
header is not the bound address, a localhost name or an IP literal are refused (DNS rebinding);
--allow-host NAME adds a name. POST /graphql demands Content-Type: application/json, bodies are
capped (413) and queries are limited in depth, aliases and cost. --include-deleted serves what
upstream deleted (and the mirror kept) as if it were live; it is always read-only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ..commands.store_args import add_store_arguments, open_store_from_args
from ..errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser, help="the store directory to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one (default 8080)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--read-only", action="store_true",
                      help="refuse mutations and uploads; open the store read-only (the default)")
    mode.add_argument("--writable", action="store_true",
                      help="accept mutations and uploads into the store (a test upstream, a restore target)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer requests whose Host header is NAME (repeatable; localhost names and "
                             "IP addresses are always allowed)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="demand this API key (Basic auth api:KEY); default: accept any key. "
                             "Visible to `ps`: prefer --api-key-file or $WANDB_MIRROR_SERVE_API_KEY")
    parser.add_argument("--api-key-file", default=None, metavar="FILE",
                        help="read the key to demand from FILE (first line)")
    parser.add_argument("--include-deleted", action="store_true",
                        help="serve what upstream deleted (runs, files, artifact versions, sweeps) as if live; "
                             "implies --read-only")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="N", help="add N ms to every response")
    parser.add_argument("--fault-rate", type=float, default=0.0, metavar="F",
                        help="share of responses (0..1) turned into 429/500/dropped/truncated/corrupted ones")
    parser.add_argument("--fault-seed", type=int, default=0, metavar="S", help="seed of the fault decisions")
    parser.add_argument("--parquet-export-delay", type=float, default=0.0, metavar="SECONDS",
                        help="offer a run's history as parquet exports (parquetHistory) this long after it was "
                             "written to a segment; younger history is live data, read through HistoryPage "
                             "(default 0; W&B itself takes hours)")


def run(args: argparse.Namespace) -> int:
    from .app import make_server

    if not 0.0 <= args.fault_rate <= 1.0:
        raise UsageError(f"--fault-rate must be between 0 and 1, got {args.fault_rate}")
    if args.latency_ms < 0:
        raise UsageError(f"--latency-ms must not be negative, got {args.latency_ms}")
    if args.parquet_export_delay < 0:
        raise UsageError(f"--parquet-export-delay must not be negative, got {args.parquet_export_delay}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.include_deleted and args.writable:
        raise UsageError("--include-deleted serves a read-only view of the store; it cannot be combined with --writable")
    api_key = server_api_key(args)
    read_only = not args.writable or args.include_deleted
    store = open_store_from_args(args, readonly=read_only)
    try:
        server = make_server(store, args.host, args.port, api_key=api_key, read_only=read_only,
                             latency_ms=args.latency_ms, fault_rate=args.fault_rate, fault_seed=args.fault_seed,
                             allow_hosts=frozenset(args.allow_host), include_deleted=args.include_deleted)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    server.parquet_export_delay = args.parquet_export_delay
    host, port = server.server_address[:2]
    host = str(host)
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{port}", flush=True)

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.close_all()
        server.data.close()
        store.close()
    print("stopped", file=sys.stderr, flush=True)
    return 0


def server_api_key(args: argparse.Namespace) -> str | None:
    """The key `serve` demands: --api-key, --api-key-file or $WANDB_MIRROR_SERVE_API_KEY (at most one)."""
    given = [x for x in (args.api_key, args.api_key_file) if x]
    if len(given) > 1:
        raise UsageError("give --api-key or --api-key-file, not both")
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text().splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read a key from --api-key-file {args.api_key_file}: "
                             f"{getattr(e, 'strerror', None) or 'empty file'}") from None
        if not key:
            raise UsageError(f"--api-key-file {args.api_key_file} holds no key")
        return key
    return args.api_key or os.environ.get("WANDB_MIRROR_SERVE_API_KEY") or None
