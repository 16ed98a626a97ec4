"""The one lock of the runs that change or read the deployed hosts from this checkout: the
scheduled redeploy (schedule/redeploy.py, exits 75 while it is held) and the drift report
(`python -m tasks.drift`, waits a bounded time, then exits 2). An operator's deploy by hand takes
it with flock(1) (docs/runbooks/schedule.md). Standard library only: the script runs by path."""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import time
from pathlib import Path

LOCK_FILE_ENV = "GITEA_DEPLOY_LOCK_FILE"
DEFAULT_LOCK_FILE = Path(__file__).resolve().parent.parent / ".redeploy.lock"  # in the checkout
POLL = 0.2  # s between tries while waiting


def lock_path(env) -> Path:
    """The lock file for these settings (an environment): GITEA_DEPLOY_LOCK_FILE, else the checkout's."""
    return Path(env.get(LOCK_FILE_ENV) or DEFAULT_LOCK_FILE)


class Lock:
    """An exclusive, non-blocking flock(2) on a file. The kernel drops it when the process ends,
    however it ends, so a killed run never leaves a stale lock. The file says who holds it."""

    def __init__(self, path: Path, purpose: str = "redeploy"):
        self.path = path
        self.purpose = purpose
        self.fd: int | None = None
        self.writable = False

    def acquire(self) -> bool:
        try:
            fd, writable = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), True
        except PermissionError:  # made by another user (root's `flock` by hand): flock needs only read
            fd, writable = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if writable:
            os.ftruncate(fd, 0)
            started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}: {self.purpose}\n".encode())
        self.fd, self.writable = fd, writable
        return True

    def wait(self, seconds: float) -> bool:
        """acquire(), trying again until `seconds` have passed (0: once)."""
        deadline = time.monotonic() + seconds
        while not self.acquire():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL, left))
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self.fd is not None:
            if self.writable:  # still held: the next holder may be flock(1), which writes no name
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None
