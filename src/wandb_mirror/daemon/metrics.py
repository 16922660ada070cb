"""Prometheus metrics (prometheus_client) on loopback: the daemon's own, build_info and the process's.

The daemon updates counters inline and refreshes catalog-derived gauges once per cycle, so a
scrape never queries the catalog itself (scrapes stay cheap and cannot block a writer). Every
counter is exported from the start, at 0 (and each labelled one for each of its known label
values), so a rate() has a series before the first event. Labels are few and low-cardinality:
never a run id.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from .. import __version__

log = logging.getLogger("wandb_mirror.daemon")

PREFIX = "wandb_mirror_"

# name -> (type, help, known label values {label: values} for counters present from the start)
METRICS: dict[str, tuple[str, str, dict[str, tuple[str, ...]]]] = {
    "up": ("gauge", "1 while the daemon runs", {}),
    "ready": ("gauge", "1 once the daemon finished starting", {}),
    "runs": ("gauge", "runs in the store (tombstoned included)", {}),
    "history_rows": ("gauge", "history rows in the store", {}),
    "objects": ("gauge", "distinct objects the catalog references (what `status` and `gc` count)", {}),
    "bytes": ("gauge", "bytes of the distinct run and artifact files the catalog references", {}),
    "sync_passes_total": ("counter", "sync passes by result",
                          {"result": ("ok", "errors", "failed", "stopped")}),
    "sync_pass_duration_seconds": ("gauge", "duration of the last sync pass", {}),
    "last_successful_sync_timestamp_seconds": ("gauge", "unix time the last ok pass finished", {}),
    "lag_seconds": ("gauge", "seconds since the last ok pass finished", {}),
    "http_requests_total": ("counter", "upstream HTTP requests", {}),
    "http_retries_total": ("counter", "upstream requests retried", {}),
    "rate_limited_total": ("counter", "upstream 429 answers", {}),
    "events_delivered_total": ("counter", "hook calls that succeeded", {}),
    "events_pending": ("gauge", "change rows the slowest enabled plugin has not acknowledged", {}),
    "plugin_failures_total": ("counter", "hook calls that raised or timed out", {}),
    "plugins_enabled": ("gauge", "enabled plugins", {}),
    "plugins_disabled": ("gauge", "plugins disabled after repeated failures", {}),
    "writebacks_total": ("counter", "upstream writes journaled, by result (ok, dry_run, error)",
                         {"result": ("ok", "dry_run", "error")}),
    "cycles_total": ("counter", "daemon cycles", {}),
    "config_reloads_total": ("counter", "configuration reloads by result", {"result": ("ok", "error")}),
    "watchdog_last_ping_timestamp_seconds": ("gauge", "unix time of the last systemd watchdog ping", {}),
}

_Key = tuple[str, tuple[tuple[str, str], ...]]


class Metrics:
    """The daemon's values; `registry` exports them with build_info and process metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[_Key, float] = {}
        self.last_ok_finished: float | None = None
        for name, (typ, _help, known) in METRICS.items():
            if typ != "counter":
                continue
            if not known:
                self._values[(name, ())] = 0.0
            for label, values in known.items():
                for v in values:
                    self._values[(name, ((label, v),))] = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)  # process_* as every exporter names them
        PlatformCollector(registry=self.registry)

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

    def snapshot(self) -> list[tuple[_Key, float]]:
        if self.last_ok_finished is not None:
            self.set("lag_seconds", max(0.0, time.time() - self.last_ok_finished))
        with self._lock:
            return sorted(self._values.items())

    def render(self) -> str:
        """The exposition text (Prometheus text format 0.0.4)."""
        return generate_latest(self.registry).decode()


class _Collector:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for (name, labels), value in self.metrics.snapshot():
            fam = families.get(name)
            if fam is None:
                typ, help_, _ = METRICS.get(name, ("gauge", name, {}))
                cls = CounterMetricFamily if typ == "counter" else GaugeMetricFamily
                fam = families[name] = cls(PREFIX + name, help_, labels=[k for k, _ in labels])
            fam.add_metric([v for _, v in labels], value)
        info = InfoMetricFamily(PREFIX + "build", "wandb-mirror's version and the Python running it")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info
        yield from families.values()


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
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
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
