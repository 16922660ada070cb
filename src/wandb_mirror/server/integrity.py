"""`serve` never completes a response whose bytes differ from the object's md5.

An object can rot on disk after it was verified (bit flips, truncation, a stray write). The bytes
are hashed while they stream; the last chunk is held back until the whole body has hashed to its
key and has the announced size. If not, the chunk is never sent and the connection is closed, so
the client sees a short body (an error, and the official client retries then fails) instead of
saving a corrupt file as good.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)


def verified_chunks(chunks: Iterator[bytes], md5: str, size: int) -> Iterator[bytes]:
    """Pass `chunks` through, holding the last one back unless the whole stream hashes to `md5`."""
    h = hashlib.md5()
    n = 0
    held: bytes | None = None
    for chunk in chunks:
        if held is not None:
            yield held
        h.update(chunk)
        n += len(chunk)
        held = chunk
    if h.hexdigest() != md5 or n != size:
        log.error("object %s is damaged on disk (%d bytes hashing to %s): response cut short; run "
                  "`wandb-mirror repair`", md5, n, h.hexdigest())
        return
    if held is not None:
        yield held
