"""The drift report on a converged lab host (issue 10): it matches; a managed file changed, the
Gitea container stopped, a package's setting altered by hand and a kernel setting changed at run
time are each named, exit 1, and left as they were; a redeploy fixes all four and the report
matches again; an unreachable host, or data the deploy refuses, is 2.

Runs on the session's shared converged host (tests/lab/conftest.py) and redeploys it at the end,
whatever happened, so the modules after this one find it as they expect.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from lab import api
from lab.converge import INVENTORY, REPO, deploy
from tasks import drift
from tasks.backup import LOCK_FILE, PAUSE_MARKER

pytestmark = pytest.mark.lab

VHOST = "/etc/nginx/conf.d/gitea-http.conf"
AUTO_UPGRADES = "/etc/apt/apt.conf.d/20auto-upgrades"  # unattended-upgrades' setting, the deploy's file
SYSCTL_KEY = "net.ipv4.conf.all.send_redirects"  # tasks/hardening.py: 0 (per network namespace)


def run_drift(name: str, *extra: str) -> tuple[int, dict, float]:
    """The command as an operator runs it (JSON for the assertions; the text is printed)."""
    done = subprocess.run([sys.executable, "-m", "tasks.drift", INVENTORY, "--limit", name, "--json", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    out = json.loads(done.stdout)
    print(drift.render(out["hosts"], out["seconds"]))
    print(done.stderr[-3000:], file=sys.stderr)
    assert out["exit"] == done.returncode
    return done.returncode, out["hosts"], out["seconds"]


def changed(hosts: dict, name: str) -> dict[str, dict]:
    return {c["name"]: c for c in hosts[name]["changes"]}


def one(changes: dict[str, dict], fragment: str) -> dict:
    found = [c for n, c in changes.items() if fragment in n]
    assert found, f"no change named like {fragment!r}: {sorted(changes)}"
    return found[0]


def sh(name: str, script: str) -> str:
    return api.exec(name, script, check=True).stdout


def test_drift_named_then_fixed(converged_host):
    name = converged_host["name"]
    code, hosts, seconds = run_drift(name)
    assert code == 0, hosts
    assert hosts[name]["status"] == "match" and hosts[name]["operations"] > 50
    print(f"drift check of a matching host: {seconds:.1f} s")

    try:
        sh(name, f"sed -i 's/return 301/return 302/' {VHOST} && grep -q 'return 302' {VHOST}; "
                 "docker stop gitea-gitea-1 >/dev/null; "
                 f"sed -i 's/Unattended-Upgrade \"1\"/Unattended-Upgrade \"0\"/' {AUTO_UPGRADES} && "
                 f"grep -q 'Unattended-Upgrade \"0\"' {AUTO_UPGRADES}; "
                 f"sysctl -q -w {SYSCTL_KEY}=1")
        before = sh(name, f"sha256sum {VHOST} {AUTO_UPGRADES}; docker ps -aq --filter status=exited; sysctl -n {SYSCTL_KEY}")

        code, hosts, _ = run_drift(name)
        assert code == 1, hosts
        changes = changed(hosts, name)
        vhost = one(changes, "Install nginx gitea-http.conf")
        assert any(VHOST in line for line in vhost["because"]), vhost
        assert any(line.startswith("-") and "return 302" in line for line in vhost["diff"]), vhost["diff"]
        assert any(line.startswith("+") and "return 301" in line for line in vhost["diff"]), vhost["diff"]
        stack = one(changes, "Start the stack")
        assert any("StaleServices" in line and "gitea" in line for line in stack["because"]), stack
        updates = one(changes, "Daily security updates")
        assert '-APT::Periodic::Unattended-Upgrade "0";' in updates["diff"], updates["diff"]
        assert '+APT::Periodic::Unattended-Upgrade "1";' in updates["diff"], updates["diff"]
        one(changes, "Apply the kernel settings")  # a running value differs from the drop-in
        # ... and it changed nothing.
        assert sh(name, f"sha256sum {VHOST} {AUTO_UPGRADES}; docker ps -aq --filter status=exited; sysctl -n {SYSCTL_KEY}") == before
    finally:
        result = deploy(name)
    assert result["returncode"] == 0, result["log"][-4000:]
    fixed = {op["name"] for op in result["operations"] if op["success"]}
    for fragment in ("Install nginx gitea-http.conf", "Start the stack", "Daily security updates",
                     "Apply the kernel settings"):
        assert any(fragment in op for op in fixed), (fragment, fixed)
    assert sh(name, f"sysctl -n {SYSCTL_KEY}").strip() == "0"

    code, hosts, _ = run_drift(name)
    assert code == 0, hosts


def pause_like_a_backup(name: str, seconds: int) -> None:
    """What gitea-backup does while it copies, for `seconds`: its job lock held by a live process,
    the pause marker on disk, Gitea stopped; then Gitea started, the marker removed once Gitea is
    healthy, the lock released."""
    marker, lock = PAUSE_MARKER, LOCK_FILE
    resume = (f"sleep {seconds}; docker start gitea-gitea-1; "
              "until [ \"$(docker inspect -f '{{.State.Health.Status}}' gitea-gitea-1)\" = healthy ]; do sleep 1; done; "
              f"rm -f {marker}")
    sh(name, f"mkdir -p $(dirname {marker}) && touch {marker} && docker stop gitea-gitea-1 >/dev/null && "
             f"setsid -f flock {lock} sh -c {shlex.quote(resume)} </dev/null >/dev/null 2>&1; "
             f"sleep 1; ! flock -n {lock} true")  # the holder has the lock before the test goes on


def test_a_backup_pause_is_waited_out_not_fought(converged_host):
    """A scheduled redeploy or drift check that meets a backup with Gitea stopped waits until the
    backup has started it again (tasks/gitea.py after_backup_pause), instead of starting Gitea
    under the backup's feet or reporting drift."""
    name = converged_host["name"]
    pause_like_a_backup(name, 15)
    result = deploy(name)
    assert result["returncode"] == 0, result["log"][-4000:]
    assert result["totals"]["success"] == 0, [op["name"] for op in result["operations"] if op["success"]]

    pause_like_a_backup(name, 15)
    code, hosts, seconds = run_drift(name)
    assert code == 0, hosts
    assert seconds >= 10, seconds  # it waited for the pause (started 1 s before, 15 s long)
    assert sh(name, f"docker inspect -f '{{{{.State.Running}}}}' gitea-gitea-1; test ! -e {PAUSE_MARKER} && echo gone")\
        .split() == ["true", "gone"]


def test_unreachable_host_or_bad_data_could_not_be_told(converged_host):
    name = converged_host["name"]
    code, hosts, _ = run_drift(name, "--data", "ssh_port=1")  # nothing listens there: refused
    assert code == 2, hosts
    assert all(h["status"] == "unknown" for h in hosts.values())
    assert any("Could not connect" in (h["error"] or "") for h in hosts.values()), hosts

    code, hosts, _ = run_drift(name, "--data", "gitea_domain=not a domain")  # deploy.py's validation
    assert code == 2, hosts
    assert any("gitea_domain" in (h["error"] or "") for h in hosts.values()), hosts
