"""The daemon's watcher reacts only to the config file and the plugin files: at debug level, a log
file next to the config must not feed a loop of log lines about its own writes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from wandb_mirror.daemon.watch import ConfigWatcher


def test_a_log_file_next_to_the_config_does_not_feed_the_watcher(tmp_path: Path) -> None:
    cfg = tmp_path / "mirror.toml"
    cfg.write_text("# config\n")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    logfile = tmp_path / "daemon.log"
    handler = logging.FileHandler(logfile)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("watchdog").setLevel(logging.NOTSET)  # as a -vv daemon starts
    changes: list[float] = []
    w = ConfigWatcher(cfg, plugins, lambda: changes.append(time.monotonic()), debounce=0.1).start()
    try:
        logging.getLogger("wandb_mirror.daemon").debug("a debug line from the daemon")
        (tmp_path / "other.txt").write_text("not ours")
        time.sleep(1.5)
        handler.flush()
        size = logfile.stat().st_size
        assert size < 4096, f"the log grew to {size} bytes in 1.5 s by itself"
        assert changes == []
        cfg.write_text("# edited\n")
        (plugins / "mine.py").write_text("# a plugin\n")
        deadline = time.monotonic() + 5
        while not changes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert changes, "an edit of the config file was not noticed"
    finally:
        w.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
