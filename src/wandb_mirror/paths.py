"""Directories the user names (a store, --out, --dir): one clear line when they cannot be used."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import UsageError

_WHY = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a file is in the way", errno.EEXIST: "a file is in the way",
        errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device",
        errno.ENOENT: "no such directory (a virtual filesystem such as /proc or /sys cannot hold files)"}


def why(e: OSError) -> str:
    return _WHY.get(e.errno or 0) or e.strerror or str(e)


def creatable_problem(path: Path) -> str | None:
    """Why a directory at `path` could not be created (or written, when it exists), without
    creating anything; None when it looks usable. For check-config: the README's default store
    path under /var/lib is not writable for a non-root user."""
    path = Path(os.path.abspath(path))
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return "no existing parent directory"
        probe = probe.parent
    if not probe.is_dir():
        return f"a file is in the way ({probe})"
    if str(probe).startswith(("/proc", "/sys")) or probe.resolve() in (Path("/proc"), Path("/sys")):
        return f"{probe} is a virtual filesystem"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"permission denied: {probe} is not writable by this user (uid {os.getuid()})"
    return None


def writable_dir(path: str | Path, option: str) -> Path:
    """Make sure `path` is a directory this process can write into (creating it); else a UsageError
    naming `option` and the reason."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{option} {p}: a file is in the way, not a directory") from None
    except OSError as e:
        raise UsageError(f"{option} {p} cannot be created: {why(e)}") from None
    if not p.is_dir():
        raise UsageError(f"{option} {p}: not a directory")
    try:  # os.access is not enough: a read-only mount or an immutable directory says yes to root
        probe = p / f".wandb-mirror-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{option} {p} is not writable: {why(e)}") from None
    return p
