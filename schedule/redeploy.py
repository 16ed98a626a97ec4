"""The scheduled redeploy: the deploy, then the host checks, one run at a time, bounded in time.

What schedule/systemd/gitea-deploy-redeploy.service runs on an operator's control machine
(docs/runbooks/schedule.md), from the checkout, with the checkout's venv:

    .venv/bin/python schedule/redeploy.py run            # the steps below, under the lock
    .venv/bin/python schedule/redeploy.py steps          # print the commands `run` would run
    .venv/bin/python schedule/redeploy.py notify UNIT    # the failure hook (gitea-deploy-notify@.service)

The steps (STEPS) are the commands an operator runs by hand, and the very commands the Gitea
Actions workflow (.gitea/workflows/redeploy.yaml) runs; tests/unit/test_schedule.py holds the two
to each other. They run without a shell, with the checkout's .venv/bin first on PATH (the workflow
puts it there too), and the first that fails ends the run, as a workflow's failing step does.

Settings, from the environment (the service reads them from /etc/gitea-deploy/schedule.env;
schedule/schedule.env.example lists them): every value becomes one argv element or is parsed,
never pasted into a shell.

    GITEA_DEPLOY_INVENTORY       inventory file (default inventories/prod.py; the lab: inventories/lab.py)
    GITEA_DEPLOY_LIMIT           only this host of the inventory (--limit to both steps)
    GITEA_DEPLOY_TLS_CA          CA file the host checks verify the served chain against (--tls-ca)
    GITEA_DEPLOY_TIMEOUT         seconds the whole run may take (default 1500; the unit's own bound is 30 min)
    GITEA_DEPLOY_LOCK_FILE       the lock every run takes, and the drift report (schedule/lock.py;
                                 default .redeploy.lock in the checkout)
    GITEA_DEPLOY_NOTIFY_COMMAND  notify: a command line, split like a shell would (shlex) but run
                                 without one; gets the message on stdin and in GITEA_DEPLOY_NOTIFY_*
    GITEA_DEPLOY_NOTIFY_URL      notify: an http(s) URL that gets a JSON POST ({"text": ..., ...})

The inventory's own variables (GITEA_DEPLOY_SOURCE, GITEA_DEPLOY_OVERRIDES, ...; inventories/prod.py)
pass through to the steps unchanged.

Exit status of `run`: 0 every step passed; 1 a step failed; 2 bad settings; 75 another run or a
drift report holds the lock (nothing was run: not a failure, the unit lists it in SuccessExitStatus);
124 the run took longer than GITEA_DEPLOY_TIMEOUT (the step was killed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not __package__:  # run by path, as the units run it: the checkout is the import root
    sys.path.insert(0, str(REPO))

from schedule.lock import Lock, lock_path  # noqa: E402  (the drift report takes the same lock)

VENV_BIN = REPO / ".venv" / "bin"

DEFAULT_INVENTORY = "inventories/prod.py"
DEFAULT_TIMEOUT = 1500  # s: under the unit's TimeoutStartSec=30min, so the script reports a slow step itself

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run is doing the work
EXIT_TIMEOUT = 124  # as timeout(1)

KILL_GRACE = 10  # s between SIGTERM and SIGKILL for a step that overran
NOTIFY_TIMEOUT = 30  # s for each notification channel
JOURNAL_LINES = 40

# (name, argv) of each step with the default inventory: the commands of README's Production
# section, and the workflow's run steps. steps() adds --limit / --tls-ca when they are set.
STEPS = (
    ("redeploy", ("pyinfra", "-y", DEFAULT_INVENTORY, "deploy.py")),
    ("host checks", ("pytest", "tests/host", "--inventory", DEFAULT_INVENTORY)),
)

# A host name as inventories give them: also keeps a value from passing as an option.
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


class SettingsError(Exception):
    """A GITEA_DEPLOY_* value that cannot be used; the message names it."""


def say(message: str) -> None:
    print(f"gitea-deploy schedule: {message}", flush=True)


def steps(env: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """The commands `run` runs, in order, for these settings (default: os.environ)."""
    env = os.environ if env is None else env
    inventory = env.get("GITEA_DEPLOY_INVENTORY") or DEFAULT_INVENTORY
    if inventory.startswith("-") or not (REPO / inventory).is_file():
        raise SettingsError(f"GITEA_DEPLOY_INVENTORY={inventory!r}: no such inventory file in {REPO}")
    limit = env.get("GITEA_DEPLOY_LIMIT") or ""
    if limit and not _HOST_NAME.fullmatch(limit):
        raise SettingsError(f"GITEA_DEPLOY_LIMIT={limit!r}: expected one host name of the inventory")
    tls_ca = env.get("GITEA_DEPLOY_TLS_CA") or ""
    if tls_ca and (tls_ca.startswith("-") or not Path(tls_ca).is_file()):
        raise SettingsError(f"GITEA_DEPLOY_TLS_CA={tls_ca!r}: no such file")
    out = []
    for name, argv in STEPS:
        argv = [inventory if a == DEFAULT_INVENTORY else a for a in argv]
        if limit:
            argv += ["--limit", limit]
        if tls_ca and name == "host checks":
            argv += ["--tls-ca", tls_ca]
        out.append((name, argv))
    return out


def timeout_seconds(env: dict[str, str]) -> int:
    raw = env.get("GITEA_DEPLOY_TIMEOUT") or str(DEFAULT_TIMEOUT)
    if not re.fullmatch(r"[1-9][0-9]{0,5}", raw):
        raise SettingsError(f"GITEA_DEPLOY_TIMEOUT={raw!r}: expected whole seconds, 1-999999")
    return int(raw)


def step_environment(env: dict[str, str]) -> dict[str, str]:
    """The steps' environment: the caller's, with the checkout's venv first on PATH."""
    return {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}", "PYTHONUNBUFFERED": "1"}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the step's whole process group (pyinfra's ssh, pytest's workers), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_steps(plan: list[tuple[str, list[str]]], env: dict[str, str], timeout: float) -> int:
    """Run each step in the checkout until one fails or the deadline passes; the exit status."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    for number, (name, argv) in enumerate(plan, 1):
        say(f"[{number}/{len(plan)}] {name}: {shlex.join(argv)}")
        t = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, start_new_session=True)
        except OSError as error:
            say(f"FAILED: {name}: could not start {argv[0]}: {error}")
            return EXIT_FAILED
        try:
            code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _stop(proc)
            say(f"FAILED: {name} still running after the run's {timeout:.0f} s (GITEA_DEPLOY_TIMEOUT): stopped")
            return EXIT_TIMEOUT
        except BaseException:  # Ctrl-C or SIGTERM on a manual run: take the step down with us
            _stop(proc)
            raise
        if code != 0:
            say(f"FAILED: {name} exited {code} after {time.monotonic() - t:.0f} s")
            return EXIT_FAILED
        say(f"{name}: passed in {time.monotonic() - t:.0f} s")
    say(f"every step passed in {time.monotonic() - started:.0f} s")
    return 0


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    try:
        plan = steps(env)
        timeout = timeout_seconds(env)
    except SettingsError as error:
        say(f"refusing to run: {error}")
        return EXIT_USAGE
    lock = Lock(lock_path(env))
    if not lock.acquire():
        say(f"another run holds {lock.path} ({lock.holder()}): not running this one")
        return EXIT_LOCKED
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # systemd's stop: end the step too
    try:
        return run_steps(plan, step_environment(env), timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
        lock.release()


# ---- the failure hook -------------------------------------------------------------------------

def _systemd(*argv: str) -> str:
    """Output of a systemctl/journalctl query, or "" where there is no systemd to ask."""
    if not Path("/run/systemd/system").is_dir() or not shutil.which(argv[0]):
        return ""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return cp.stdout.strip() if cp.returncode == 0 else ""


def failure_report(unit: str, details: str = "", env: dict[str, str] | None = None) -> dict[str, str]:
    """What a notification says: which unit failed where, how, and the end of its log. systemd
    (251 and later) tells an OnFailure= unit the failed run's result and invocation in MONITOR_*;
    without them (a manual call) systemctl is asked, which needs D-Bus for a user other than root."""
    env = os.environ if env is None else env
    host = socket.gethostname()
    result = env.get("MONITOR_SERVICE_RESULT") or _systemd("systemctl", "show", "--property=Result", "--value", unit)
    invocation = (env.get("MONITOR_INVOCATION_ID")
                  or _systemd("systemctl", "show", "--property=InvocationID", "--value", unit))
    log = _systemd("journalctl", "--no-pager", "-o", "cat", "-n", str(JOURNAL_LINES),
                   f"_SYSTEMD_INVOCATION_ID={invocation}" if invocation else f"--unit={unit}")
    text = f"gitea-deploy: {unit} failed on {host}" + (f" (result: {result})" if result else "")
    if details:
        text += f"\n{details}"
    if log:
        text += f"\n\nlast {JOURNAL_LINES} log lines:\n{log}"
    return {"text": text, "unit": unit, "host": host, "result": result, "details": details, "log": log}


def notify_command(command: str, report: dict[str, str]) -> None:
    argv = shlex.split(command)
    if not argv:
        raise SettingsError("GITEA_DEPLOY_NOTIFY_COMMAND is empty")
    env = {**os.environ, "GITEA_DEPLOY_NOTIFY_UNIT": report["unit"], "GITEA_DEPLOY_NOTIFY_HOST": report["host"],
           "GITEA_DEPLOY_NOTIFY_RESULT": report["result"], "GITEA_DEPLOY_NOTIFY_TEXT": report["text"]}
    cp = subprocess.run(argv, input=report["text"], text=True, env=env, timeout=NOTIFY_TIMEOUT,
                        capture_output=True)
    if cp.returncode != 0:
        raise RuntimeError(f"notify command {argv[0]} exited {cp.returncode}: {cp.stderr.strip()[-500:]}")


def notify_url(url: str, report: dict[str, str]) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError("GITEA_DEPLOY_NOTIFY_URL: expected an http:// or https:// URL")
    request = urllib.request.Request(url, data=json.dumps(report).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT) as response:
        if not 200 <= response.status < 300:
            raise RuntimeError(f"webhook answered HTTP {response.status}")


def notify(unit: str, details: str = "", env: dict[str, str] | None = None) -> int:
    """Send the failure report to every configured channel; 0 only when each one took it. With no
    channel configured it fails, so the hook itself shows as failed (systemctl --failed)."""
    env = os.environ if env is None else env
    command, url = env.get("GITEA_DEPLOY_NOTIFY_COMMAND", ""), env.get("GITEA_DEPLOY_NOTIFY_URL", "")
    report = failure_report(unit, details, env)
    say(report["text"].splitlines()[0])
    if not command.strip() and not url.strip():
        say("no notification configured: set GITEA_DEPLOY_NOTIFY_COMMAND or GITEA_DEPLOY_NOTIFY_URL")
        return EXIT_FAILED
    failed = False
    for channel, send, value in (("command", notify_command, command), ("webhook", notify_url, url)):
        if not value.strip():
            continue
        try:
            send(value.strip(), report)
            say(f"notified through the {channel}")
        except (SettingsError, RuntimeError, OSError, ValueError, subprocess.TimeoutExpired,
                urllib.error.URLError) as error:  # the message never repeats the URL: it may hold a token
            say(f"notification through the {channel} failed: {type(error).__name__}: {_redacted(error, url)}")
            failed = True
    return EXIT_FAILED if failed else 0


def _redacted(error: Exception, url: str) -> str:
    text = str(error)
    return text.replace(url, "<GITEA_DEPLOY_NOTIFY_URL>") if url else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="schedule/redeploy.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the redeploy, then the host checks, under the lock")
    sub.add_parser("steps", help="print the commands `run` would run, one a line")
    n = sub.add_parser("notify", help="report a failed unit through the configured command and/or webhook")
    n.add_argument("unit", help="what failed (the systemd unit, or the workflow run)")
    n.add_argument("--details", default="", help="one more line for the message (e.g. the run's URL)")
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            return run()
        except KeyboardInterrupt:
            say("interrupted")
            return EXIT_FAILED
    if args.command == "steps":
        try:
            for _, argv_ in steps():
                print(shlex.join(argv_))
        except SettingsError as error:
            say(str(error))
            return EXIT_USAGE
        return 0
    return notify(args.unit, args.details)


if __name__ == "__main__":
    sys.exit(main())
