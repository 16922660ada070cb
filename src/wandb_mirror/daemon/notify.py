"""sd_notify(3) with the standard library only (after systemd's MIT-0 notify-selfcontained-example.py).

Without $NOTIFY_SOCKET every call is a no-op, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("wandb_mirror.daemon")


class Notifier:
    def __init__(self, address: str | None = None):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def _connect(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        addr = self.address or ""
        if addr.startswith("@"):  # abstract namespace
            addr = "\0" + addr[1:]
        elif not addr.startswith("/"):
            log.warning("NOTIFY_SOCKET=%r is not a unix socket path; sd_notify disabled", self.address)
            self.address = None
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.connect(addr)
        self._sock = sock
        return sock

    def notify(self, **fields: object) -> bool:
        """Send KEY=VALUE lines, e.g. notify(READY=1, STATUS="syncing"); False if not sent."""
        if not self.address:
            return False
        msg = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()).encode()
        try:
            sock = self._connect()
            if sock is None:
                return False
            sock.sendall(msg)
            return True
        except OSError as e:  # systemd gone or socket full: never fatal
            log.debug("sd_notify failed: %s", e)
            self.close()
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, STATUS=status) if status else self.notify(READY=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def reloading(self) -> bool:
        import time

        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between keep-alives (half of WATCHDOG_USEC), or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        return max(int(usec) / 1_000_000 / 2, 0.05)
    except ValueError:
        return None
