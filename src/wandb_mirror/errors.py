"""Exceptions that carry an exit code, so the CLI can report them in one line without a traceback."""

from __future__ import annotations


class MirrorError(Exception):
    """Base class. `exit_code` is the command's exit status: 1 = the work failed, 2 = bad usage or bad input."""

    exit_code = 1


class UsageError(MirrorError):
    """Bad command line, bad configuration, bad fixture: the user must fix their input."""

    exit_code = 2


class WorkFailed(MirrorError):
    """The requested work could not be done (corruption found, upstream failed, ...)."""

    exit_code = 1


class IntegrityError(WorkFailed):
    """Bytes did not match the digest or size they were announced with; nothing was stored."""


class StoreLocked(WorkFailed):
    """Another writer holds the store lock."""


class PassAborted(MirrorError):
    """Stop the pass now (retry budget exhausted, store problem, the daemon stopping)."""


class Stopping(PassAborted):
    """The pass stops because the process was asked to (SIGTERM): an outcome, not an error."""
