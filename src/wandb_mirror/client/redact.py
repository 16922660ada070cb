"""Secrets never enter the store: whatever upstream returns is redacted before it is converted.

A value under a key that names a secret (secret, token, password, api key, credentials...) becomes
REDACTED; a URL keeps its scheme, host and path, loses any `user:password@`, and its query values
under such keys are redacted too (a webhook URL often carries its token in the query).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"secret|token|passw|api_?key|credential|auth|signature|private|^sig$|^key$|^code$", re.I)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact(value: Any) -> Any:
    """A copy of `value` (decoded JSON) with every secret replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return redact_url(value)
    return value
