"""pyarrow, set up once per process for a long-running mirror that decodes history in many threads.

Three of pyarrow's defaults cost a mirror memory and buy it nothing; `pyarrow()` changes them the
first time the store needs Arrow (segments.py asks here, never imports pyarrow itself):

- Memory pool: pyarrow's bundled allocator (mimalloc or jemalloc) keeps freed pages per thread for
  reuse, so a daemon's RSS grows with the widest history it has decoded and with its worker count.
  The system allocator gives large buffers back when they are freed: the peak follows the runs in
  flight, not the work done (`make bench`, docs/benchmarks.md).
- Threads: Arrow's CPU pool is as wide as the machine and its I/O pool 8 threads. The mirror
  already decodes in `concurrency` workers, one segment each, so Arrow's pools would only add
  threads (their stacks, their allocator arenas) and contention; two of each are plenty.
- pandas: pyarrow imports pandas (about 50 MB and half a second) the first time it converts a
  Python list, only to recognise pandas objects, which the store never hands it. That first
  conversion runs here with pandas hidden (lean_imports.py); pyarrow then treats pandas as absent
  for conversions, and still imports it for anything that asks for pandas explicitly
  (`to_pandas()`, `pd.read_parquet`), so a plugin or a test that uses pandas is not affected.

`WANDB_MIRROR_ARROW_DEFAULTS=1` keeps pyarrow's defaults (to measure the difference).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .lean_imports import pandas_hidden

ARROW_THREADS = 2
_lock = threading.Lock()
_ready: Any = None


def pyarrow() -> Any:
    """The pyarrow module (with pyarrow.parquet loaded), set up as the module docstring says.
    Raises ImportError without pyarrow."""
    global _ready
    if _ready is not None:
        return _ready
    with _lock:
        if _ready is not None:
            return _ready
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401

        if os.environ.get("WANDB_MIRROR_ARROW_DEFAULTS") != "1":
            pa.set_memory_pool(pa.system_memory_pool())
            pa.set_cpu_count(min(ARROW_THREADS, os.cpu_count() or 1))
            pa.set_io_thread_count(ARROW_THREADS)
            with pandas_hidden():
                try:
                    _ = pa.lib._pandas_api.have_pandas  # the Cython shim's one lazy attempt
                    pa.array([0])                   # the C++ converter's
                except Exception:  # noqa: BLE001 - a pyarrow without these hooks: nothing to save
                    pass
        _ready = pa
        return pa
