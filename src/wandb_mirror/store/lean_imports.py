"""Third-party modules that import pandas if they can, imported here with pandas hidden.

pandas costs a process about 50 MB of RSS and half a second of start-up. sqlite-utils imports it
at import time only to map `pandas.Timestamp` to a column type, and pyarrow on its first
conversion of a Python list only to recognise pandas objects (arrow_runtime.py); the store hands
neither a pandas value. So they are imported with pandas hidden, which they treat as "pandas is
not installed". Nothing else changes: code that imports pandas itself still gets it, and pyarrow
still imports it when asked for pandas explicitly (`to_pandas()`, `pd.read_parquet`). When pandas
is already imported (a test, a plugin host) nothing is hidden: there is nothing to save.

store/__init__.py imports this module before anything that imports sqlite-utils.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _HidePandas:
    """A meta-path finder that makes `import pandas` fail while it is installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas hidden (wandb_mirror/store/lean_imports.py)")
        return None


@contextmanager
def pandas_hidden() -> Iterator[None]:
    """`import pandas` fails inside (unless pandas is already imported)."""
    if "pandas" in sys.modules:
        yield
        return
    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        yield
    finally:
        sys.meta_path.remove(hide)


with pandas_hidden():
    import sqlite_utils  # noqa: F401
