"""Backups proven by restoring them (issue 4), end to end on lab hosts that share one emulated AWS.

Host A is deployed and seeded through the Gitea stand-in's API and CLI (users, repositories with
real git history, attachments, LFS objects in the data volume); its backups go to S3 (moto) and to
the local repository. The fault tests run on A: a second run refuses, S3 unreachable keeps the
local copy (and the host checks then fail, as they must for a host whose backups fail), a job
killed (SIGKILL, SIGTERM, SIGKILL then a reboot) while Gitea is paused never leaves Gitea down,
retention keeps what the policy says, a corrupted repository fails its check. Then the
drill: A's last backup, A destroyed, a fresh host B deployed (it takes the restic password from SSM,
as a replacement EC2 instance does), `pyinfra restore.py` on B, and B must serve healthz with
byte-identical data, the same database rows and A's credentials. Steps share the hosts and run in
file order; the figures are printed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from lab import api
from lab.converge import INVENTORY, REPO, deploy, host_checks, root_ca_file
from tests.lab.test_deploy import wait_healthy

pytestmark = pytest.mark.lab

A, B = "gitea-lab-bk-a", "gitea-lab-bk-b"
AWS = "bk"  # the shared emulated AWS: container gitea-lab-aws-bk
COMPOSE = "docker compose -f /srv/gitea/compose.yaml"
METRICS = "/var/lib/prometheus/node-exporter/gitea_backup.prom"
MARKER = "/var/lib/gitea-backup/paused"
SCRATCH = "/tmp/retention-drill"  # a scratch configuration and repository for retention and corruption
FIGURES: dict[str, float] = {}
# Cron never runs this schedule (30 February), so every backup on A and B is one a test starts and
# none lands between a test's steps (CI: an hourly run added a snapshot, and pruned one, inside the
# S3 test's assertions; it would resume Gitea under the kill tests too). The scheduled path itself
# is proven on the shared host (tests/host/test_backup.py) and in test_schedule.py.
UNSCHEDULED = ("--data", "backup_schedule=0 0 30 2 *")
SEEN: dict[str, object] = {}  # what A held, to compare B with


@pytest.fixture(scope="module")
def shared_aws(lab_engine):
    api.down([A, B])  # stale hosts of an interrupted run
    api.aws_down(AWS)
    yield AWS
    api.down([A, B])
    api.aws_down(AWS)


@pytest.fixture(scope="module")
def host_a(shared_aws):
    started = time.monotonic()
    api.up([A], aws=AWS)
    result = deploy(A, *UNSCHEDULED)
    assert result["returncode"] == 0, result["log"][-5000:]
    FIGURES["host A: up + first deploy (s)"] = time.monotonic() - started
    return A


def sh(name: str, script: str, *, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """A bash script as root inside a host."""
    cp = api.exec(name, ["bash", "-c", "set -euo pipefail\n" + script], timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"{name}: exit {cp.returncode}\n--- stdout\n{cp.stdout[-3000:]}\n"
                             f"--- stderr\n{cp.stderr[-3000:]}")
    return cp


def metrics(name: str, path: str = METRICS) -> dict[str, float]:
    text = sh(name, f"cat {path}").stdout
    return {m[0]: float(m[1]) for m in re.findall(r"^(\S+) (\S+)$", text, re.M) if not m[0].startswith("#")}


def snapshots(name: str, repository: str, env: str = "") -> list[dict]:
    return json.loads(sh(name, f"{env} gitea-backup restic {repository} snapshots --json").stdout)


def database_rows(name: str) -> str:
    return sh(name, f"""{COMPOSE} exec -T db psql -U gitea -d gitea -tA -c \
        'SELECT id, lower_name, email, is_admin, must_change_password, passwd FROM "user" ORDER BY id' -c \
        'SELECT id, owner_name, lower_name, description, is_private FROM repository ORDER BY id'""").stdout


def data_tree(name: str) -> str:
    """Every file's checksum, owner and mode under Gitea's data directory."""
    return sh(name, "cd /srv/gitea/gitea/data && find . -type f -printf '%m %U:%G %p\\n' | sort && "
                    "find . -type f -print0 | sort -z | xargs -0 sha256sum").stdout


def test_seed_host_a_through_gitea(host_a):
    """What a team leaves in Gitea: users, repositories with history, attachments, LFS objects."""
    password = "drill-" + str(time.time_ns())[-12:]
    SEEN["password"] = password
    sh(A, f"""
        {COMPOSE} exec -T gitea gitea admin user change-password --username gitadmin --password {password} \
            --must-change-password=false
        {COMPOSE} exec -T gitea gitea admin user create --username dev1 --email dev1@lab.test \
            --password {password} --must-change-password=false
        for repo in alpha beta; do
            curl -fsS -o /dev/null -u gitadmin:{password} -H 'Content-Type: application/json' \
                -d "{{\\"name\\": \\"$repo\\", \\"description\\": \\"restore drill $repo\\"}}" \
                http://127.0.0.1:3000/api/v1/user/repos
        done
        # History written straight into the bare repositories (the stand-in does not serve git).
        {COMPOSE} exec -T gitea sh -ec '
            cd /var/lib/gitea/git/repositories/gitadmin/alpha.git
            export GIT_AUTHOR_NAME=drill GIT_AUTHOR_EMAIL=drill@lab.test GIT_COMMITTER_NAME=drill GIT_COMMITTER_EMAIL=drill@lab.test
            parent=""
            for n in 1 2 3; do
                blob=$(head -c 200000 /dev/urandom | base64 | git hash-object -w --stdin)
                tree=$(printf "100644 blob %s\\tfile-%s.txt\\n" "$blob" "$n" | git mktree)
                parent=$(git commit-tree "$tree" ${{parent:+-p $parent}} -m "commit $n")
            done
            git update-ref refs/heads/main "$parent"
            mkdir -p /var/lib/gitea/data/attachments/a/b /var/lib/gitea/git/lfs/ab/cd
            head -c 3000000 /dev/urandom > /var/lib/gitea/data/attachments/a/b/0a1b2c3d-attachment
            head -c 1000000 /dev/urandom > /var/lib/gitea/git/lfs/ab/cd/abcd0123456789-lfs-object
        '
    """)
    SEEN["head"] = sh(A, f"{COMPOSE} exec -T gitea git -C /var/lib/gitea/git/repositories/gitadmin/alpha.git "
                         "rev-parse main").stdout.strip()
    assert "beta" in database_rows(A)


def test_first_backup_lands_in_both_repositories(host_a):
    before = time.time()
    cp = sh(A, "gitea-backup")
    seen = metrics(A)
    for repository in ("local", "s3"):
        assert seen[f'gitea_backup_last_exit_status{{repository="{repository}"}}'] == 0
        assert seen[f'gitea_backup_last_success_timestamp_seconds{{repository="{repository}"}}'] >= before
        assert seen[f'gitea_backup_snapshots{{repository="{repository}"}}'] >= 1
    FIGURES["Gitea pause during a backup (s)"] = seen["gitea_backup_gitea_pause_seconds"]
    assert 0 < seen["gitea_backup_gitea_pause_seconds"] < 60, cp.stderr
    # node_exporter serves it, and the journal has the run
    scraped = sh(A, "curl -fsS http://127.0.0.1:9100/metrics").stdout
    assert 'gitea_backup_last_exit_status{repository="s3"} 0' in scraped
    assert "backup done" in sh(A, "journalctl -t gitea-backup --no-pager -n 20").stdout


def test_a_second_concurrent_run_refuses(host_a):
    out = sh(A, """
        gitea-backup >/tmp/first.log 2>&1 & first=$!
        for i in $(seq 300); do grep -q "pid $first" /run/lock/gitea-backup.lock 2>/dev/null && break; sleep 0.1; done
        set +e
        gitea-backup; echo "second=$?"
        wait $first; echo "first=$?"
    """).stdout + ""
    assert "second=75" in out and "first=0" in out, out


def test_s3_unreachable_keeps_the_local_copy_and_says_so(host_a):
    before = {s["id"] for s in snapshots(A, "s3")}
    local_before = metrics(A)['gitea_backup_last_success_timestamp_seconds{repository="local"}']
    subprocess.run(["docker", "pause", f"gitea-lab-aws-{AWS}"], check=True, capture_output=True)
    try:
        started = time.monotonic()
        cp = sh(A, "gitea-backup", check=False, timeout=300)
        seconds = time.monotonic() - started
    finally:
        subprocess.run(["docker", "unpause", f"gitea-lab-aws-{AWS}"], check=True, capture_output=True)
    assert cp.returncode == 1, cp.stderr
    assert "S3 is unreachable" in cp.stderr and seconds < 120
    # The host checks see a host whose backups fail (and name the repository).
    failing = host_checks(A, "-k", "test_backups_are_recent_and_succeed")
    assert failing.returncode != 0 and "s3: the last run failed" in failing.stdout, failing.stdout[-3000:]
    seen = metrics(A)
    assert seen['gitea_backup_last_exit_status{repository="s3"}'] == 1
    assert seen['gitea_backup_last_exit_status{repository="local"}'] == 0
    assert seen['gitea_backup_last_success_timestamp_seconds{repository="local"}'] > local_before
    assert "S3 is unreachable" in sh(A, "journalctl -t gitea-backup --no-pager -n 30").stdout
    # S3 back: what it held is intact, and the next run catches up with the snapshot it missed.
    assert {s["id"] for s in snapshots(A, "s3")} == before
    sh(A, "gitea-backup restic s3 check")
    sh(A, "gitea-backup")
    assert metrics(A)['gitea_backup_last_exit_status{repository="s3"}'] == 0
    passing = host_checks(A, "-k", "test_backups_are_recent_and_succeed or test_gitea_is_not_left_paused")
    assert passing.returncode == 0, passing.stdout[-3000:]


def assert_converged(name: str) -> None:
    """A redeploy of the unchanged inventory changes nothing (names what it changed if it did)."""
    result = deploy(name, *UNSCHEDULED)
    assert result["returncode"] == 0, result["log"][-4000:]
    assert result["totals"]["success"] == 0, [op["name"] for op in result.get("operations", []) if op.get("success")]


def test_redeploy_after_backups_changes_nothing(host_a):
    """Backups write state, metrics, dumps and caches; none of it is drift for the deploy."""
    assert_converged(A)


# --- a job that dies while Gitea is paused ---------------------------------------------------------

# Starts a backup and waits (bounded) until it has Gitea stopped: the marker is there and the
# container is not running. Then freezes the job (SIGSTOP: it cannot start Gitea any more), checks
# Gitea is still down (else the pause ended first: "race", the caller tries again) and sends the
# job SIGNAL (and, for KILL, SIGKILL to every process it started too).
IN_THE_PAUSE = r"""
cid=$(docker compose -f /srv/gitea/compose.yaml ps -q gitea)
descendants() { local c; for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done; }
running() { docker inspect -f '{{.State.Running}}' "$cid"; }
gitea-backup >/tmp/paused-run.log 2>&1 </dev/null & job=$!
for i in $(seq 1200); do
    [ -e MARKER ] && [ "$(running)" = false ] && break
    kill -0 $job 2>/dev/null || { echo "ended before its pause"; cat /tmp/paused-run.log; exit 1; }
    sleep 0.05
done
kill -STOP $job
if [ ! -e MARKER ] || [ "$(running)" != false ]; then kill -CONT $job; wait $job || true; echo race; exit 0; fi
if curl -fsS -m 2 http://127.0.0.1:3000/api/healthz >/dev/null 2>&1; then echo "healthz answers"; exit 1; fi
echo "down at the kill: marker $(cat MARKER)"
if [ SIGNAL = KILL ]; then
    set +e; kill -KILL $job $(descendants $job); wait $job; echo "job=$?"
else
    set +e; kill -SIGNAL $job; kill -CONT $job; wait $job; echo "job=$?"
fi
"""


def kill_in_the_pause(signal: str) -> str:
    script = IN_THE_PAUSE.replace("MARKER", MARKER).replace("SIGNAL", signal)
    for _ in range(3):
        out = sh(A, script, timeout=300).stdout
        if "race" not in out.split():
            assert "down at the kill" in out, out
            return out
    raise AssertionError(f"the pause ended before the job could be stopped, three times: {out}")


UP = ["running", "pass", "no-marker"]
LEFT_DOWN = ["stopped", "fail", "marker"]  # what a dead job leaves behind


def gitea_state(name: str) -> list[str]:
    """[running|stopped, healthz pass|fail, marker|no-marker]"""
    return sh(name, f"""
        [ "$({COMPOSE} ps --status running --services | grep -cx gitea)" = 1 ] && echo running || echo stopped
        curl -fsS -m 5 http://127.0.0.1:3000/api/healthz | grep -q '"pass"' && echo pass || echo fail
        [ -e {MARKER} ] && echo marker || echo no-marker
    """).stdout.split()


def test_sigterm_during_the_pause_starts_gitea_before_the_job_exits(host_a):
    out = kill_in_the_pause("TERM")
    assert "job=143" in out, out  # 128 + SIGTERM, after starting Gitea
    assert gitea_state(A) == UP
    log = sh(A, "cat /tmp/paused-run.log").stdout
    assert "interrupted by SIGTERM" in log, log
    seen = metrics(A)
    assert seen['gitea_backup_last_exit_status{repository="local"}'] == 1  # the interrupted run says so


def test_sigkill_during_the_pause_next_run_starts_gitea_and_succeeds(host_a):
    out = kill_in_the_pause("KILL")
    assert "job=137" in out, out
    assert gitea_state(A) == LEFT_DOWN
    t = time.monotonic()
    cp = sh(A, "gitea-backup")
    assert "interrupted while Gitea was paused" in cp.stderr, cp.stderr
    assert gitea_state(A) == UP
    seen = metrics(A)
    assert seen['gitea_backup_last_exit_status{repository="local"}'] == 0
    assert seen['gitea_backup_last_exit_status{repository="s3"}'] == 0
    assert seen["gitea_backup_last_resume_timestamp_seconds"] > 0
    FIGURES["run after a SIGKILLed one: resume + backup (s)"] = time.monotonic() - t


def test_sigkill_during_the_pause_then_reboot_gitea_comes_back_on_its_own(host_a):
    kill_in_the_pause("KILL")
    assert gitea_state(A) == LEFT_DOWN
    t = time.monotonic()
    api.reboot(A)
    state = None
    for _ in range(60):  # bounded: 3 minutes after the host answers again
        state = gitea_state(A)
        if state == UP:
            break
        time.sleep(3)
    FIGURES["reboot with Gitea left paused, to healthy (s)"] = time.monotonic() - t
    assert state == UP, f"{state}\n" + \
        sh(A, "journalctl -b -u gitea-backup-resume --no-pager; journalctl -b -t gitea-backup --no-pager -n 30",
           check=False).stdout
    assert "starting Gitea again" in sh(A, "journalctl -b -t gitea-backup --no-pager").stdout
    sh(A, "gitea-backup")
    seen = metrics(A)
    assert seen['gitea_backup_last_exit_status{repository="local"}'] == 0
    assert seen['gitea_backup_last_exit_status{repository="s3"}'] == 0


def scratch_env() -> str:
    """backup.env with a scratch local repository, no S3, its own state and a small policy."""
    return f"""
        mkdir -p {SCRATCH}/metrics
        sed -e 's|^GITEA_BACKUP_LOCAL_REPOSITORY=.*|GITEA_BACKUP_LOCAL_REPOSITORY=/srv/gitea/backup/retention-drill|' \
            -e 's|^GITEA_BACKUP_S3_REPOSITORY=.*|GITEA_BACKUP_S3_REPOSITORY=|' \
            -e 's|^GITEA_BACKUP_KEEP_HOURLY=.*|GITEA_BACKUP_KEEP_HOURLY=2|' \
            -e 's|^GITEA_BACKUP_KEEP_DAILY=.*|GITEA_BACKUP_KEEP_DAILY=2|' \
            -e 's|^GITEA_BACKUP_KEEP_WEEKLY=.*|GITEA_BACKUP_KEEP_WEEKLY=0|' \
            -e 's|^GITEA_BACKUP_KEEP_MONTHLY=.*|GITEA_BACKUP_KEEP_MONTHLY=0|' \
            -e 's|^GITEA_BACKUP_STOP_GITEA=.*|GITEA_BACKUP_STOP_GITEA=false|' \
            -e 's|^GITEA_BACKUP_METRICS_FILE=.*|GITEA_BACKUP_METRICS_FILE={SCRATCH}/metrics/gitea_backup.prom|' \
            -e 's|^GITEA_BACKUP_STATE_FILE=.*|GITEA_BACKUP_STATE_FILE={SCRATCH}/state.json|' \
            /etc/gitea-deploy/backup.env > {SCRATCH}/backup.env
        export GITEA_BACKUP_CONFIG={SCRATCH}/backup.env
    """


def test_retention_keeps_exactly_what_the_policy_says(host_a):
    """Five backups over three days with keep-hourly 2, keep-daily 2: the newest two hours and the
    newest of the two newest days stay; day 1 (too old) and day 2's earlier one go."""
    times = ["2026-01-01 10:00:00", "2026-01-02 09:00:00", "2026-01-02 10:00:00", "2026-01-03 09:00:00",
             "2026-01-03 10:00:00"]
    runs = "\n".join(f'gitea-backup --time "{t}"' for t in times)
    sh(A, scratch_env() + "gitea-backup init\n" + runs, timeout=900)
    kept = sorted(s["time"][:19] for s in snapshots(A, "local", f"GITEA_BACKUP_CONFIG={SCRATCH}/backup.env"))
    assert kept == ["2026-01-02T10:00:00", "2026-01-03T09:00:00", "2026-01-03T10:00:00"]
    sh(A, f"GITEA_BACKUP_CONFIG={SCRATCH}/backup.env gitea-backup restic local check")


def test_a_corrupted_repository_is_reported_by_check(host_a):
    out = sh(A, scratch_env() + """
        pack=$(find /srv/gitea/backup/retention-drill/data -type f -printf '%s %p\\n' | sort -n | tail -1 | cut -d' ' -f2)
        printf 'flipped by the drill' | dd of="$pack" bs=1 seek=100 conv=notrunc status=none
        set +e
        gitea-backup check --read-data-subset 100%; echo "rc=$?"
    """).stdout
    assert "rc=1" in out
    assert metrics(A, f"{SCRATCH}/metrics/gitea_backup.prom")['gitea_backup_check_last_status{repository="local"}'] == 1
    assert "found problems" in sh(A, "journalctl -t gitea-backup --no-pager -n 20").stdout
    sh(A, f"rm -rf {SCRATCH} /srv/gitea/backup/retention-drill")


def test_drill_host_loss_then_restore_onto_a_fresh_host(host_a, capsys):
    # The last backup before the loss, and what A holds at that moment.
    sh(A, "gitea-backup")
    SEEN["tree"], SEEN["rows"] = data_tree(A), database_rows(A)
    SEEN["restic_password"] = sh(A, "sha256sum < /srv/gitea/secrets/restic_password").stdout
    SEEN["secret_key"] = sh(A, "sha256sum < /srv/gitea/secrets/secret_key").stdout
    latest = max(snapshots(A, "s3"), key=lambda s: s["time"])
    api.down([A])  # the instance is gone, with its data volume and its local repository

    started = time.monotonic()
    api.up([B], aws=AWS)
    FIGURES["host B: up (s)"] = time.monotonic() - started
    t = time.monotonic()
    result = deploy(B, *UNSCHEDULED)
    assert result["returncode"] == 0, result["log"][-5000:]
    FIGURES["host B: first deploy (s)"] = time.monotonic() - t
    # B found its predecessor's restic password in SSM instead of making a new one.
    assert sh(B, "sha256sum < /srv/gitea/secrets/restic_password").stdout == SEEN["restic_password"]
    assert sh(B, "sha256sum < /srv/gitea/secrets/secret_key").stdout != SEEN["secret_key"]

    t = time.monotonic()
    restore = subprocess.run(
        [".venv/bin/python", "-m", "pyinfra", "-y", INVENTORY, "restore.py", "--limit", B],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr[-3000:]
    host_b = api.state()["hosts"][B]
    wait_healthy(host_b["ip"], str(root_ca_file(B)), seconds=120)  # through nginx and TLS, as users see it
    FIGURES["restore on B via pyinfra, to healthy (s)"] = time.monotonic() - t
    FIGURES["recovery: B up + deploy + restore (s)"] = time.monotonic() - started

    assert latest["id"][:8] in sh(B, "journalctl -t gitea-restore --no-pager -n 30").stdout
    assert data_tree(B) == SEEN["tree"]
    assert database_rows(B) == SEEN["rows"]
    assert sh(B, "sha256sum < /srv/gitea/secrets/secret_key").stdout == SEEN["secret_key"]
    password = SEEN["password"]
    checks = sh(B, f"""
        curl -fsS -o /dev/null -w '%{{http_code}}\\n' -u gitadmin:{password} http://127.0.0.1:3000/api/v1/repos/gitadmin/alpha
        curl -fsS -H "Authorization: Bearer $(cat /srv/gitea/secrets/metrics_token)" http://127.0.0.1:3000/metrics \
            | grep '^gitea_repositories'
        {COMPOSE} exec -T gitea git -C /var/lib/gitea/git/repositories/gitadmin/alpha.git rev-parse main
        {COMPOSE} exec -T gitea git -C /var/lib/gitea/git/repositories/gitadmin/alpha.git fsck --strict --no-progress
    """).stdout.split()
    assert checks[:3] == ["200", "gitea_repositories", "2"] and checks[3] == SEEN["head"], checks
    assert metrics(B)["gitea_restore_last_exit_status"] == 0
    with capsys.disabled():
        print("\n  restore drill: " + ", ".join(f"{k} {v:.1f}" for k, v in FIGURES.items()))


def test_restored_host_stays_converged_and_refuses_a_second_restore(host_a):
    assert_converged(B)
    refused = sh(B, "gitea-restore", check=False)
    assert refused.returncode == 1 and "already holds data" in refused.stderr
