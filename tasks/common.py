"""Helpers the task modules share: the SSH setting, numeric ownership, staged configs, facts.
Each op's fast-path `_if` comes from tasks/snapshot.py."""

from __future__ import annotations

import posixpath
import shlex
import socket
from dataclasses import dataclass
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.util import get_file_sha1
from pyinfra.operations import server

from tasks import REPO, snapshot


def tcp_nodelay() -> None:
    """Send every remote command at once. paramiko sets no socket options, so without TCP_NODELAY
    each command's small packets wait on Nagle's algorithm and the peer's 40 ms delayed ACK: about
    46 ms a command on loopback instead of 3 (measured with pyinfra 3.10, paramiko 4). Called at the
    top of deploy.py and restore.py, so it holds for every inventory; a connector without a paramiko
    socket (@local, @docker, an SSH ProxyCommand) is left as it is."""
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def template(name: str) -> str:
    """Path of templates/<concern>/<file>.j2 (named after the file it becomes)."""
    return str(REPO / "templates" / name)


class LoginAccounts(FactBase):
    """uid -> `name:shell` of each host account with one of these uids that can log in (a shell
    other than nologin/false). A container uid shared with such an account gives that user the
    container's files. One command for all the uids."""

    default = dict

    def command(self, uids: tuple[int, ...]) -> str:
        return "; ".join(f"getent passwd {int(uid)} | cut -d: -f1,3,7" for uid in uids) + "; true"

    def process(self, output: list[str]) -> dict[int, str]:
        found = {}
        for line in output:
            name, _, rest = line.strip().partition(":")
            uid, _, shell = rest.partition(":")
            if name and uid.isdigit() and not shell.endswith(("/nologin", "/false")):
                found[int(uid)] = f"{name}:{shell}"
        return found


def owned_directory(path: str, uid: int, gid: int, mode: str, recursive: bool = False) -> None:
    """A directory owned by a container's uid/gid (by number), with this mode. `recursive`: when
    the directory's owner is wrong, everything below it is re-owned too (a changed container uid
    must take its files along, or the container can no longer read them)."""
    snapshot.directory(name=f"Directory {path}", path=path, mode=mode)
    chown(path, uid, gid, recursive=recursive)


def chown_command(path: str, uid: int, gid: int, recursive: bool = False) -> str:
    """Recursive: what lies below first, never following links, the directory itself last. The
    guard asks about the directory only, so a run killed halfway leaves it mis-owned and the next
    run finishes the tree (`chown -R` may change the directory first and strand the rest)."""
    wanted, target = shlex.quote(f"{uid}:{gid}"), shlex.quote(path)
    if not recursive:
        return f"chown {wanted} {target}"
    return (f"find {target} -mindepth 1 \\( ! -uid {int(uid)} -o ! -gid {int(gid)} \\) "
            f"-exec chown -h {wanted} {{}} + && chown {wanted} {target}")


def chown(path: str, uid: int, gid: int, recursive: bool = False) -> None:
    wanted = f"{uid}:{gid}"
    server.shell(
        name=f"Own {path} by {wanted}" + (" (and all below it)" if recursive else ""),
        commands=[chown_command(path, uid, gid, recursive)],
        # Evaluated at execution time: the path may only exist once earlier ops ran.
        _if=snapshot.owner_differs(path, uid, gid),
    )


# --- staged configuration: never lose a change, never leave an unvalidated file live ----------
#
# A config file that a daemon reads (nginx's vhosts, sshd's drop-in, Docker's daemon.json) goes
# through three ops instead of one:
#
#   1. staged_template(): render to STAGING_ROOT + the live path. Nothing loads files there, so a
#      broken candidate is harmless to a reboot or a package upgrade.
#   2. install_validated(): when a live file differs from its staged copy (or is missing), check
#      the candidate with the daemon's own validator, then move it into place atomically. A
#      candidate that fails leaves the live files untouched and fails the deploy with the
#      validator's message; every later deploy tries again until the template is fixed.
#   3. apply_when_stale(): reload/restart the daemon unless the deploy last did so with exactly the
#      configuration on disk now. The record of that is a marker, APPLIED_DIR/<name>.sha256: the
#      hash of the effective configuration (e.g. `nginx -T`), written only after the reload
#      succeeded; step 2 deletes it before it moves a file in. So a deploy killed between the move
#      and the reload, or a reload that failed, leaves a stale or missing marker and the next
#      deploy reloads. The content hash, not timestamps: reloads leave no timestamp in systemd
#      (nginx and sshd keep their PID), and it needs no trust in clocks. A reboot loads the files
#      on disk, which still match the marker, so it causes no reload.
#
# Every decision is made from facts read at execution time, never from whether an earlier op of
# this run changed something, so an interrupted or failed run is finished by the next one; a run
# with nothing to do reports no change.

STAGING_ROOT = "/etc/gitea-deploy/staged"
APPLIED_DIR = "/var/lib/gitea-deploy/applied"


@dataclass(frozen=True)
class StagedFile:
    live: str
    staged: str
    mode: str
    digest: str | None = None  # sha1 of the rendered template: what both files hold once installed


def staged_template(name: str, src: str, dest: str, mode: str = "644", **context) -> StagedFile:
    """Render a template to its staging path (step 1 above); install_validated() installs it."""
    staged = f"{STAGING_ROOT}{dest}"
    snapshot.template(name=f"{name} (staged)", src=src, dest=staged, mode=mode, **context)
    return StagedFile(live=dest, staged=staged, mode=mode, digest=snapshot.template_digest(src, **context))


def staged_put(name: str, content: str, dest: str, mode: str = "644") -> StagedFile:
    """staged_template() for a file the deploy serializes itself (yaml.safe_dump, json.dumps)."""
    staged = f"{STAGING_ROOT}{dest}"
    snapshot.put(name=f"{name} (staged)", src=StringIO(content), dest=staged, mode=mode)
    return StagedFile(live=dest, staged=staged, mode=mode, digest=get_file_sha1(StringIO(content)))


class PendingConfigs(FactBase):
    """Live paths that are missing or differ (content or mode) from their staged copy."""

    def command(self, pairs: tuple) -> str:
        checks = [
            f"{{ cmp -s {shlex.quote(staged)} {shlex.quote(live)} && "
            f"[ \"$(stat -c %a {shlex.quote(live)})\" = {shlex.quote(mode.lstrip('0') or '0')} ]; }} "
            f"|| echo {shlex.quote(live)}"
            for staged, live, mode in pairs
        ]
        return "; ".join(checks) + "; true"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


def _marker(name: str) -> str:
    return f"{APPLIED_DIR}/{name}.sha256"


def install_script(staged: list[StagedFile], check: str, marker_path: str, overlay: bool) -> str:
    """The shell script of install_validated(): check, then forget the marker, then move in."""
    dirs = sorted({posixpath.dirname(f.live) for f in staged})
    q = shlex.quote
    lines = ["set -e"]
    if overlay:
        lines += ["tmp=$(mktemp -d /tmp/gitea-deploy-check.XXXXXX)", "export tmp",
                  "trap 'rm -rf \"$tmp\"' EXIT"]
        binds = []
        for i, d in enumerate(dirs):
            lines += [f"mkdir -p {q(d)} \"$tmp/{i}\"", f"cp -a {q(d)}/. \"$tmp/{i}/\""]
            binds.append(f"mount --bind \"$tmp/{i}\" {q(d)}")
        for f in staged:
            lines.append(f"cp {q(f.staged)} \"$tmp/{dirs.index(posixpath.dirname(f.live))}/"
                         f"{posixpath.basename(f.live)}\"")
        run_check = f"unshare --mount --propagation private sh -ec {q('; '.join([*binds, check]))}"
    else:
        run_check = f"{{ {check}; }}"
    live = ", ".join(f.live for f in staged)
    lines.append(f"if ! {run_check}; then echo 'gitea-deploy: the new {live} failed validation "
                 f"({check}); the live configuration is unchanged; the candidate is under "
                 f"{STAGING_ROOT}' >&2; exit 1; fi")
    lines.append(f"rm -f {q(marker_path)}")
    for f in staged:
        new = f"{f.live}.gitea-deploy-new"  # same directory: the rename is atomic; no *.conf glob matches it
        lines += [f"install -m {q(f.mode)} {q(f.staged)} {q(new)}", f"mv -f {q(new)} {q(f.live)}"]
    return "\n".join(lines)


def install_validated(name: str, staged: list[StagedFile], check: str, marker: str,
                      overlay: bool = True) -> None:
    """Validate the staged candidates together, then move them into place (step 2 above).

    overlay=True: `check` is the daemon's own test of its live configuration (`nginx -t`,
    `sshd -t`); it runs in a private mount namespace where each live directory is replaced by a
    copy of itself holding the candidates, so it checks exactly what the daemon would load, with
    every absolute include path intact, while nothing outside that namespace ever sees it.
    overlay=False: `check` names the staged files itself (`dockerd --validate --config-file ...`).
    """
    script = install_script(staged, check, _marker(marker), overlay)
    pairs = tuple((f.staged, f.live, f.mode) for f in staged)
    # Fast path: every live file already holds what its template renders to, with its mode. Else
    # PendingConfigs compares each live file with its staged copy on the host, as always.
    live_differs = [snapshot.expect(f.live, snapshot.Want("file", snapshot._mode(f.mode), digest=f.digest))
                    for f in staged]
    server.shell(name=name, commands=[script],
                 _if=lambda: any(d() for d in live_differs) and bool(host.get_fact(PendingConfigs, pairs=pairs)))


class ConfigApplied(FactBase):
    """"current" when the marker holds the hash of the effective configuration, else "stale"."""

    def command(self, effective: str, marker: str) -> str:
        return (f"h=$({effective} 2>/dev/null | sha256sum | cut -d' ' -f1); "
                f"[ \"$h\" = \"$(cat {shlex.quote(marker)} 2>/dev/null)\" ] && echo current || echo stale")

    def process(self, output: list[str]) -> str:
        return output[-1].strip() if output else "stale"


class AppliedConfigs(FactBase):
    """ConfigApplied of several daemons in one command: marker -> "current" | "stale"."""

    default = dict

    def command(self, pairs: tuple[tuple[str, str], ...]) -> str:
        return "\n".join(f"printf '%s ' {shlex.quote(marker)}; {ConfigApplied().command(effective, marker)}"
                         for effective, marker in pairs)

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.strip().rsplit(" ", 1) for line in output if " " in line.strip())


def config_stale(effective: str, marker: str):
    """`_if` of apply_when_stale: true unless the daemon runs what is on disk. One look answers
    for every daemon of the deploy (tasks/snapshot.py)."""
    snapshot.register("applied", (effective, marker))

    def stale() -> bool:
        pairs = tuple(sorted(snapshot.registered("applied")))
        return (snapshot.look("applied", AppliedConfigs, pairs=pairs) or {}).get(marker) != "current"

    return stale


def apply_when_stale(name: str, marker: str, effective: str, command: str) -> None:
    """Run `command` (a reload or restart) unless the daemon already runs the configuration on
    disk (step 3 above); record that it does once `command` succeeded."""
    path = _marker(marker)
    server.shell(
        name=name,
        commands=[f"{command} && mkdir -p {APPLIED_DIR} && "
                  f"{effective} 2>/dev/null | sha256sum | cut -d' ' -f1 > {shlex.quote(path)}"],
        _if=config_stale(effective, path),
    )
