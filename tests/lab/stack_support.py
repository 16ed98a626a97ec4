"""What the lab tests of a stack's data moving (image updates, the PostgreSQL major upgrade) share:
commands on the host, a seed of users and a repository with history, what the seed left as the
database and the repository hold it, users' view of the pause (healthz through nginx), and holding
the scheduled backup off while a module needs Gitea answering throughout."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import threading
import time

from lab import api
from lab.converge import root_ca_file
from tasks.backup import LOCK_FILE
from tests.lab.test_deploy import healthz

COMPOSE = "docker compose -f /srv/gitea/compose.yaml"
PASSWORD = "update-drill-1234"

SEED = f"""
    {COMPOSE} exec -T gitea gitea admin user create --username dev1 --email dev1@lab.test \\
        --password {PASSWORD} --must-change-password=false
    {COMPOSE} exec -T gitea gitea admin user change-password --username gitadmin --password {PASSWORD} \\
        --must-change-password=false
    curl -fsS -o /dev/null -u gitadmin:{PASSWORD} -H 'Content-Type: application/json' \\
        -d '{{"name": "kept"}}' http://127.0.0.1:3000/api/v1/user/repos
    {COMPOSE} exec -T gitea sh -ec '
        cd /var/lib/gitea/git/repositories/gitadmin/kept.git
        export GIT_AUTHOR_NAME=u GIT_AUTHOR_EMAIL=u@lab.test GIT_COMMITTER_NAME=u GIT_COMMITTER_EMAIL=u@lab.test
        tree=$(printf "100644 blob %s\\\\tREADME\\\\n" "$(echo kept | git hash-object -w --stdin)" | git mktree)
        git update-ref refs/heads/main "$(git commit-tree "$tree" -m seed)"'
"""


def sh(name: str, script: str, *, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    cp = api.exec(name, ["bash", "-c", "set -euo pipefail\n" + script], timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"exit {cp.returncode}\n--- stdout\n{cp.stdout[-3000:]}\n--- stderr\n{cp.stderr[-3000:]}")
    return cp


def running(name: str) -> dict[str, str]:
    """service -> image of the stack's running containers."""
    out = sh(name, "docker ps --filter label=com.docker.compose.project=gitea "
                   "--format '{{.Label \"com.docker.compose.service\"}} {{.Image}}'").stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def seed(name: str) -> str:
    """A second user, the admin's password, a repository with a commit; returns seeded()."""
    sh(name, SEED)
    before = seeded(name)
    assert "dev1" in before and "gitadmin|kept" in before, before
    return before


def seeded(name: str) -> str:
    """What the seed left, as the database and the repository hold it."""
    return sh(name, f"""{COMPOSE} exec -T db psql -U gitea -d gitea -tA -c 'SELECT lower_name FROM "user" ORDER BY id' \
                    -c 'SELECT owner_name, lower_name FROM repository ORDER BY id'
                  {COMPOSE} exec -T gitea git -C /var/lib/gitea/git/repositories/gitadmin/kept.git rev-parse main""").stdout


# The command that holds the backup job's lock in backups_held: unique, so pgrep finds ours alone.
_HOLD = "sleep 86399"


@contextlib.contextmanager
def backups_held(name: str):
    """No scheduled backup while the block runs. Cron's backup (minute 15 of every hour) stops Gitea
    for seconds by design, and a module living an hour on the shared host meets it: its attacks
    then got nginx's 502 (CI, stop 23). Holding the job's lock makes a run that falls inside refuse
    at once (EX_TEMPFAIL, nothing recorded), as it would beside a restore. A run already going is
    waited out, and Gitea healthy again, before the block starts."""
    sh(name, f"""setsid -f flock -w 900 {LOCK_FILE} {_HOLD} </dev/null >/dev/null 2>&1
        for i in $(seq 900); do pgrep -xf '{_HOLD}' >/dev/null && break; sleep 1; done
        pgrep -xf '{_HOLD}' >/dev/null
        until [ "$(docker inspect -f '{{{{.State.Health.Status}}}}' gitea-gitea-1)" = healthy ]; do sleep 1; done""",
       timeout=1000)
    try:
        yield
    finally:
        sh(name, f"pkill -xf '{_HOLD}'")


def ok(result: dict) -> None:
    assert result["returncode"] == 0 and not result["totals"].get("error"), result["log"][-5000:]


class Poller:
    """healthz through nginx from outside, as users see it, every 0.2 s: the longest time it did
    not pass."""

    def __init__(self, name: str):
        self.ip = api.state()["hosts"][name]["ip"]
        self.ca = str(root_ca_file(name))
        self.stop = threading.Event()
        self.longest = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        down = None
        while not self.stop.is_set():
            try:
                passing = healthz(self.ip, self.ca) == "pass"
            except (OSError, ValueError, ssl.SSLError):
                passing = False
            now = time.monotonic()
            if passing and down is not None:
                self.longest, down = max(self.longest, now - down), None
            elif not passing and down is None:
                down = now
            time.sleep(0.2)
        if down is not None:
            self.longest = max(self.longest, time.monotonic() - down)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
