"""History figures for `make bench`: what storing and reading history costs, and this machine's
Parquet decode rate (the limit a history mirror that reads W&B's exports runs into)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any


def parquet_decode_rate(store: Path, max_rows: int = 500_000) -> tuple[float, int]:
    """Rows/s decoding the store's history segments into row dicts (one core, what every reader
    that serves rows does: HistoryPage, the plugins' store view)."""
    from wandb_mirror.store import Store, segments

    n = 0
    t0 = time.perf_counter()
    with Store(store, create=False, readonly=True) as st:
        for seg in st.history.all_segments():
            with st.objects.open(seg.md5) as f:
                for _ in segments.decode(f):
                    n += 1
            if n >= max_rows:
                break
    secs = time.perf_counter() - t0
    return (n / secs if secs else 0.0), n


def arrow_decode_rate(store: Path, max_rows: int = 2_000_000) -> tuple[float, int]:
    """Rows/s decoding the store's history segments into Arrow tables, one row group at a time on
    one thread (what the columnar path does with an exported file, and no more): the limit a
    first mirror that reads W&B's exports runs into."""
    import pyarrow.parquet as pq

    from wandb_mirror.store import Store, segments

    segments._pa()  # the store's Arrow setup (system allocator, its threads)
    n = 0
    t0 = time.perf_counter()
    with Store(store, create=False, readonly=True) as st:
        for seg in st.history.all_segments():
            with st.objects.open(seg.md5) as f:
                pf = pq.ParquetFile(f)
                for g in range(pf.num_row_groups):
                    n += pf.read_row_group(g, use_threads=False).num_rows
            if n >= max_rows:
                break
    secs = time.perf_counter() - t0
    return (n / secs if secs else 0.0), n


def history_footprint(store: Path) -> dict[str, Any]:
    """Catalog bytes (with its WAL), history segment bytes and history rows of a store."""
    from wandb_mirror.store import Store

    conn = sqlite3.connect(store / "catalog.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL's pages belong in the file they describe
    conn.close()
    catalog = sum(p.stat().st_size for p in store.glob("catalog.db*") if p.is_file())
    with Store(store, create=False, readonly=True) as st:
        seg_bytes = st.catalog.scalar("SELECT COALESCE(SUM(size), 0) FROM history_segments") or 0
        rows = st.history.count()
        tail = st.catalog.scalar("SELECT COUNT(*) FROM history") or 0
    return {"catalog_bytes": catalog, "segment_bytes": seg_bytes, "rows": rows, "tail_rows": tail,
            "bytes_per_million_rows": (catalog + seg_bytes) / rows * 1e6 if rows else None}


def tail_only_bytes_per_million_rows(db: Path, rows: int) -> float | None:
    """The old layout (every row as JSON text in SQLite), from the insert-rate table."""
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())
    return size / rows * 1e6 if rows else None
