"""Names -> URL path segments, for every URL the mirror builds (serve's, and restore's requests).

The catalog keeps names exactly (`name_rules`): a run may be called `..`, a file `a\\b` or `a/./b`.
In a URL every byte outside the unreserved set is percent-encoded, and so are whole `.` and `..`
segments: HTTP clients (urllib3, Go's, browsers) remove such segments before sending, so the
request would otherwise reach another path. The receiving side unquotes each segment back.
"""

from __future__ import annotations

from urllib.parse import quote


def quote_segment(text: str) -> str:
    """One URL path segment for any name."""
    seg = quote(text.encode("utf-8", "surrogatepass"), safe="")
    return seg.replace(".", "%2E") if seg in (".", "..") else seg


def quote_path(name: str) -> str:
    """A name that may hold `/` (a run file, an artifact entry) as URL path segments."""
    return "/".join(quote_segment(p) for p in name.split("/"))
