"""Small helpers: bounded waits, file locks, subprocess calls, printing."""

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from lab import LAB_DIR, LabError


def say(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def warn(msg: str) -> None:
    print(f"lab: WARNING: {msg}", file=sys.stderr, flush=True)


def run(argv, *, check=True, timeout=120, input=None, env=None, what=None) -> subprocess.CompletedProcess:
    """Run a command, text in/out. On failure (check) raise LabError with its output."""
    try:
        # stdin only without input: gevent's subprocess.run (pyinfra_cli patches the process it
        # is imported in) refuses stdin=None beside input.
        feed = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        cp = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, env=env,
                            **feed)
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]} is not installed ({e})") from None
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{what or ' '.join(map(str, argv[:4]))}: no answer after {timeout}s") from e
    if check and cp.returncode != 0:
        out = (cp.stdout[-2000:] + cp.stderr[-2000:]).strip()
        raise LabError(f"{what or ' '.join(map(str, argv))} failed (exit {cp.returncode}):\n{out}")
    return cp


class GiveUp(LabError):
    """Raised by a wait's check when waiting longer cannot help (e.g. the process died)."""


def wait_until(what: str, check, *, timeout: float, interval: float = 1.0, on_fail=None):
    """Call check() until it returns something truthy; bounded in time AND in tries.

    check may raise LabError: the last one is shown if the wait fails; GiveUp ends the wait at once.
    on_fail() returns extra evidence (e.g. a container's last logs) for the error message.
    """
    deadline = time.monotonic() + timeout
    max_tries = int(timeout / interval) + 3
    last = None
    for _ in range(max_tries):
        try:
            result = check()
            if result:
                return result
            last = result
        except GiveUp:
            raise
        except LabError as e:
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    evidence = ""
    if on_fail is not None:
        try:
            evidence = on_fail()
        except Exception as e:  # evidence is best effort; the timeout is the error
            evidence = f"(could not collect evidence: {e})"
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}; last result: {last!r}\n{evidence}".rstrip())


@contextlib.contextmanager
def locked(name: str, timeout: float = 1800):
    """An exclusive lock shared by every lab process on this checkout (.lab/locks/NAME.lock)."""
    path = LAB_DIR / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    say(f"waiting for another lab process (lock {path.name})")
                    announced = True
                if time.monotonic() >= deadline:
                    raise LabError(f"lock {path} still held after {timeout:.0f}s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def rel(path: Path) -> str:
    """A path under the repository as the state file stores it (relative to the repo root)."""
    from lab import REPO

    return os.path.relpath(path, REPO)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Timer:
    def __init__(self):
        self.t0 = time.monotonic()

    def __str__(self):
        return f"{time.monotonic() - self.t0:.1f}s"
