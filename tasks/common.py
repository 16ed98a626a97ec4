"""Helpers the task modules share: idempotent package installs, numeric ownership, facts."""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server

REPO = Path(__file__).resolve().parents[1]


def template(name: str) -> str:
    """Path of templates/<concern>/<file>.j2 (named after the file it becomes)."""
    return str(REPO / "templates" / name)


def apt_install(packages: list[str], no_recommends: bool = False) -> None:
    """Install Debian packages, refreshing the index only when one is missing.

    `apt.packages(update=True)` would run `apt-get update` on every deploy and break the
    zero-changes guarantee scheduled redeploys rely on. `no_recommends` keeps out what a package
    only recommends (cron would bring a mail server, restic FUSE, node_exporter a dozen collectors).
    """
    installed = host.get_fact(DebPackages) or {}
    missing = [p for p in packages if p not in installed]
    apt.packages(
        name=f"Install {', '.join(packages)}",
        packages=packages,
        update=bool(missing),
        no_recommends=no_recommends,
        _env={"DEBIAN_FRONTEND": "noninteractive"},
    )


class LoginAccount(FactBase):
    """`name:shell` of the host account with this uid when it can log in (a shell other than
    nologin/false), else None. A container uid shared with such an account gives that user the
    container's files."""

    def command(self, uid: int) -> str:
        return f"getent passwd {int(uid)} | cut -d: -f1,7 || true"

    def process(self, output: list[str]) -> str | None:
        line = output[0].strip() if output else ""
        name, _, shell = line.partition(":")
        return line if name and not shell.endswith(("/nologin", "/false")) else None


class NumericOwner(FactBase):
    """`uid:gid` of a path, by number: container uids often have no name on the host, and
    pyinfra's name-based ownership checks then never settle ("UNKNOWN" != "999")."""

    def command(self, path: str) -> str:
        return f"stat -c '%u:%g' {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None


def owned_directory(path: str, uid: int, gid: int, mode: str, recursive: bool = False) -> None:
    """A directory owned by a container's uid/gid (by number), with this mode. `recursive`: when
    the directory's owner is wrong, everything below it is re-owned too (a changed container uid
    must take its files along, or the container can no longer read them)."""
    files.directory(name=f"Directory {path}", path=path, mode=mode)
    chown(path, uid, gid, recursive=recursive)


def chown(path: str, uid: int, gid: int, recursive: bool = False) -> None:
    wanted = f"{uid}:{gid}"
    server.shell(
        name=f"Own {path} by {wanted}" + (" (and all below it)" if recursive else ""),
        commands=[f"chown {'-R ' if recursive else ''}{shlex.quote(wanted)} {shlex.quote(path)}"],
        # Evaluated at execution time: the path may only exist once earlier ops ran.
        _if=lambda: host.get_fact(NumericOwner, path=path) != wanted,
    )
