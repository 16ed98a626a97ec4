"""Has the host drifted? `python -m tasks.drift INVENTORY [--limit NAME] [--data KEY=VALUE] [--wait S] [--json]`.

Changes nothing. Exit 0: every host matches the deploy; 1: at least one has drifted (each
operation the next deploy would run is printed, with why); 2: could not tell (bad inventory, a host
unreachable, a fact that could not be read, a redeploy still running). docs/runbooks/deploy.md,
"Has the host drifted?".

A host in the middle of a redeploy is neither drifted nor matching, so the check takes the
scheduled redeploy's lock (schedule/lock.py: the same file, GITEA_DEPLOY_LOCK_FILE) before pyinfra
touches any host and holds it until the report is read. While a redeploy holds it the check waits
up to --wait seconds (LOCK_WAIT; a redeploy that finishes meanwhile is then checked, as it left the
host), then gives up with exit 2 without asking any host.

Why not `pyinfra --dry`: its prepare pass never evaluates `_if`, and this deploy decides nearly
every follow-up through `_if` (start the stack when a container is stale, install a staged config
when the live one differs, reload when the applied marker is stale): `--dry` shows every such op
as a "conditional change" on a host that matches, and would not see a stopped container at all.

So the command runs `pyinfra --dry -y INVENTORY deploy.py tasks/drift/probe.py`: pyinfra loads the
inventory and the deploy exactly as a deploy does (`-y`: without running op generators in the
prepare pass; `--dry`: then stops before executing anything), and the probe, a deploy file that
adds no operation, walks each host's operations in execution order the way pyinfra's execute stage
would (tasks/drift/evaluate.py): `_if` first, then the op's generator, against facts read now; an
op that yields a command would change. It writes one JSON report per host into a temporary
directory; this module reads them and maps them to the exit code. Only facts (read-only commands)
reach the host.

This module imports nothing of pyinfra (pyinfra_cli patches the process with gevent): the unit
tests call its functions directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schedule.lock import Lock, lock_path
from tasks import REPO

MATCH, DRIFT, UNKNOWN = 0, 1, 2
LOCK_WAIT = 300  # s: most redeploys end within it; a longer one is worth the exit 2 that names it
REPORT_DIR_ENV = "GITEA_DEPLOY_DRIFT_DIR"
SUMMARY = "_inventory.json"  # the probe's list of targeted and failed hosts, beside one <host>.json each
PROBE = "tasks/drift/probe.py"
DEPLOY = "deploy.py"

# What pyinfra prints on stderr when it cannot get as far as the probe, worth showing as the reason.
_REASON_MARKERS = ("pyinfra error", "Could not connect", "is neither an inventory file", "unexpected exception",
                   "Error:", "error:")


def pyinfra_argv(inventory: str, limits: list[str], data: list[str], deploy: str = DEPLOY,
                 python: str = sys.executable) -> list[str]:
    """The pyinfra run: inventory and deploy loaded as a deploy loads them, nothing executed."""
    argv = [python, "-m", "pyinfra", "--dry", "-y", inventory, deploy, PROBE]
    for name in limits:
        argv += ["--limit", name]
    for item in data:
        argv += ["--data", item]
    return argv


def read_reports(directory: Path) -> tuple[dict | None, dict[str, dict]]:
    """The probe's summary (None when pyinfra stopped before probing any host) and its reports."""
    summary_path = directory / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    reports = {}
    for path in sorted(directory.glob("*.json")):
        if path.name != SUMMARY:
            report = json.loads(path.read_text())
            reports[report["host"]] = report
    return summary, reports


def failure_reason(stderr: str, limit: int = 12) -> str:
    """The lines of pyinfra's log that say why it stopped, each with the lines that continue it
    (a settings error names one key per line), or the log's last lines when none does."""
    lines = [line.rstrip() for line in stderr.splitlines()]
    wanted: list[str] = []
    following = False
    for line in lines:
        if any(marker in line for marker in _REASON_MARKERS):
            wanted.append(line.strip())
            following = True
        elif following and line.strip() and not line.startswith("-->"):
            wanted.append(line.strip())
        else:
            following = False
    found = wanted or [line.strip() for line in lines if line.strip()]
    return "\n".join(found[-limit:]) or "pyinfra printed nothing"


def verdicts(summary: dict | None, reports: dict[str, dict], returncode: int, stderr: str) -> dict[str, dict]:
    """Host name -> {"status": "match" | "drift" | "unknown", ...report}, for every targeted host.

    A host without a report is unknown: it failed to connect, or a fact failed while the deploy
    loaded; so is every host when pyinfra stopped before the probe (no summary). A drift the probe
    found stands whatever failed later; a match does not when pyinfra failed (a host pyinfra marked
    failed, or a non-zero exit): something went wrong that the probe did not see.
    """
    if summary is None:
        return {"(inventory)": _unknown("(inventory)", failure_reason(stderr))}
    found = {}
    failed = set(summary.get("failed", []))
    for name in summary.get("targeted", []):
        report = reports.get(name)
        if report is None:
            found[name] = _unknown(name, f"no answer from {name}: {failure_reason(stderr)}")
        elif report["status"] == "match" and (name in failed or returncode != 0):
            found[name] = {**report, "status": "unknown",
                           "error": f"pyinfra exited {returncode}: {failure_reason(stderr)}"}
        else:
            found[name] = report
    return found or {"(inventory)": _unknown("(inventory)", "the inventory has no host (after --limit)")}


def _unknown(name: str, error: str) -> dict:
    return {"host": name, "status": "unknown", "operations": None, "changes": [], "error": error}


def exit_code(hosts: dict[str, dict]) -> int:
    """2 when any host could not be told, else 1 when any drifted, else 0."""
    statuses = {report["status"] for report in hosts.values()}
    if not statuses or "unknown" in statuses:
        return UNKNOWN
    return DRIFT if "drift" in statuses else MATCH


def render(hosts: dict[str, dict], seconds: float | None = None) -> str:
    """What an operator reads: one block per host, each change with its reasons."""
    out = []
    for name, report in sorted(hosts.items()):
        status, changes = report["status"], report.get("changes", [])
        total = report.get("operations")
        if status == "match":
            out.append(f"{name}: matches the deploy ({total} operations, none would change)")
        elif status == "drift":
            out.append(f"{name}: DRIFTED: {len(changes)} of {total} operations would change")
        else:
            out.append(f"{name}: COULD NOT TELL: {report.get('error')}")
        for change in changes:
            out.append(f"  ~ {change['name']}")
            if change.get("follows"):
                out.append(f"      (follows: {change['follows']})")
            out += [f"      because {line}" for line in change.get("because", [])]
            out += [f"      runs: {line}" for line in change.get("commands", [])]
            out += [f"      {line}" for line in change.get("diff", [])]
    if seconds is not None:
        out.append(f"(drift check took {seconds:.1f} s)")
    return "\n".join(out)


USAGE = ("usage: python -m tasks.drift INVENTORY [--limit NAME]... [--data KEY=VALUE]... [--wait SECONDS] [--json]\n"
         f"--wait: how long to wait for a running redeploy's lock (default {LOCK_WAIT}; 0: not at all)\n"
         "exit 0: matches, 1: drifted, 2: could not tell (docs/runbooks/deploy.md, Has the host drifted?)")


def parse_args(argv: list[str]) -> dict:
    usage = USAGE
    args = {"inventory": None, "limits": [], "data": [], "json": False, "wait": LOCK_WAIT}
    rest = list(argv)
    while rest:
        item = rest.pop(0)
        if item == "--json":
            args["json"] = True
        elif item in ("--limit", "--data", "--wait"):
            if not rest:
                raise ValueError(f"{item} needs a value\n{usage}")
            value = rest.pop(0)
            if item == "--wait":
                try:
                    args["wait"] = float(value)
                except ValueError:
                    raise ValueError(f"--wait {value!r}: expected seconds\n{usage}") from None
                if not 0 <= args["wait"] < 86400:
                    raise ValueError(f"--wait {value!r}: expected seconds, 0 to a day\n{usage}")
            else:
                args["limits" if item == "--limit" else "data"].append(value)
        elif item.startswith("-") or args["inventory"]:
            raise ValueError(f"unexpected argument {item!r}\n{usage}")
        else:
            args["inventory"] = item
    if not args["inventory"]:
        raise ValueError(usage)
    return args


def inventory_path(inventory: str) -> str | None:
    """The inventory as pyinfra is given it from the repository root, or None when there is no such
    Python file (pyinfra would take the name for a host name)."""
    path = Path(inventory).resolve()
    if not path.is_file():
        path = (REPO / inventory).resolve()
    if path.suffix != ".py" or not path.is_file():
        return None
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def take_lock(lock: Lock, wait: float) -> str | None:
    """Take the redeploy's lock, waiting up to `wait` seconds; None once held, else why not."""
    try:
        if lock.acquire():
            return None
        print(f"waiting up to {wait:g} s: a redeploy is running (lock {lock.path} held by {lock.holder()})",
              file=sys.stderr, flush=True)
        if wait > 0 and lock.wait(wait):
            return None
    except OSError as error:
        return f"cannot take the redeploy's lock {lock.path}: {error}"
    return f"a redeploy is running (lock {lock.path} held by {lock.holder()}); waited {wait:g} s"


def check(inventory: str, limits: list[str] = (), data: list[str] = (), env: dict | None = None,
          deploy: str = DEPLOY, wait: float = LOCK_WAIT) -> tuple[int, dict[str, dict], float, str]:
    """Run the probe under the redeploy's lock; (exit code, host verdicts, seconds, pyinfra's log).
    `deploy`: another deploy file than deploy.py (the unit tests' small one)."""
    started = time.monotonic()
    path = inventory_path(inventory)
    if path is None:
        hosts = {"(inventory)": _unknown("(inventory)", f"{inventory}: no such inventory file (e.g. inventories/prod.py)")}
        return exit_code(hosts), hosts, time.monotonic() - started, ""
    env = {**os.environ, **(env or {})}
    lock = Lock(lock_path(env), "drift check")
    if busy := take_lock(lock, wait):
        hosts = {"(inventory)": _unknown("(inventory)", busy)}
        return exit_code(hosts), hosts, time.monotonic() - started, ""
    try:
        with tempfile.TemporaryDirectory(prefix="gitea-drift-") as directory:
            run = subprocess.run(pyinfra_argv(path, list(limits), list(data), deploy), cwd=REPO, capture_output=True,
                                 text=True, stdin=subprocess.DEVNULL,
                                 env={**env, REPORT_DIR_ENV: directory, "PYINFRA_PROGRESS": "off"})
            summary, reports = read_reports(Path(directory))
    finally:
        lock.release()
    hosts = verdicts(summary, reports, run.returncode, run.stderr)
    return exit_code(hosts), hosts, time.monotonic() - started, run.stderr


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(USAGE)
        return MATCH
    try:
        args = parse_args(argv)
    except ValueError as error:
        print(error, file=sys.stderr)
        return UNKNOWN
    code, hosts, seconds, log = check(args["inventory"], args["limits"], args["data"], wait=args["wait"])
    if args["json"]:
        print(json.dumps({"exit": code, "seconds": round(seconds, 2), "hosts": hosts}, indent=2))
    else:
        print(render(hosts, seconds))
    if code == UNKNOWN and log and os.environ.get("GITEA_DEPLOY_DRIFT_LOG") != "0":
        print("--- pyinfra's log (last lines) ---\n" + "\n".join(log.splitlines()[-30:]), file=sys.stderr)
    return code
