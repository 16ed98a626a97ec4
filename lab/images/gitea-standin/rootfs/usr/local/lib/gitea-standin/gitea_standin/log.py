"""Log lines shaped like Gitea's console logger ("2025/01/02 03:04:05 ... [I] message"), so the
deploy's log checks and the fail2ban filter see the same line shapes as in production.

Every level goes to stdout, Fatal included: Gitea's console writer (modules/log SetConsoleLogger,
WriterConsoleOption{Stderr: false}) is what both `gitea web` and the CLI log through."""

import sys
import threading
import time

_lock = threading.Lock()


def _line(level, msg, where):
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    return f"{stamp} {where} [{level}] {msg}\n"


def _emit(stream, text):
    with _lock:
        stream.write(text)
        stream.flush()


def info(msg, where="standin"):
    _emit(sys.stdout, _line("I", msg, where))


def warn(msg, where="standin"):
    _emit(sys.stdout, _line("W", msg, where))


def error(msg, where="standin"):
    _emit(sys.stdout, _line("E", msg, where))


def fatal(msg, where="standin"):
    """Gitea's log.Fatal: message on the console (stdout), exit status 1."""
    _emit(sys.stdout, _line("F", msg, where))
    raise SystemExit(1)
