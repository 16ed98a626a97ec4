"""The fast path of a no-op redeploy: one look per resource family, an op only where it differs.

pyinfra 3 caches no facts: every op asks its own, one remote command each (a `files.put` alone
asks three: the file, its directory, its sha1). Here each family of resources the deploy manages
is read by ONE batched fact, and each op gets `_if=` a comparison against it:

    paths     ManagedPaths: type, mode, owner (by number), size, sha1 or link target of every path
    units     Units: pyinfra's own running/enabled test (SystemdStatus/SystemdEnabled) of every unit
    packages  pyinfra's DebPackages, once
    applied   tasks/common.AppliedConfigs: does each daemon run the configuration on disk
    system    Concurrently: the checks that ask the running system (Compose, Gitea, restic, SSM),
              all at once; a check that cannot answer says so (Unanswered, undecided())

An op whose resource already matches is skipped: its `_if` is false, and under `-y` a false `_if`
gathers none of the op's own facts. An op whose resource differs runs as the plain pyinfra op it
is, which looks at the host itself and decides as it always did. So the zero-change guarantee
stays with the ops (docs/architecture.md), and this module can only make a run skip what the op
would not have changed, never change what it would not have:

- a check is at least as strict as its op: content by sha1, type, mode and owner by number
  (pyinfra compares names; the deploy only names root, uid 0);
- a look is taken lazily, per host and family, and taken again once any op of this run changed
  something (an apt install creates files, a moved config changes what a daemon loads), so no
  check trusts a look older than the last change. A no-op run therefore looks once per family.

Ops are still pyinfra ops, named as before; the helpers below only add the `_if`. Without `-y`
(`--dry`, the diff pass) pyinfra ignores `_if` while planning and every op gathers its own facts.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import FactBase
from pyinfra.api.util import get_file_sha1, get_template
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import files, systemd
from pyinfra.operations.util.files import ensure_mode_int

# The only user the deploy names; everything else is owned by number (tasks/common.py).
UIDS = {"root": 0}


# --- the batched facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One path as ManagedPaths saw it (kind: file, directory, link, other; None when absent)."""

    kind: str | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    digest: str | None = None  # sha1 of a file whose content is managed; a link's target


class ManagedPaths(FactBase):
    """Every managed path in one command: `stat` (never following links) of each, the sha1 of the
    files whose content the deploy manages (`hashed`, so no secret's digest ever leaves the host),
    the target of each link."""

    default = dict

    def command(self, paths: tuple[str, ...], hashed: tuple[str, ...]) -> str:
        hashed_set = set(hashed)
        lines = []
        for path in paths:
            q = shlex.quote(path)
            tail = (f"case \"$s\" in regular*) h=$(sha1sum {q} | cut -c1-40);; symbolic*) h=$(readlink {q});; "
                    f"*) h=-;; esac; " if path in hashed_set else
                    f"case \"$s\" in symbolic*) h=$(readlink {q});; *) h=-;; esac; ")
            lines.append(f"if s=$(stat -c '%F|%a|%u|%g|%s' {q} 2>/dev/null); then {tail}"
                         f"printf '%s|%s|%s\\n' {q} \"$s\" \"$h\"; else printf '%s|absent\\n' {q}; fi")
        return "\n".join([*lines, "true"])

    def process(self, output: list[str]) -> dict[str, Seen]:
        seen: dict[str, Seen] = {}
        for line in output:
            # path|absent, or path|type|mode|uid|gid|size|digest (paths are the deploy's: no '|')
            parts = line.rstrip("\n").split("|")
            if len(parts) == 2 and parts[1] == "absent":
                seen[parts[0]] = Seen(None)
            elif len(parts) == 7:
                path, kind, mode, uid, gid, size, digest = parts
                kind = ("file" if kind.startswith("regular") else "directory" if kind == "directory"
                        else "link" if kind.startswith("symbolic") else "other")
                seen[path] = Seen(kind, int(mode), int(uid), int(gid), int(size),
                                  None if digest == "-" else digest)
        return seen


class Units(FactBase):
    """Running and enabled, as pyinfra's systemd.service decides them (the same `systemctl show`
    properties and values as SystemdStatus and SystemdEnabled), of every unit in one command."""

    default = dict

    def command(self, units: tuple[str, ...]) -> str:
        names = " ".join(shlex.quote(u) for u in units)
        return f"systemctl show --all --property Id --property SubState --property UnitFileState {names}"

    def process(self, output: list[str]) -> dict[str, tuple[bool, bool]]:
        found: dict[str, tuple[bool, bool]] = {}
        block: dict[str, str] = {}

        def flush() -> None:
            if block.get("Id"):
                found[block["Id"]] = (block.get("SubState") in SystemdStatus.state_values,
                                      block.get("UnitFileState") in SystemdEnabled.state_values)
            block.clear()

        for line in output:
            key, sep, value = line.strip().partition("=")
            if not sep or key in block:  # a blank line, or the next unit's first property
                flush()
            if sep:
                block[key] = value
        flush()
        return found


class Concurrently(FactBase):
    """The commands of several facts in one remote command, run at once: each in the background
    with its output in a file of its own, all printed once every one has ended, each line tagged
    with its fact's number. For the checks that ask the running system (Compose, Gitea's CLI,
    restic, SSM): tenths of a second each, read-only and independent of one another."""

    default = dict

    def command(self, commands: tuple[str, ...]) -> str:
        lines = ["d=$(mktemp -d /tmp/gitea-deploy-facts.XXXXXX) || exit 1"]
        lines += [f"( {command} ) > \"$d/{i}\" 2>/dev/null &" for i, command in enumerate(commands)]
        lines.append("wait")
        # awk, not sed: a last line without its newline must not run into the next fact's first
        lines += [f"awk '{{print \"{i} \" $0}}' \"$d/{i}\"" for i in range(len(commands))]
        lines.append("rm -rf \"$d\"")
        return "\n".join(lines)

    def process(self, output: list[str]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for line in output:
            tag, _, rest = line.partition(" ")
            if tag.isdigit():
                found.setdefault(int(tag), []).append(rest)
        return found


# --- the registry and the looks ------------------------------------------------------------------
#
# Each helper registers what it will ask about while deploy.py is loaded (before any op runs), so
# the one batched command covers the whole deploy. The registry is the process's (one pyinfra run):
# with several hosts, each looks at every host's items, which costs a few absent paths and no
# command. The looks are per host and state: pyinfra runs hosts in parallel greenlets.

_registry: dict[str, dict] = {}
_looks: dict[tuple[int, str, str], tuple[tuple[int, int], object]] = {}


def register(family: str, item, value=True) -> dict:
    """Add `item` to what the family's look covers (for paths, value: whether to hash it); return
    everything registered for the family."""
    items = _registry.setdefault(family, {})
    items[item] = (items.get(item) or value) if family == "paths" else value
    return items


def registered(family: str) -> dict:
    return _registry.get(family, {})


def changes_so_far() -> int:
    """How many of this host's ops have run and changed something, in this run."""
    ops = host.state.ops.get(host, {})
    return sum(1 for op in ops.values()
               if op.operation_meta.is_complete() and op.operation_meta.did_change())


def look(family: str, fact: type[FactBase], **kwargs):
    """`host.get_fact(fact, **kwargs)`, once per family until an op changes something (or the
    registry grew: a look taken while deploy.py was still loading covers fewer items)."""
    key = (id(host.state), host.name, family)
    stamp = (changes_so_far(), len(registered(family)))
    cached = _looks.get(key)
    if cached and cached[0] == stamp:
        return cached[1]
    value = host.get_fact(fact, **kwargs)
    _looks[key] = (stamp, value)
    return value


def paths() -> dict[str, Seen]:
    items = registered("paths")
    return look("paths", ManagedPaths, paths=tuple(sorted(items)),
                hashed=tuple(sorted(p for p, h in items.items() if h))) or {}


def units() -> dict[str, tuple[bool, bool]]:
    return look("units", Units, units=tuple(sorted(registered("units")))) or {}


def packages() -> dict:
    return look("packages", DebPackages) or {}


@dataclass(frozen=True)
class Unanswered:
    """The value of a running-system check whose command could not answer (it failed, or printed
    nothing), with why. Never a list or dict, so no `_if` takes it for "none": it decides with
    undecided()."""

    reason: str


_undecided: dict[tuple[int, str], str] = {}


def undecided(reason: str) -> bool:
    """What an `_if` returns when a check it needs was Unanswered: true, so the op runs and its own
    command decides, failing with the tool's own message while the tool still cannot answer (as the
    deploy does wherever a check cannot say: StaleServices, BackupRepositories). Said in the log,
    and kept for the drift report, which reports the op as one it cannot judge, with `reason`,
    instead of as a change (tasks/drift/evaluate.py)."""
    _undecided[(id(host.state), host.name)] = reason
    host.log_styled(f"{reason}: running the operation, whose own command decides", fg="yellow",
                    log_func=logger.warning)
    return True


def undecided_reason(target) -> str | None:
    """The reason the last undecided() on `target` (a pyinfra host) gave, once."""
    return _undecided.pop((id(target.state), target.name), None)


def system(fact: type[FactBase], **kwargs):
    """A callable giving `host.get_fact(fact, **kwargs)`, for a check that asks the running system.
    Every such check of the deploy is answered by one Concurrently look at the first ask; after an
    op of this run changed something, a check asks on its own instead (that look is not retaken:
    one slow check is cheaper than all of them)."""
    item = (fact, tuple(sorted(kwargs.items())))
    register("system", item)

    def ask():
        key = (id(host.state), host.name, "system")
        if key not in _looks:
            items = list(registered("system"))
            output = host.get_fact(Concurrently, commands=tuple(str(f().command(**dict(kw))) for f, kw in items))
            answers = {it: (it[0]().process(output[i]) if output.get(i) else it[0]().default())
                       for i, it in enumerate(items)}
            _looks[key] = (changes_so_far(), answers)
        seen_at, answers = _looks[key]
        if seen_at == changes_so_far() and item in answers:
            return answers[item]
        return host.get_fact(fact, **kwargs)

    return ask


# --- expectations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """What a managed path must look like for its op to change nothing. None: not checked."""

    kind: str | None  # file, directory, link; None: absent
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    digest: str | None = None
    nonempty: bool = False


def matches(seen: Seen | None, want: Want) -> bool:
    if seen is None:  # not in the look: never assume a match
        return False
    if want.kind is None or seen.kind is None:
        return want.kind is None and seen.kind is None
    return (seen.kind == want.kind
            and (want.mode is None or seen.mode == want.mode)
            and (want.uid is None or seen.uid == want.uid)
            and (want.gid is None or seen.gid == want.gid)
            and (want.digest is None or seen.digest == want.digest)
            and (not want.nonempty or bool(seen.size)))


def expect(path: str, want: Want):
    """An `_if` callable: true (run the op) unless `path` matches `want` in the current look."""
    register("paths", path, want.digest is not None and want.kind == "file")
    return lambda: not matches(paths().get(path), want)


def _mode(mode) -> int | None:
    return None if mode is None else int(ensure_mode_int(mode))


def _uid(name: str | None) -> int | None:
    if name is None:
        return None
    if name not in UIDS:
        raise ValueError(f"tasks/snapshot.py knows no uid for {name!r}: own it by number (tasks/common.chown)")
    return UIDS[name]


# --- the ops: pyinfra's own, with the `_if` of their resource ------------------------------------


def put(name: str, src, dest: str, mode: str | None = None, user: str | None = None, group: str | None = None):
    """files.put, skipped while `dest` has the content of `src`, the mode and the owner."""
    want = Want("file", _mode(mode), _uid(user), _uid(group), get_file_sha1(src))
    return files.put(name=name, src=src, dest=dest, mode=mode, user=user, group=group, _if=expect(dest, want))


def rendered(src: str, **context) -> str:
    """The template as files.template renders it: the same jinja2 template object and data."""
    data = {"host": host, "state": host.state, "inventory": host.state.inventory, **context}
    return get_template(src).render(data)


def template_digest(src: str, **context) -> str:
    return get_file_sha1(StringIO(rendered(src, **context)))


def template(name: str, src: str, dest: str, mode: str | None = None, **context):
    """files.template, skipped while `dest` holds exactly what the template renders to."""
    want = Want("file", _mode(mode), digest=template_digest(src, **context))
    return files.template(name=name, src=src, dest=dest, mode=mode, _if=expect(dest, want), **context)


def directory(name: str, path: str, mode: str, user: str | None = None, group: str | None = None):
    want = Want("directory", _mode(mode), _uid(user), _uid(group))
    return files.directory(name=name, path=path, mode=mode, user=user, group=group, _if=expect(path, want))


def file(name: str, path: str, mode: str | None = None, user: str | None = None, group: str | None = None,
         present: bool = True):
    """files.file: present with this mode/owner (content untouched), or absent."""
    want = Want("file", _mode(mode), _uid(user), _uid(group)) if present else Want(None)
    return files.file(name=name, path=path, mode=mode, user=user, group=group, present=present,
                      _if=expect(path, want))


def link(name: str, path: str, target: str | None = None, present: bool = True):
    want = Want("link", digest=target) if present else Want(None)
    return files.link(name=name, path=path, target=target, present=present, _if=expect(path, want))


def _unit(service: str) -> str:
    return service if "." in service else f"{service}.service"


def service(name: str, service: str, running: bool | None = None, enabled: bool | None = None):
    """systemd.service for running/enabled, skipped while the unit already is both as wanted."""
    unit = _unit(service)
    register("units", unit)

    def differs() -> bool:
        state = units().get(unit)
        return state is None or (running is not None and state[0] != running) \
            or (enabled is not None and state[1] != enabled)

    return systemd.service(name=name, service=service, running=running, enabled=enabled, _if=differs)


# --- predicates for shell ops ----------------------------------------------------------------------


def missing(path: str):
    """`_if` for an op that makes `path`: true while nothing is there."""
    register("paths", path, False)
    return lambda: (seen := paths().get(path)) is None or seen.kind is None


def exists(path: str):
    """A callable: true while something is at `path` (the opposite of missing)."""
    absent = missing(path)
    return lambda: not absent()


def missing_or_empty(path: str):
    """`_if` for an op that writes a file once: true while it is absent or empty (an empty secret
    never worked, so making a new one loses nothing)."""
    register("paths", path, False)
    return lambda: not matches(paths().get(path), Want("file", nonempty=True))


def owner_differs(path: str, uid: int, gid: int):
    """`_if` for a chown by number: true unless `path` is owned by uid:gid."""
    register("paths", path, False)

    def differs() -> bool:
        seen = paths().get(path)
        return seen is None or seen.kind is None or (seen.uid, seen.gid) != (int(uid), int(gid))

    return differs


def missing_packages(names: list[str]) -> list[str]:
    installed = packages()
    return [p for p in names if p not in installed]
