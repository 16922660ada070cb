"""Mirror the configured W&B projects into the store.

With --once: one pass, then exit (0 if the pass had no errors, 1 otherwise). Without: a pass every
poll_interval until interrupted. Only one writer may use a store at a time: a second sync (or the
daemon) on the same store refuses with a clear message. The API key comes from WANDB_API_KEY, else
from the ~/.netrc entry `wandb login` wrote for the base URL's host.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading

from ..config import load_config
from ..errors import PassAborted
from ..store.location import open_store
from ..sync import Progress, SyncEngine
from ..sync.engine import make_client, preflight
from .options import add_config

log = logging.getLogger("wandb_mirror.sync")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser, required=True)
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    parser.add_argument("--reconcile", action="store_true",
                        help="make the (first) pass a full reconcile: list every run and compare change markers")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display, only the summary line")


def run(args: argparse.Namespace) -> int:
    """SIGTERM and Ctrl-C set `stop`: requests, retry waits and downloads in progress end at once,
    the pass is recorded as stopped, and the next pass resumes. A second signal interrupts outright.
    The previous handlers are back when the command returns."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return _run(args, stop)

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: stopping the pass", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(args, stop)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    config = load_config(args.config)
    client = make_client(config)  # no key: one line, exit 2
    client.t.stop = stop
    try:
        # the key and the host are checked before the store is created: a mistake writes nothing
        viewer = preflight(config, client)
        store = open_store(config)
    except PassAborted:
        client.close()
        raise KeyboardInterrupt from None
    except BaseException:
        client.close()
        raise
    try:
        with store.lock("sync"):
            mode = "never" if args.quiet else config.sync.progress
            progress = Progress(stream=sys.stderr, mode=mode)
            engine = SyncEngine(config, store, client, progress=progress, force_reconcile=args.reconcile, viewer=viewer)
            try:
                while True:
                    result = engine.run_pass()
                    print(result.summary(), flush=True)
                    for err in result.errors[1:10]:
                        print(f"  error: {err}", file=sys.stderr)
                    if len(result.errors) > 10:
                        print(f"  ... and {len(result.errors) - 10} more (see `wandb-mirror status`)", file=sys.stderr)
                    if stop.is_set():
                        raise KeyboardInterrupt  # "interrupted", exit 130
                    if args.once:
                        return 0 if result.status == "ok" else 1
                    engine.force_reconcile = False
                    delay = config.sync.poll_interval
                    jitter = config.daemon.jitter
                    if jitter:
                        delay += random.uniform(0, jitter)
                    log.info("next pass in %.0fs", delay)
                    if stop.wait(delay):
                        raise KeyboardInterrupt
                    engine.progress = Progress(stream=sys.stderr, mode=mode,
                                               requests=lambda: engine.client.stats.total)
            finally:
                engine.client.close()
    finally:
        store.close()
