"""The store's pyarrow setup (store/arrow_runtime.py, lean_imports.py): a mirror process writes and
reads segments without importing pandas, and pandas still works for code that asks for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pyarrow")

SCRIPT = r"""
import sys
from wandb_mirror.store import Store, segments   # sqlite-utils comes in here
from wandb_mirror.store import arrow_runtime
pa = arrow_runtime.pyarrow()
data = segments.encode([(i, {"_step": i, "loss": 0.5, "v": {"a": i}, "s": "x"}) for i in range(10)])
import io
rows = list(segments.decode(io.BytesIO(data)))
assert len(rows) == 10 and rows[3][1]["v"] == {"a": 3}
print("pandas imported by the store:", "pandas" in sys.modules)
print("pool:", pa.default_memory_pool().backend_name)
try:
    import pandas
except ImportError:
    print("no pandas installed")
else:
    df = pa.table({"a": [1, 2]}).to_pandas()
    assert list(df["a"]) == [1, 2]
    print("pandas works after:", "pandas" in sys.modules)
"""


def test_the_store_does_not_import_pandas_and_pandas_still_works() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pandas imported by the store: False" in out.stdout
    assert "pool: system" in out.stdout
    assert "no pandas installed" in out.stdout or "pandas works after: True" in out.stdout
