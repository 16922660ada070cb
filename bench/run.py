"""`make bench`: wandb-mirror against the official client's documented export loop, side by side.

What one run does (docs/benchmarks.md explains the method and the numbers):

1. Builds the upstream from the workload (bench/workload.py, fixture format) and caches it under
   bench/out/cache/, keyed by the workload parameters and the fixture code; re-runs reuse it. Each
   run serves a private copy (catalog copied, objects hard-linked), so changing it never touches
   the cache.
2. Serves it with `wandb-mirror serve --latency-ms 30` in its own process; the server's request log
   (GET /_mirror/requests?reset=1) counts requests and bytes per phase and /proc gives its CPU.
3. Phases, each in its own process (peak RSS sampled over the whole process tree, so the official
   client's wandb-core helper counts too):
   A1 first mirror into an empty store, A2 a pass with no change, A3 a pass after 10% of the runs
   got more history and one summary was edited; B1 the official client's export loop, single
   threaded as documented; B2 the same loop on a thread pool as wide as wandb-mirror's
   concurrency, both reading history through serve's parquet exports (as against W&B);
   B1h/B2h the same against a serve that exports nothing (the HistoryPage-only baseline); A4/A5 files-only and history-only mirrors (to set against the machine limits);
   C1/C2 a 2,000-run project: first pass and a no-change pass.
4. The limits of this machine: md5 per core, raw file serving with a plain GET loop (loopback),
   SQLite history inserts, Parquet decoding; and history's own figures (rows/s, CPU and catalog
   plus segment bytes per million rows, against the old all-in-SQLite layout).
5. Prints a table and one PASS/FAIL line per target, and writes bench/out/results.{json,md}.
   It never fails: exit 0 unless the harness itself breaks.

Usage: python bench/run.py [--scale N] [--quick] [--concurrency N] [--latency-ms MS] [--skip-official]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import history_figures as H  # noqa: E402
import workload as W  # noqa: E402

BIN = Path(sys.executable).parent
MIRROR = str(BIN / "wandb-mirror") if (BIN / "wandb-mirror").exists() else "wandb-mirror"
API_KEY = "x" * 40  # the served store accepts any key; never a real one
PAGE = os.sysconf("SC_PAGE_SIZE")
# Requests a pass makes once, whatever the number of projects (the rest are per project).
PER_PASS_OPERATIONS = {"Viewer", "GetProjects", "ServerFeaturesQuery"}
DEFAULT_CONCURRENCY = 8  # config.py's [sync] concurrency default


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================================
# upstream: seeded once, cached, served from a private copy
# =============================================================================================
def cache_key(doc: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    # the bytes a fixture seeds come from this code: a change there must not reuse a stale cache
    for code in ("fixtures.py", "store/segments.py", "store/history.py"):  # seeding compacts into segments
        h.update((ROOT / "src" / "wandb_mirror" / code).read_bytes())
    return h.hexdigest()[:16]


def seeded(out: Path, name: str, doc: dict[str, Any]) -> tuple[Path, float]:
    """A seeded store for `doc` under out/cache (built once); returns (path, seconds spent seeding now)."""
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"{name}-{cache_key(doc)}"
    if (final / "READY").exists():
        return final, 0.0
    log(f"seeding {name} upstream into {final} (once; cached for later runs)")
    tmp = cache / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    doc_path = cache / (final.name + ".json")
    doc_path.write_text(json.dumps(doc))
    t0 = time.monotonic()
    subprocess.run([MIRROR, "seed", "--store", str(tmp), str(doc_path)], check=True, stdout=subprocess.DEVNULL)
    conn = sqlite3.connect(tmp / "catalog.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (tmp / "READY").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final, time.monotonic() - t0


def working_copy(src: Path, dst: Path) -> Path:
    """A private upstream: the catalog copied, the (immutable) objects hard-linked."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    shutil.copyfile(src / "catalog.db", dst / "catalog.db")
    shutil.copytree(src / "objects", dst / "objects", copy_function=os.link)
    return dst


class Server:
    """`wandb-mirror serve` in its own process."""

    def __init__(self, store: Path, latency_ms: float, logfile: Path, *extra: str):
        self.logf = open(logfile, "wb")
        self.proc = subprocess.Popen([MIRROR, "serve", "--store", str(store), "--port", "0", "--writable",
                                      "--latency-ms", str(latency_ms), *extra],
                                     stdout=subprocess.PIPE, stderr=self.logf)
        line = self.proc.stdout.readline().decode().strip()
        m = re.match(r"listening on (http://\S+)", line)
        if not m:
            raise RuntimeError(f"serve did not start: {line!r} (see {logfile})")
        self.url = m.group(1)
        self.latency_ms = latency_ms

    def take(self) -> list[dict[str, Any]]:
        req = urllib.request.Request(f"{self.url}/_mirror/requests?reset=1",
                                     headers={"Authorization": "Basic " + _b64(f"api:{API_KEY}")})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def _b64(s: str) -> str:
    import base64

    return base64.b64encode(s.encode()).decode()


# =============================================================================================
# measuring a phase: wall time, process-tree RSS, server requests/bytes/CPU
# =============================================================================================
def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1: s.rindex(")")]
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        out[int(d)] = (ppid, comm)
    return out


def _status(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes: the resident set now, and its peak since exec."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return rss, hwm


def _pss(pid: int) -> int:
    """The process's proportional share of memory: pages it shares with another process (a forked
    child, say) count once across them. Costlier to read than VmRSS (the kernel walks the mappings)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak RSS of a process and all its descendants.

    Every 0.2 s: the tree's summed Pss (what the machine had to hold at once; summing RSS would
    count the pages a forked helper shares with its parent twice; a lone process: its VmRSS), and
    per process its VmHWM, the
    kernel's exact RSS peak since exec. (Not `ru_maxrss` from wait4: Linux carries the parent's
    high-water mark into a forked child across exec, so a child of a large harness would report
    the harness's size.)
    """

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_total = 0
        self.hwm: dict[int, tuple[str, int]] = {}  # pid -> (program, peak)
        # pid -> (program, CPU seconds when last seen): wait4's rusage only counts the descendants a
        # process reaped, and the official client's wandb-core may not be
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}
        self.stop_event = threading.Event()
        self.cpu = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            procs = _procs()
            children: dict[int, list[int]] = {}
            for pid, (ppid, _) in procs.items():
                children.setdefault(ppid, []).append(pid)
            todo, tree, total = [self.pid], [], 0
            while todo:
                p = todo.pop()
                rss, hwm = _status(p)
                tree.append(p)
                try:
                    self.cpu_by_pid[p] = (procs[p][1], proc_cpu(p))
                except (OSError, KeyError):
                    pass
                total += rss
                if p in procs and hwm:
                    self.hwm[p] = (procs[p][1], max(hwm, self.hwm.get(p, ("", 0))[1]))
                todo.extend(children.get(p, []))
            if len(tree) > 1:  # several processes: sum what they hold between them
                total = sum(_pss(p) for p in tree)
            self.peak_total = max(self.peak_total, total)
            self.stop_event.wait(self.interval)
        self.cpu = time.thread_time()  # this thread's own CPU: the cost of measuring

    @property
    def peak_by_comm(self) -> dict[str, int]:
        """Per program, the peak of its largest process (short-lived forks of a program are left out)."""
        out: dict[str, int] = {}
        for comm, peak in self.hwm.values():
            out[comm] = max(out.get(comm, 0), peak)
        return out

    @property
    def cpu_by_comm(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for comm, cpu in self.cpu_by_pid.values():
            out[comm] = out.get(comm, 0.0) + cpu
        return out

    @property
    def processes(self) -> int:
        return len(self.hwm)


@dataclass
class Phase:
    key: str
    label: str
    wall: float = 0.0
    requests: int = 0
    bytes: int = 0
    peak_rss: int = 0                     # whole process tree, summed
    peak_by_comm: dict[str, int] = field(default_factory=dict)
    maxrss_main: int = 0                  # ru_maxrss from wait4 (inflated by the harness's own size, see TreeSampler)
    cpu: float = 0.0                      # user+sys of the phase's process tree
    server_cpu: float = 0.0
    server_service_ms: float = 0.0        # mean time the server spent per request, its added latency excluded
    operations: dict[str, int] = field(default_factory=dict)
    output: str = ""
    rc: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mb(self) -> float:
        return self.bytes / 1e6


def run_measured(cmd: list[str], env: dict[str, str], outfile: Path) -> tuple[float, int, TreeSampler, Any]:
    with open(outfile, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop_event.set()
        sampler.join()
    return wall, proc.returncode, sampler, ru


def phase(key: str, label: str, cmd: list[str], server: Server, workdir: Path, env: dict[str, str]) -> Phase:
    log(f"{key}: {label}")
    server.take()  # reset the log
    cpu0 = server.cpu()
    outfile = workdir / f"{key}.out"
    wall, rc, sampler, ru = run_measured(cmd, env, outfile)
    entries = server.take()
    ph = Phase(key, label, wall=wall, rc=rc)
    ph.server_cpu = server.cpu() - cpu0
    ph.requests = len(entries)
    ph.bytes = sum(e.get("bytes", 0) for e in entries)
    ops: dict[str, int] = {}
    for e in entries:
        op = e.get("operation") or ("GET " + e["path"].split("/")[1] if e.get("path") else "?")
        ops[op] = ops.get(op, 0) + 1
    ph.operations = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    if entries:
        ph.server_service_ms = sum(max(0.0, e.get("ms", 0) - server.latency_ms) for e in entries) / len(entries)
    ph.peak_by_comm = dict(sampler.peak_by_comm)
    ph.peak_rss = max(sampler.peak_total, max((v for _, v in sampler.hwm.values()), default=0))
    ph.extra["processes"] = sampler.processes
    ph.maxrss_main = ru.ru_maxrss * 1024
    # the tree's CPU: wait4's rusage (exact for what was reaped) or, if larger, the sum of every
    # process's CPU as last sampled (catches an unreaped helper; misses its last < 0.2 s)
    ph.extra["cpu_by_program"] = {c: round(v, 1) for c, v in sampler.cpu_by_comm.items()}
    ph.cpu = max(ru.ru_utime + ru.ru_stime, sum(sampler.cpu_by_comm.values()))
    ph.extra["sampler_cpu"] = round(sampler.cpu, 2)
    ph.output = outfile.read_text(errors="replace")
    if rc != 0:
        log(f"{key}: exit {rc}; last output:\n{ph.output[-2000:]}")
    log(f"{key}: {wall:.1f}s, {ph.requests} requests, {ph.mb:.1f} MB, peak RSS {ph.peak_rss / 1e6:.0f} MB")
    return ph


def mirror_config(path: Path, url: str, store: Path, concurrency: int, **toggles: bool) -> Path:
    lines = ["[source]", f'base_url = "{url}"']
    lines += [f"{k} = {'true' if v else 'false'}" for k, v in toggles.items()]
    lines += ["", "[store]", f'path = "{store}"', "", "[sync]", f"concurrency = {concurrency}", 'progress = "never"', ""]
    path.write_text("\n".join(lines))
    return path


def mirror_cmd(config: Path, *extra: str) -> list[str]:
    return [MIRROR, "sync", "--config", str(config), "--once", "--quiet", *extra]


def pass_stats(store: Path) -> dict[str, Any]:
    """The last pass the mirror recorded (requests, stats) from its own catalog."""
    conn = sqlite3.connect(f"file:{store / 'catalog.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT status, requests, stats, started_at, finished_at FROM passes ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return {"status": row[0], "requests": row[1], "stats": json.loads(row[2] or "{}")} if row else {}


def pass_seconds(output: str) -> float | None:
    m = re.search(r"pass \d+ \w+ in ([\d.]+)s", output)
    return float(m.group(1)) if m else None


# =============================================================================================
# machine limits
# =============================================================================================
def md5_per_core(mb: int = 256) -> float:
    buf = os.urandom(1 << 20)
    t0 = time.perf_counter()
    h = hashlib.md5()
    for _ in range(mb):
        h.update(buf)
    h.hexdigest()
    return mb * (1 << 20) / 1e6 / (time.perf_counter() - t0)


def file_urls(store: Path, base: str) -> list[tuple[str, int]]:
    conn = sqlite3.connect(f"file:{store / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT p.entity, p.name, r.run_id, f.name, f.size FROM files f JOIN runs r ON r.pk = f.run_pk "
                            "JOIN projects p ON p.pk = r.project_pk WHERE f.tombstoned_at IS NULL ORDER BY f.run_pk, f.name"
                            ).fetchall()
    finally:
        conn.close()
    return [(f"/files/{quote(e, safe='')}/{quote(p, safe='')}/{quote(r, safe='')}/{quote(n)}", size)
            for e, p, r, n, size in rows]


def raw_get_loop(base: str, paths: list[tuple[str, int]], threads: int) -> tuple[float, int, float]:
    """GET every path over keep-alive connections, bodies read and dropped: (MB/s, bytes, seconds)."""
    u = urlsplit(base)
    auth = "Basic " + _b64(f"api:{API_KEY}")
    chunks = [paths[i::threads] for i in range(threads)]

    def worker(mine: list[tuple[str, int]]) -> int:
        conn = HTTPConnection(u.hostname, u.port, timeout=120)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        n = 0
        for path, _size in mine:
            conn.request("GET", path, headers={"Authorization": auth})
            r = conn.getresponse()
            while True:
                k = r.readinto(view)
                if not k:
                    break
                n += k
            r.close()
        conn.close()
        return n

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(worker, chunks))
    secs = time.monotonic() - t0
    return total / 1e6 / secs, total, secs


def sqlite_insert_rate(source: Path, dest: Path, rows: int = 200_000, chunk: int = 5000) -> tuple[float, float, float | None]:
    """History rows/s (and MB/s) into a fresh catalog-shaped table, the mirror's pragmas and chunking,
    and the bytes per million rows of that table: the layout before history segments."""
    from wandb_mirror.store import Store

    data: list[tuple[int, int, str]] = []
    with Store(source, create=False, readonly=True) as st:  # finished runs' rows are in segments
        for (pk,) in st.catalog.conn.execute("SELECT pk FROM runs ORDER BY pk").fetchall():
            data += [(pk, step, text) for step, text in st.history.texts(pk)][:rows - len(data)]
            if len(data) >= rows:
                break
    dest.unlink(missing_ok=True)
    conn = sqlite3.connect(dest, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE history (run_pk INTEGER NOT NULL, step INTEGER NOT NULL, row TEXT NOT NULL, "
                 "PRIMARY KEY (run_pk, step)) WITHOUT ROWID")
    nbytes = sum(len(r[2]) for r in data)
    t0 = time.perf_counter()
    for i in range(0, len(data), chunk):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO history (run_pk, step, row) VALUES (?, ?, ?)", data[i:i + chunk])
        conn.execute("COMMIT")
    secs = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    per_million = H.tail_only_bytes_per_million_rows(dest, len(data))
    for suffix in ("", "-wal", "-shm"):
        Path(str(dest) + suffix).unlink(missing_ok=True)
    return len(data) / secs, nbytes / 1e6 / secs, per_million


# =============================================================================================
# the run
# =============================================================================================
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="wandb-mirror benchmark (docs/benchmarks.md)")
    ap.add_argument("--scale", type=int, default=1, help="multiply the workload's runs (default 1: 200 runs)")
    ap.add_argument("--quick", action="store_true", help="a 40-run workload, for trying the harness out")
    ap.add_argument("--concurrency", type=int, default=8, help="wandb-mirror's concurrency = the official pool's width")
    ap.add_argument("--latency-ms", type=float, default=30.0, help="added to every response (a WAN round trip)")
    ap.add_argument("--cheap-runs", type=int, default=2000, help="runs of the no-change project (default 2000)")
    ap.add_argument("--skip-official", action="store_true", help="skip B1/B2 (the official client)")
    ap.add_argument("--out", default=str(HERE / "out"), help="work and cache directory (default bench/out)")
    ap.add_argument("--rss-scale", type=int, default=0, metavar="N",
                    help="also run the first mirror against a scale-N upstream (AR) for its peak RSS "
                         "(the target is at N = 10; seeding it once takes 10+ minutes and ~10 GB)")
    ap.add_argument("--a1-only", "--rss-only", dest="a1_only", action="store_true",
                    help="only the first mirror A1 (and AR with --rss-scale): wall, CPU, peak RSS, requests, "
                         "history bytes; for profiling and before/after comparisons")
    args = ap.parse_args(argv)
    if args.a1_only:
        return a1_only(args)

    t_start = time.monotonic()
    out = Path(args.out).resolve()
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, WANDB_API_KEY=API_KEY, WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    runs = 40 if args.quick else 200
    doc = W.workload(args.scale, runs=runs)
    n_runs = len(doc["projects"][0]["runs"])
    C = args.concurrency
    res: dict[str, Any] = {"machine": machine(), "scale": args.scale, "quick": args.quick, "runs": n_runs,
                           "concurrency": C, "cheap_runs": args.cheap_runs, "latency_ms": args.latency_ms, "phases": {}, "limits": {}}

    up_cache, seed_s = seeded(out, f"bench-r{n_runs}", doc)
    cheap_cache, cheap_seed_s = seeded(out, f"cheap-r{args.cheap_runs}", W.cheap_workload(args.cheap_runs))
    res["seed_seconds"] = round(seed_s + cheap_seed_s, 1)
    upstream = working_copy(up_cache, work / "upstream")
    server = Server(upstream, args.latency_ms, work / "serve.log")
    phases: dict[str, Phase] = {}
    try:
        # --- A: wandb-mirror -----------------------------------------------------------------------
        cfg = mirror_config(work / "mirror.toml", server.url, work / "mirror", C)
        phases["A1"] = phase("A1", "wandb-mirror: first mirror (empty store)", mirror_cmd(cfg), server, work, env)
        phases["A1"].extra["pass"] = pass_stats(work / "mirror")
        phases["A2"] = phase("A2", "wandb-mirror: second pass, no change", mirror_cmd(cfg), server, work, env)
        if C != DEFAULT_CONCURRENCY and not args.skip_official:
            # what a user gets without tuning: the shipped default concurrency
            cfg_d = mirror_config(work / "mirror-default.toml", server.url, work / "mirror-default", DEFAULT_CONCURRENCY)
            phases["A1d"] = phase("A1d", f"wandb-mirror: first mirror, shipped default concurrency "
                                  f"{DEFAULT_CONCURRENCY}", mirror_cmd(cfg_d), server, work, env)
            shutil.rmtree(work / "mirror-default", ignore_errors=True)

        # --- B: the official client --------------------------------------------------------------
        if not args.skip_official:
            # B1/B2 against parquet exports (what W&B serves); B1h/B2h the HistoryPage-only baseline
            paged = Server(upstream, args.latency_ms, work / "serve-paged.log", "--parquet-export-delay", "1e12")
            try:
                runs_b = [(k, t, srv, how) for (k, t) in (("B1", 1), ("B2", C))
                          for srv, how in ((server, "parquet exports"), (paged, "HistoryPage only"))]
                for key, threads, srv, how in runs_b:
                    key = key if srv is server else key + "h"
                    cmd = [sys.executable, str(HERE / "official_export.py"), srv.url, "bench/bench",
                           str(work / f"official-{key}"), "--threads", str(threads)]
                    label = (f"official client: documented loop, 1 thread, {how}" if threads == 1
                             else f"official client: same loop, {threads} threads, {how}")
                    ph = phases[key] = phase(key, label, cmd, srv, work, env)
                    last = ph.output.strip().splitlines()[-1] if ph.output.strip() else "{}"
                    try:
                        ph.extra["export"] = json.loads(last)
                    except ValueError:
                        ph.extra["export"] = {"error": last[-300:]}
                    shutil.rmtree(work / f"official-{key}", ignore_errors=True)
            finally:
                paged.stop()

        # --- A3: after 10% of the runs changed ---------------------------------------------------
        change = W.change_upstream(str(upstream / "catalog.db"))
        res["change"] = {"changed_runs": len(change["changed_runs"]), "edited_run": change["edited_run"],
                         "rows": change["rows"]}
        phases["A3"] = phase("A3", f"wandb-mirror: after {len(change['changed_runs'])} runs got history "
                             "and 1 summary was edited (reconcile pass)", mirror_cmd(cfg, "--reconcile"), server, work, env)
        phases["A3"].extra["pass"] = pass_stats(work / "mirror")

        # --- A4/A5: one kind of data at a time, to set against the limits -------------------------
        cfg_files = mirror_config(work / "files.toml", server.url, work / "mirror-files", C, history=False,
                                  events=False, artifacts=False, sweeps=False, reports=False)
        phases["A4"] = phase("A4", "wandb-mirror: run files only (empty store)", mirror_cmd(cfg_files), server, work, env)
        phases["A4"].extra["pass"] = pass_stats(work / "mirror-files")
        shutil.rmtree(work / "mirror-files", ignore_errors=True)
        cfg_hist = mirror_config(work / "history.toml", server.url, work / "mirror-history", C, files=False,
                                 events=False, artifacts=False, sweeps=False, reports=False)
        phases["A5"] = phase("A5", "wandb-mirror: history only (empty store)", mirror_cmd(cfg_hist), server, work, env)
        phases["A5"].extra["pass"] = pass_stats(work / "mirror-history")
        phases["A5"].extra["footprint"] = H.history_footprint(work / "mirror-history")
        shutil.rmtree(work / "mirror-history", ignore_errors=True)

        # --- limits ----------------------------------------------------------------------------------
        log("limits: md5, raw GET loop, SQLite inserts")
        paths = file_urls(upstream, server.url)
        paths = paths[:: max(1, len(paths) // 1000)]  # at most ~1,000 files: scale 10 would take minutes
        server.take()
        cpu0 = server.cpu()
        raw1 = raw_get_loop(server.url, paths, 1)
        rawc = raw_get_loop(server.url, paths, C)
        raw_cpu = server.cpu() - cpu0
        server.take()
        rows_s, rows_mb, tail_bpm = sqlite_insert_rate(upstream, work / "insert-test.db")
        log("limits: Parquet decode")
        decode_s, decode_rows = H.parquet_decode_rate(upstream)
        arrow_s, arrow_rows = H.arrow_decode_rate(upstream)
        res["limits"] = {"parquet_decode_rows_s": decode_s, "parquet_decode_rows": decode_rows,
                         "arrow_decode_rows_s": arrow_s, "arrow_decode_rows": arrow_rows,
                         "tail_only_bytes_per_million_rows": tail_bpm,"md5_mb_s_per_core": md5_per_core(), "raw_get_1_mb_s": raw1[0], "raw_get_c_mb_s": rawc[0],
                         "raw_get_bytes": rawc[1], "raw_get_1_s": raw1[2], "raw_get_c_s": rawc[2],
                         "raw_get_server_cpu_s": raw_cpu, "raw_get_requests": 2 * len(paths),
                         "sqlite_rows_s": rows_s, "sqlite_mb_s": rows_mb}
    finally:
        server.stop()

    if args.rss_scale:
        phases["AR"] = rss_phase(args, out, work, env)

    # --- C: the 2,000-run project ------------------------------------------------------------------
    cheap_up = working_copy(cheap_cache, work / "cheap-upstream")
    server = Server(cheap_up, args.latency_ms, work / "serve-cheap.log")
    try:
        cfg_c = mirror_config(work / "cheap.toml", server.url, work / "mirror-cheap", C)
        phases["C1"] = phase("C1", f"{args.cheap_runs}-run project: first pass", mirror_cmd(cfg_c), server, work, env)
        phases["C2"] = phase("C2", f"{args.cheap_runs}-run project: no-change pass", mirror_cmd(cfg_c), server, work, env)
        phases["C2"].extra["pass"] = pass_stats(work / "mirror-cheap")
    finally:
        server.stop()

    for ph in phases.values():
        ph.extra["pass_seconds"] = pass_seconds(ph.output)
        res["phases"][ph.key] = {k: v for k, v in asdict(ph).items() if k != "output"}
    res["total_seconds"] = round(time.monotonic() - t_start, 1)
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    res["harness_cpu_s"] = round(me.ru_utime + me.ru_stime, 1)  # sampling /proc, the limits, the report
    res["sampler_cpu_s"] = round(sum(p.extra.get("sampler_cpu", 0) for p in phases.values()), 1)
    res["phases_wall_s"] = round(sum(p.wall for p in phases.values()), 1)
    table, verdicts = report(res, phases)
    print(table)
    print()
    print("\n".join(verdicts))
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    (out / "results.md").write_text(table + "\n\n" + "\n".join(verdicts) + "\n")
    for d in ("upstream", "cheap-upstream", "mirror", "mirror-cheap"):  # keep the logs, not the GBs
        shutil.rmtree(work / d, ignore_errors=True)
    log(f"done in {res['total_seconds']:.0f}s (results in {out / 'results.md'})")
    return 0


def rss_phase(args: argparse.Namespace, out: Path, work: Path, env: dict[str, str]) -> Phase:
    """AR: the first mirror into an empty store against a scale-N upstream, for its peak RSS (flat
    in the run count: history and files stream, the runs in flight bound the memory)."""
    doc = W.workload(args.rss_scale, runs=40 if args.quick else 200)
    n_runs = len(doc["projects"][0]["runs"])
    cache, _ = seeded(out, f"bench-r{n_runs}", doc)
    upstream = working_copy(cache, work / "upstream-rss")
    server = Server(upstream, args.latency_ms, work / "serve-rss.log")
    try:
        cfg = mirror_config(work / "mirror-rss.toml", server.url, work / "mirror-rss", args.concurrency)
        ph = phase("AR", f"wandb-mirror: first mirror at scale {args.rss_scale} ({n_runs} runs)", mirror_cmd(cfg),
                   server, work, env)
        ph.extra["pass"] = pass_stats(work / "mirror-rss")
        ph.extra["scale"] = args.rss_scale
        ph.extra["runs"] = n_runs
    finally:
        server.stop()
        shutil.rmtree(work / "upstream-rss", ignore_errors=True)
        shutil.rmtree(work / "mirror-rss", ignore_errors=True)
    return ph


def a1_only(args: argparse.Namespace) -> int:
    """`--a1-only`: A1 at --scale (and AR at --rss-scale), side by side."""
    out = Path(args.out).resolve()
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, WANDB_API_KEY=API_KEY, WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    doc = W.workload(args.scale, runs=40 if args.quick else 200)
    cache, _ = seeded(out, f"bench-r{len(doc['projects'][0]['runs'])}", doc)
    upstream = working_copy(cache, work / "upstream")
    server = Server(upstream, args.latency_ms, work / "serve.log")
    try:
        cfg = mirror_config(work / "mirror.toml", server.url, work / "mirror", args.concurrency)
        a1 = phase("A1", f"wandb-mirror: first mirror at scale {args.scale}", mirror_cmd(cfg), server, work, env)
        a1.extra["pass"] = pass_stats(work / "mirror")
        a1.extra["footprint"] = H.history_footprint(work / "mirror")
        a1.extra["runs"] = len(doc["projects"][0]["runs"])
    finally:
        server.stop()
        shutil.rmtree(work / "upstream", ignore_errors=True)
        shutil.rmtree(work / "mirror", ignore_errors=True)
    phases = {"A1": a1}
    if args.rss_scale:
        phases["AR"] = rss_phase(args, out, work, env)
    lines = ["| phase | what | runs | history rows | wall s | requests | client CPU s | CPU s per M rows | "
             "peak RSS MB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ph in phases.values():
        rows = ph.extra.get("pass", {}).get("stats", {}).get("history_rows", 0)
        lines.append(f"| {ph.key} | {ph.label} | {ph.extra.get('runs', 0):,} | {rows:,} | {ph.wall:.1f} | "
                     f"{ph.requests:,} | {ph.cpu:.1f} | {ph.cpu / rows * 1e6 if rows else 0:.1f} | {_mb(ph.peak_rss)} |")
    fp = a1.extra["footprint"]
    lines.append(f"\nA1 store: catalog {_mb(fp['catalog_bytes'])} MB + history segments {_mb(fp['segment_bytes'])} MB "
                 f"for {fp['rows']:,} rows = {_mb(fp['bytes_per_million_rows'] or 0)} MB per million rows")
    verdicts = []
    if "AR" in phases:
        ar = phases["AR"]
        growth = ar.peak_rss / a1.peak_rss if a1.peak_rss else 0
        verdicts.append(f"{'PASS' if ar.peak_rss <= 150e6 and args.rss_scale >= 10 else 'FAIL'}  peak RSS <= 150 MB "
                        f"at scale {args.rss_scale}{' of the quick workload' if args.quick else ''}: "
                        f"{_mb(ar.peak_rss)} MB ({growth:.2f}x the {_mb(a1.peak_rss)} MB of "
                        f"scale {args.scale}, for {ar.extra['runs'] / a1.extra['runs']:.0f}x the runs)")
    text = "\n".join(lines) + ("\n\n" + "\n".join(verdicts) if verdicts else "")
    print(text)
    (out / "results-a1.md").write_text(text + "\n")
    (out / "results-a1.json").write_text(json.dumps({k: asdict(p) for k, p in phases.items()}, indent=2, default=str))
    return 0


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


# =============================================================================================
# the report
# =============================================================================================
def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(res: dict[str, Any], ph: dict[str, Phase]) -> tuple[str, list[str]]:
    C = res["concurrency"]
    lat = res["latency_ms"]
    lines = [f"wandb-mirror benchmark: {res['runs']} runs (scale {res['scale']}{', quick' if res['quick'] else ''}), "
             f"{lat:g} ms added per response, concurrency {C}, {res['machine']['cores']} cores "
             f"({res['machine']['cpu']}), total {res['total_seconds']:.0f}s (seeding {res['seed_seconds']:.0f}s; "
             f"RSS sampling cost {res['sampler_cpu_s']:.1f}s CPU over {res['phases_wall_s']:.0f}s of phases)",
             "",
             "| phase | what | wall s | requests | MB served | peak RSS MB | client CPU s | server CPU s | server ms/req |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, p in ph.items():
        lines.append(f"| {k} | {p.label} | {p.wall:.1f} | {p.requests:,} | {p.mb:,.1f} | {_mb(p.peak_rss)} | "
                     f"{p.cpu:.1f} | {p.server_cpu:.1f} | {1000 * p.server_cpu / max(1, p.requests):.2f} |")
    for k in ("B1", "B2", "B1h", "B2h"):
        if k in ph:
            by = ph[k].peak_by_comm
            core = max((v for c, v in by.items() if "wandb-core" in c), default=0)
            lines.append(f"\n{k} peak RSS by program (largest process of each): "
                         + ", ".join(f"{c} {_mb(v)} MB" for c, v in sorted(by.items()) if v >= 1e6)
                         + f"; the table gives the tree's peak of summed Pss, wandb-core ({_mb(core)} MB) included "
                         f"({ph[k].extra.get('processes', 0)} processes seen). CPU by program: "
                         + ", ".join(f"{c} {v:.0f}s" for c, v in sorted(ph[k].extra.get("cpu_by_program", {}).items())
                                     if v >= 0.5))
    a1 = ph["A1"]
    if "B1" in ph and "B2" in ph:
        lines += ["", "| ratio A/B | wall | requests | bytes | peak RSS |", "|---|---:|---:|---:|---:|"]
        for ak in ("A1", "A1d"):
            if ak not in ph:
                continue
            a = ph[ak]
            for k in ("B1", "B2", "B1h", "B2h"):
                if k not in ph:
                    continue
                b = ph[k]
                lines.append(f"| {ak} / {k} | {_ratio(a.wall, b.wall)} | {_ratio(a.requests, b.requests)} | "
                             f"{_ratio(a.bytes, b.bytes)} | {_ratio(a.peak_rss, b.peak_rss)} |")
    L = res["limits"]
    a4, a5 = ph["A4"], ph["A5"]
    a4_bytes = a4.extra.get("pass", {}).get("stats", {}).get("file_bytes", a4.bytes)
    a4_mb_s = a4_bytes / 1e6 / a4.wall
    a5_rows = a5.extra.get("pass", {}).get("stats", {}).get("history_rows", 0)
    a5_rows_s = a5_rows / a5.wall if a5.wall else 0
    lines += ["", "| limit of this machine | measured | wandb-mirror | share |", "|---|---:|---:|---:|",
              f"| md5, one core | {L['md5_mb_s_per_core']:,.0f} MB/s | {a4_mb_s:,.0f} MB/s (A4, hashed once while written) | "
              f"{100 * a4_mb_s / L['md5_mb_s_per_core']:.0f}% |",
              f"| raw GET loop, 1 connection | {L['raw_get_1_mb_s']:,.0f} MB/s | | |",
              f"| raw GET loop, {C} connections | {L['raw_get_c_mb_s']:,.0f} MB/s | {a4_mb_s:,.0f} MB/s (A4) | "
              f"{100 * a4_mb_s / L['raw_get_c_mb_s']:.0f}% |",
              f"| SQLite history inserts | {L['sqlite_rows_s']:,.0f} rows/s ({L['sqlite_mb_s']:,.0f} MB/s) | "
              f"{a5_rows_s:,.0f} rows/s (A5, over the wire) | {100 * a5_rows_s / L['sqlite_rows_s']:.0f}% |",
              f"\nserver: raw GET loop cost {1000 * L['raw_get_server_cpu_s'] / max(1, L['raw_get_requests']):.2f} ms CPU "
              f"per file request; GraphQL phases above: see server ms/req."]
    fp = a5.extra.get("footprint") or {}
    decode = L.get("parquet_decode_rows_s") or 0
    arrow = L.get("arrow_decode_rows_s") or 0
    a1_rows = a1.extra.get("pass", {}).get("stats", {}).get("history_rows", 0)
    cpu_per_m = a5.cpu / a5_rows * 1e6 if a5_rows else 0
    loop_mb_s = L["raw_get_c_mb_s"]
    a5_mb_s = a5.bytes / 1e6 / a5.wall if a5.wall else 0
    new_bpm, old_bpm = fp.get("bytes_per_million_rows"), L.get("tail_only_bytes_per_million_rows")
    lines += ["", "| history | measured | limit of this machine | share |", "|---|---:|---:|---:|",
              f"| first mirror (A1), history rows/s against Parquet -> Arrow | {a1_rows / a1.wall if a1.wall else 0:,.0f} | "
              f"{arrow:,.0f} rows/s | {100 * a1_rows / a1.wall / arrow if arrow and a1.wall else 0:.0f}% |",
              f"| history-only mirror (A5), rows/s | {a5_rows_s:,.0f} | Parquet -> Arrow {arrow:,.0f} rows/s | "
              f"{100 * a5_rows_s / arrow if arrow else 0:.0f}% |",
              f"| history-only mirror (A5), rows/s | {a5_rows_s:,.0f} | Parquet -> Python rows {decode:,.0f} rows/s | "
              f"{100 * a5_rows_s / decode if decode else 0:.0f}% |",
              f"| history-only mirror (A5), MB/s over loopback | {a5_mb_s:,.1f} | raw GET loop {loop_mb_s:,.0f} MB/s | "
              f"{100 * a5_mb_s / loop_mb_s if loop_mb_s else 0:.0f}% |",
              f"| CPU s per million history rows (A5, the whole process) | {cpu_per_m:,.1f} | "
              f"Parquet -> Arrow {1e6 / arrow if arrow else 0:,.1f} s | "
              f"{100 * (1e6 / arrow) / cpu_per_m if arrow and cpu_per_m else 0:.0f}% |",
              f"| CPU s per million history rows (A1, files and all included) | "
              f"{a1.cpu / a1_rows * 1e6 if a1_rows else 0:,.1f} | | |",
              f"| catalog + history bytes per million rows (A5 store) | {_mb(new_bpm or 0)} MB | "
              f"old layout (JSON rows in SQLite) {_mb(old_bpm or 0)} MB | "
              f"{100 * (new_bpm or 0) / old_bpm if old_bpm else 0:.0f}% |",
              f"| peak RSS, first mirror (A1) | {_mb(a1.peak_rss)} MB | target 150 MB | {100 * a1.peak_rss / 150e6:.0f}% |"]
    if "AR" in ph:
        ar = ph["AR"]
        lines.append(f"| peak RSS, first mirror at scale {ar.extra.get('scale')} (AR, {ar.extra.get('runs', 0):,} runs) | "
                     f"{_mb(ar.peak_rss)} MB | target 150 MB | {100 * ar.peak_rss / 150e6:.0f}% |")
    res["derived"] = {"a4_mb_s": a4_mb_s, "a5_rows_s": a5_rows_s, "history_bytes_per_million_rows": new_bpm,
                      "old_bytes_per_million_rows": old_bpm, "cpu_s_per_million_rows": cpu_per_m}

    # --- targets -----------------------------------------------------------------------------------
    v: list[str] = []

    def verdict(ok: bool, text: str) -> None:
        v.append(f"{'PASS' if ok else 'FAIL'}  {text}")

    if "B1" in ph:
        r1 = ph["B1"].wall / a1.wall
        verdict(r1 >= 5, f"first mirror >= 5x faster than the documented single-threaded loop (parquet exports on): {r1:.1f}x "
                         f"({a1.wall:.0f}s vs {ph['B1'].wall:.0f}s)")
    if "B2" in ph:
        r2 = ph["B2"].wall / a1.wall
        verdict(r2 >= 2, f"first mirror >= 2x faster than the official client on {C} threads (parquet exports on): {r2:.1f}x "
                         f"({a1.wall:.0f}s vs {ph['B2'].wall:.0f}s)")
    c2 = ph["C2"]
    per_pass = sum(n for op, n in c2.operations.items() if op in PER_PASS_OPERATIONS)
    per_project = c2.requests - per_pass
    secs = c2.wall
    verdict(per_project <= 5 and secs < 2,
            f"no-change pass on a {res['cheap_runs']:,}-run project: {per_project} requests for the project (+{per_pass} per pass: "
            f"{', '.join(sorted(op for op in c2.operations if op in PER_PASS_OPERATIONS))}), "
            f"{secs:.2f}s wall for the whole command ({c2.extra.get('pass_seconds') or 0:.2f}s in the pass)")
    a2, a3 = ph["A2"], ph["A3"]
    a2_pass = sum(n for op, n in a2.operations.items() if op in PER_PASS_OPERATIONS)
    verdict(a2.requests - a2_pass <= 5 and a2.wall < 2,
            f"no-change pass on the {res['runs']:,}-run project (with artifacts, sweep): {a2.requests - a2_pass} "
            f"requests for the project (+{a2_pass} per pass), {a2.wall:.2f}s wall")
    changed = res["change"]["changed_runs"] + 1
    per_run_first = a1.requests / res["runs"]
    extra_req = a3.requests - a2.requests
    per_changed = extra_req / changed
    verdict(per_changed <= per_run_first,
            f"10%-changed pass costs requests in proportion to the changed runs: {a3.requests} requests = "
            f"{a2.requests} (no change) + {extra_req} for {changed} changed runs = {per_changed:.1f} per changed run "
            f"(first pass: {per_run_first:.1f} per run; listing all {res['runs']} runs adds "
            f"{a3.operations.get('Runs', 0)} Runs pages)")
    share = a4_mb_s / L["raw_get_c_mb_s"]
    verdict(share >= 0.5, f"file throughput >= 50% of raw serving: {a4_mb_s:,.0f} MB/s = {100 * share:.0f}% "
                          f"of {L['raw_get_c_mb_s']:,.0f} MB/s (raw GET loop, {C} connections)")
    rss = max(a1.peak_rss, ph["C1"].peak_rss, a3.peak_rss)
    scale = res["scale"]
    if "AR" in ph:
        rss, scale = max(rss, ph["AR"].peak_rss), max(scale, ph["AR"].extra.get("scale", 0))
    where = (f"measured at scale {scale} (A1 {_mb(a1.peak_rss)} MB) and on the {res['cheap_runs']:,}-run project "
             f"(C1 {_mb(ph['C1'].peak_rss)} MB)")
    if scale >= 10:
        verdict(rss <= 150e6, f"peak RSS <= 150 MB at scale 10: {_mb(rss)} MB")
    else:
        verdict(rss <= 150e6, f"peak RSS <= 150 MB at scale 10: {_mb(rss)} MB {where}; "
                              f"scale 10 itself: `python bench/run.py --rss-scale 10 --a1-only`")
    if new_bpm and old_bpm:
        verdict(new_bpm <= old_bpm / 3, f"catalog + history bytes per million rows <= a third of the old layout: "
                                        f"{_mb(new_bpm)} MB vs {_mb(old_bpm)} MB ({new_bpm / old_bpm:.2f})")
    return "\n".join(lines), v


if __name__ == "__main__":
    sys.exit(main())
