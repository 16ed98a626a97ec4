"""The probe's work for one host (tasks/drift/probe.py calls `probe()` in pyinfra's prepare stage).

Each of the host's operations, in execution order, decided as pyinfra's execute stage decides it:
the `_if` callables first (false: the op is skipped, and so are its facts), then the op's generator;
an op that yields a command would change. Only facts run on the host; no command an op yields is
ever executed. Why each change: the facts its `_if` read and their values, the commands it would
run, and a diff where it would write a file (not for files other users may not read).

What a dry run cannot know, and how the report says so:
- An `_if` that asks whether an earlier op changed (`_if=op.did_change`) is answered with that
  op's verdict here, and the change names the op it follows.
- An `_if` read before an earlier change of its stage ran (a reload after an install, the admin
  check after the stack's start) may be settled by that change: the report says "follows" too.
- A condition that fails (an exception, an unreadable fact) after an earlier change is reported as
  a change that cannot be judged before that one ran; with no earlier change the host is unknown.
  So is one that decided on a check the host could not answer (tasks/snapshot.undecided): the
  deploy would run that op and let its command decide, which a dry run cannot.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File, FileContents

from tasks import snapshot

DIFF_LINES = 40
COMMAND_CHARS = 240
COMMANDS_SHOWN = 3
FACT_CHARS = 160
# The bound methods of an earlier op's result that an `_if` may be, and how each reads that op's verdict.
_RESULT_METHODS = {
    "did_change": lambda changed: changed,
    "did_not_change": lambda changed: not changed,
    "did_succeed": lambda changed: True,
    "did_error": lambda changed: False,
}


def op_name(meta) -> str:
    """The op's name as pyinfra prints it (its stage first: "Base system | ...")."""
    name = sorted(meta.names)[0]
    return f"{name} ({', '.join(str(arg) for arg in meta.args)})" if meta.args else name


def stage_of(name: str) -> str:
    return name.split(" | ", 1)[0] if " | " in name else ""


def short(value: Any, limit: int = FACT_CHARS) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fact_line(cls: type, kwargs: dict, value: Any) -> str:
    args = ", ".join(f"{k}={short(v, 60)}" for k, v in kwargs.items())
    return f"{cls.__name__}({args}) = {short(value)}"


def fact_lines(cls: type, kwargs: dict, value: Any) -> list[str]:
    """One line per fact read; the running-system checks that tasks/snapshot.py asks in one
    Concurrently look are shown as the facts they answer, each with its own processed value."""
    if cls is not snapshot.Concurrently:
        return [fact_line(cls, kwargs, value)]
    items = list(snapshot.registered("system"))
    return [fact_line(fact, dict(fact_kwargs), fact().process(value[i]) if value.get(i) else fact().default())
            for i, (fact, fact_kwargs) in enumerate(items)]


def conditions_of(global_arguments: dict) -> list:
    found = global_arguments.get("_if")
    if found is None:
        return []
    return list(found) if isinstance(found, list | tuple) else [found]


def command_lines(commands: list) -> list[str]:
    """What the op would run, masked (pyinfra's MaskString) and one line each, the first few."""
    lines = []
    for command in commands:
        if isinstance(command, FileUploadCommand):
            lines.append(f"write {command.dest}")
        elif isinstance(command, StringCommand):
            lines.append(short(command.get_masked_value().replace("\n", "; "), COMMAND_CHARS))
        elif isinstance(command, FunctionCommand):
            lines.append(f"python {getattr(command.function, '__name__', command.function)}")
        else:
            lines.append(short(command, COMMAND_CHARS))
    if len(lines) > COMMANDS_SHOWN:
        lines = [*lines[:COMMANDS_SHOWN], f"(and {len(lines) - COMMANDS_SHOWN} more)"]
    return lines


_CHMOD = re.compile(r"^chmod (?:-R )?([0-7]{3,4}) ")


def private_mode(mode: Any) -> bool:
    """A mode (pyinfra writes them as decimal digits: 644) under which other users may not read."""
    text = str(mode) if mode is not None else ""
    return bool(text) and text[-1] in "0123"


def unified(old: list[str] | None, new: list[str], old_label: str, new_label: str) -> list[str]:
    if old is None:
        return [f"{old_label}: missing"]
    lines = list(difflib.unified_diff([line.rstrip("\n") for line in old], [line.rstrip("\n") for line in new],
                                      old_label, new_label, n=1, lineterm=""))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more diff lines)"]
    return lines


def local_text(src: Any) -> list[str]:
    if isinstance(src, str | Path):
        return Path(src).read_text(errors="replace").splitlines()
    position = src.tell() if hasattr(src, "tell") else None
    src.seek(0)
    data = src.read()
    if position is not None:
        src.seek(position)
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    return data.splitlines()


def upload_diff(host, command: FileUploadCommand, commands: list) -> list[str]:
    modes = [m.group(1) for c in commands if isinstance(c, StringCommand)
             if (m := _CHMOD.match(c.get_masked_value()))]
    remote = host.get_fact(File, path=command.dest)
    if any(private_mode(m) for m in modes) or (remote and private_mode(remote.get("mode"))):
        return [f"({command.dest}: contents differ or mode/owner; not shown, other users may not read it)"]
    old = host.get_fact(FileContents, path=command.dest) if remote else None
    try:
        new = local_text(command.src)
    except (OSError, ValueError, AttributeError):
        return []
    diff = unified(old, new, f"{command.dest} (on the host)", f"{command.dest} (the deploy's)")
    return diff or [f"({command.dest}: same contents; its mode or owner differs)"]


def pending_config_diffs(host, kwargs: dict, value: Any) -> list[str]:
    """tasks/common.PendingConfigs: live paths that differ from their staged copy: diff the two."""
    lines = []
    for staged, live, mode in kwargs.get("pairs") or ():
        if live not in (value or []):
            continue
        if private_mode(mode):
            lines.append(f"({live}: differs from {staged}; not shown, mode {mode})")
            continue
        new = host.get_fact(FileContents, path=staged) or []
        diff = unified(host.get_fact(FileContents, path=live), new, f"{live} (on the host)",
                       f"{staged} (the deploy's)")
        lines += diff or [f"({live}: same contents as {staged}; its mode differs from {mode})"]
    return lines


def diffs(host, facts_read: list, commands: list) -> list[str]:
    """Where the op would write a file, or install a staged one, the host's copy against the deploy's."""
    lines = []
    for cls, kwargs, value in facts_read:
        if cls.__name__ == "PendingConfigs":
            lines += pending_config_diffs(host, kwargs, value)
    for command in commands:
        if isinstance(command, FileUploadCommand):
            lines += upload_diff(host, command, commands)
    return lines


class FactRecorder:
    """Every fact an `_if` reads while this is active, with its arguments and value."""

    def __init__(self, host):
        self.host = host
        self.read: list[tuple[type, dict, Any]] = []

    def __enter__(self):
        original = type(self.host).get_fact

        def recording(cls, *args, **kwargs):
            value = original(self.host, cls, *args, **kwargs)
            self.read.append((cls, kwargs, value))
            return value

        self.host.get_fact = recording
        return self

    def __exit__(self, *exc):
        del self.host.get_fact
        return False


class Undecided(Exception):
    """An op's condition held only because a check it needed could not be answered."""


def condition_holds(condition, verdicts: dict[str, bool], names: dict[str, str]) -> tuple[bool, str | None]:
    """(does the `_if` hold, the earlier op it reads when it is one's result)."""
    owner = getattr(condition, "__self__", None)
    method = getattr(getattr(condition, "__func__", None), "__name__", "")
    if isinstance(owner, OperationMeta) and method in _RESULT_METHODS:
        changed = verdicts.get(owner._hash, False)
        return _RESULT_METHODS[method](changed), names.get(owner._hash, "an earlier operation")
    return bool(condition()), None


def evaluate(state, host) -> dict:
    """This host's report: {"host", "status": match|drift|unknown, "operations", "changes", "error"}."""
    verdicts: dict[str, bool] = {}
    names: dict[str, str] = {}
    changes: list[dict] = []
    error = None
    for op_hash in list(host.op_hash_order):
        data = state.get_op_data_for_host(host, op_hash)
        name = names[op_hash] = op_name(state.op_meta[op_hash])
        earlier = [c["name"] for c in changes]
        same_stage = [n for n in earlier if stage_of(n) == stage_of(name)]
        change: dict = {"name": name, "because": [], "commands": [], "diff": []}
        recorder = FactRecorder(host)
        failed_before = host in state.failed_hosts
        snapshot.undecided_reason(host)  # an earlier op's, already reported
        try:
            follows = None
            with recorder:
                holds = True
                for condition in conditions_of(data.global_arguments):
                    holds, follows = condition_holds(condition, verdicts, names)
                    if not holds:
                        break
            if holds:
                commands = list(data.command_generator())
            if not failed_before and host in state.failed_hosts:
                raise RuntimeError("a fact could not be read (pyinfra's log says which)")
            if holds and commands and (reason := snapshot.undecided_reason(host)):
                raise Undecided(reason)
        except Exception as exc:  # anything: the report must still be written
            why = str(exc) if isinstance(exc, Undecided) else f"{type(exc).__name__}: {exc}"
            if not earlier:
                error = f"{name}: {why}"
                break
            verdicts[op_hash] = True
            change.update(follows=f"cannot be judged before the changes above ran ({short(why, 160)})",
                          definite=False)
            changes.append(change)
            continue
        if not holds or not commands:
            verdicts[op_hash] = False
            continue
        verdicts[op_hash] = True
        change["because"] = [line for cls, kwargs, value in recorder.read for line in fact_lines(cls, kwargs, value)]
        if follows:
            change["follows"] = f"{follows} would change"
        elif recorder.read and same_stage:
            change["follows"] = (f"its condition was read before {same_stage[-1]} ran, "
                                 "which may settle it")
        change["commands"] = command_lines(commands)
        try:
            change["diff"] = diffs(host, recorder.read, commands)
        except Exception as exc:  # a diff is an explanation; the verdict stands without it
            change["diff"] = [f"(no diff: {type(exc).__name__}: {short(str(exc), 120)})"]
        change["definite"] = True
        changes.append(change)
    if error:
        status = "unknown"
    elif any(c.get("definite") for c in changes):
        status = "drift"
    else:
        status = "unknown" if changes else "match"
        if changes:
            error = "only changes that cannot be judged before earlier ones ran"
    return {"host": host.name, "status": status, "operations": len(host.op_hash_order), "changes": changes,
            "error": error}


def write_report(state, host, directory: str | os.PathLike) -> dict:
    from tasks.drift import SUMMARY

    try:
        report = evaluate(state, host)
    except Exception as exc:  # the wrapper must get a report, even from a bug here
        report = {"host": host.name, "status": "unknown", "operations": None, "changes": [],
                  "error": f"{type(exc).__name__}: {exc}"}
    directory = Path(directory)
    # Any host name as a file name ("@docker/..." holds a slash); the wrapper reads the name inside.
    (directory / f"host-{quote(host.name, safe='')}.json").write_text(json.dumps(report, default=str))
    summary = {"targeted": sorted(h.name for h in state.inventory if state.is_host_in_limit(h)),
               "failed": sorted(h.name for h in state.failed_hosts)}
    (directory / "_inventory.json.partial").write_text(json.dumps(summary))
    os.replace(directory / "_inventory.json.partial", directory / SUMMARY)
    return report

