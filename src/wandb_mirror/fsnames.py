"""Upstream names -> names that are safe to write to a filesystem, one to one.

The catalog keeps every name exactly as upstream gave it (`name_rules`); only a command that writes
names to disk (checkout, the export plugin, best_run's materialize, `dataset`) maps them, with these
two functions, and reports each name it changed. Plugins get them from `wandb_mirror.hooks`.

`safe_relpath` percent-encodes, so a mapped name decodes back to the original (`unquote`) and two
different names never map to one path (a component over 200 bytes is the exception: it is cut and
suffixed with a hash of the whole name):

- `%` (so the mapping can be undone), control characters and DEL, and the backslash (a separator
  on Windows, a surprise in a shell);
- a `/` that would make an empty component (leading, trailing, doubled) is encoded as `%2F`, so
  the path stays relative and `a//b` stays distinct from `a/b`;
- components `.` and `..` become `%2E` and `%2E%2E`: nothing can leave the target directory.

`hive_part` makes one `key=value` directory of a hive-partitioned dataset; hive readers (pyarrow's
`segment_encoding="uri"`, DuckDB, Spark) decode the value back.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

MAX_COMPONENT_BYTES = 200  # file names may have 255 bytes: leave room for a key, a suffix, a temp name


def _escape(text: str) -> str:
    out = []
    for c in text:
        if c in "%\\" or ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF:  # lone surrogates too
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
        else:
            out.append(c)
    return "".join(out)


def _shorten(part: str, whole: str) -> str:
    if len(part.encode("utf-8", "surrogatepass")) <= MAX_COMPONENT_BYTES:
        return part
    h = hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    cut = part.encode("utf-8", "surrogatepass")[: MAX_COMPONENT_BYTES - 17].decode("utf-8", "ignore")
    if "%" in cut[-2:]:  # never cut an escape in half
        cut = cut[: cut.rindex("%")]
    return f"{cut}~{h}"


def safe_relpath(name: str) -> str:
    """A relative path for `name` that stays inside any directory it is joined to (unchanged when
    `name` is already such a path)."""
    if not name:
        return "%00empty"  # no upstream name is empty (name_rules); keep the function total anyway
    out = []
    for i, c in enumerate(name):
        if c == "/":
            # a separator only between two non-empty components; otherwise part of a component
            between = 0 < i < len(name) - 1 and name[i - 1] != "/" and name[i + 1] != "/"
            out.append("/" if between else "%2F")
        else:
            out.append(_escape(c))
    parts = []
    for part in "".join(out).split("/"):
        if part in (".", ".."):
            part = part.replace(".", "%2E")
        parts.append(_shorten(part, name))
    return "/".join(parts)


def hive_part(key: str, value: str) -> str:
    """`key=value` directory name for a hive-partitioned dataset: the value URI-encoded the way hive
    readers decode it (`/`, `=`, `%`, spaces, control characters, backslashes...), cut with a hash
    when too long (run ids may have 256 characters)."""
    part = quote(value.encode("utf-8", "surrogatepass"), safe="-_.+@") if value else "%00empty"
    return f"{key}={_shorten(part, value)}"
