"""Names say what a thing is: no two classes, modules or helpers share one where a reader would confuse them."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "wandb_mirror"


def _defined() -> Counter[str]:
    names: Counter[str] = Counter()
    for path in SRC.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names[node.name] += 1
    return names


def test_colliding_names_are_distinct() -> None:
    defined = _defined()
    for name in ("Engine", "Transport", "md5_b64_to_hex"):
        assert defined[name] <= 1, name
    basenames = Counter(p.name for p in SRC.rglob("*.py"))
    assert basenames["status.py"] <= 1  # the `status` command; the store's and the plugins' status have their own
    assert basenames["engine.py"] <= 1


def test_docstrings_point_only_at_files_a_clone_has() -> None:
    root = SRC.parents[1]
    for path in [*SRC.rglob("*.py"), *(root / "plugins").glob("*.py")]:
        text = path.read_text()
        assert "DESIGN.md" not in text and "shared/" not in text, path
        for ref in {w.strip("`'\".,;:()") for w in text.split() if w.strip("`'\".,;:()").startswith("docs/")}:
            if ref.endswith(".md"):
                assert (root / ref).is_file(), f"{path.name} refers to {ref}"
