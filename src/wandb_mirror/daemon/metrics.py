"""A Prometheus text endpoint (exposition format 0.0.4) on loopback, stdlib only.

The daemon updates counters inline and refreshes catalog-derived gauges once per cycle, so a
scrape never queries the catalog itself (scrapes stay cheap and cannot block a writer).
Labels are few and low-cardinality: never a run id.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("wandb_mirror.daemon")

PREFIX = "wandb_mirror_"

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "up": ("gauge", "1 while the daemon runs"),
    "ready": ("gauge", "1 once the daemon finished starting"),
    "runs": ("gauge", "runs in the store (tombstoned included)"),
    "history_rows": ("gauge", "history rows in the store"),
    "objects": ("gauge", "distinct objects the catalog references"),
    "bytes": ("gauge", "bytes of the distinct objects the catalog references"),
    "sync_passes_total": ("counter", "sync passes by result"),
    "sync_pass_duration_seconds": ("gauge", "duration of the last sync pass"),
    "last_successful_sync_timestamp_seconds": ("gauge", "unix time the last ok pass finished"),
    "lag_seconds": ("gauge", "seconds since the last ok pass finished"),
    "http_requests_total": ("counter", "upstream HTTP requests"),
    "http_retries_total": ("counter", "upstream requests retried"),
    "rate_limited_total": ("counter", "upstream 429 answers"),
    "events_delivered_total": ("counter", "hook calls that succeeded"),
    "events_pending": ("gauge", "change rows the slowest enabled plugin has not acknowledged"),
    "plugin_failures_total": ("counter", "hook calls that raised or timed out"),
    "plugins_enabled": ("gauge", "enabled plugins"),
    "plugins_disabled": ("gauge", "plugins disabled after repeated failures"),
    "writebacks_total": ("counter", "upstream writes journaled, by result (ok, dry_run, error)"),
    "cycles_total": ("counter", "daemon cycles"),
    "config_reloads_total": ("counter", "configuration reloads by result"),
    "watchdog_last_ping_timestamp_seconds": ("gauge", "unix time of the last systemd watchdog ping"),
}


def _fmt(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if isinstance(v, float) and not v.is_integer() else str(int(v))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.last_ok_finished: float | None = None

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = float(value)

    def inc(self, name: str, n: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + n

    def get(self, name: str, **labels: str) -> float | None:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))))

    def render(self) -> str:
        if self.last_ok_finished is not None:
            self.set("lag_seconds", max(0.0, time.time() - self.last_ok_finished))
        with self._lock:
            items = sorted(self._values.items())
        out: list[str] = []
        done: set[str] = set()
        for (name, labels), value in items:
            if name not in done:
                typ, help_ = METRICS.get(name, ("gauge", name))
                out.append(f"# HELP {PREFIX}{name} {help_}")
                out.append(f"# TYPE {PREFIX}{name} {typ}")
                done.add(name)
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{PREFIX}{name}{{{lab}}} {_fmt(value)}" if lab else f"{PREFIX}{name} {_fmt(value)}")
        return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricsServer:
    """Serves `GET /metrics` on host:port (loopback by default) from a daemon thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0):
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = m.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("metrics: " + fmt, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/metrics"

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
