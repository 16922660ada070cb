"""Reload on edits: watchdog observers on the config file and the plugins directory.

Editors save in many ways (write in place, write-then-rename, delete-then-create), so any event
that touches the config file's name or a `*.py` in the plugins directory counts. Bursts are
debounced into one reload.

Only those files matter: inotify reports on whole directories, so every other name (the daemon's
own log file next to the config, say) is dropped by name before any work, and watchdog's own
per-event debug lines are silenced: at -vv they would describe writes to a log file they are
written to, a loop that wrote megabytes a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("wandb_mirror.daemon")


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: ConfigWatcher):
        self.w = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or event.is_directory:
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        for p in paths:
            text = p.decode() if isinstance(p, bytes) else str(p)
            if text and self.w.named(text) and self.w.relevant(Path(text)):
                self.w.poke(text)
                return


class ConfigWatcher:
    def __init__(self, config_path: Path, plugins_dir: Path | None, on_change: Callable[[], None],
                 debounce: float = 0.3):
        self.config_path = Path(config_path).resolve()
        self.plugins_dir = Path(plugins_dir).resolve() if plugins_dir else None
        self.on_change = on_change
        self.debounce = debounce
        self.observer = Observer()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        # watchdog logs every inotify event at DEBUG: never let it describe our own log file's writes
        wd_log = logging.getLogger("watchdog")
        if wd_log.getEffectiveLevel() < logging.INFO:
            wd_log.setLevel(logging.INFO)
        handler = _Handler(self)
        self.observer.schedule(handler, str(self.config_path.parent), recursive=False)
        if self.plugins_dir is not None and self.plugins_dir.is_dir() and self.plugins_dir != self.config_path.parent:
            self.observer.schedule(handler, str(self.plugins_dir), recursive=False)
        self.observer.daemon = True

    def named(self, path: str) -> bool:
        """A cheap first filter by file name alone: the config's name or a plugin module's."""
        name = path.rsplit("/", 1)[-1]
        return name == self.config_path.name or (
            self.plugins_dir is not None and name.endswith(".py") and not name.startswith((".", "_")))

    def relevant(self, path: Path) -> bool:
        try:
            path = path.resolve()
        except OSError:
            return False
        if path == self.config_path:
            return True
        return self.plugins_dir is not None and path.parent == self.plugins_dir and path.suffix == ".py" \
            and not path.name.startswith((".", "_"))

    def poke(self, what: str) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self._fire, args=(what,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, what: str) -> None:
        log.info("%s changed: reloading", what)
        self.on_change()

    def start(self) -> ConfigWatcher:
        self.observer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.observer.stop()
        try:
            self.observer.join(timeout=2)
        except RuntimeError:
            pass
