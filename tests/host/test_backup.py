"""tasks/backup.py: the job and its schedule, the restic password, the repositories, the boot
unit that ends an interrupted pause, and the outcome node_exporter exports: backups that run,
succeed and are recent. Run against production too: nothing here writes to the host."""

import re

from tasks.backup import (
    ENV_FILE,
    PAUSE_MARKER,
    RESUME_UNIT,
    local_repository,
    metrics_file,
    schedule_interval,
    schedule_metrics_file,
)
from tests.host.test_node_exporter import metrics


def expected_repositories(target) -> set[str]:
    return ({"local"} if local_repository(target.data) else set()) | \
        ({"s3"} if target.data.get("backup_s3_bucket") else set())


def series(text: str, name: str) -> dict[str, float]:
    """repository -> value of one per-repository metric family."""
    return {m[0]: float(m[1]) for m in re.findall(rf'^{name}\{{repository="(\w+)"\}} (\S+)$', text, re.M)}


def test_job_and_restore_are_installed(target):
    for program in ("gitea-backup", "gitea-restore"):
        program_file = target.host.file(f"/usr/local/sbin/{program}")
        assert program_file.is_file and program_file.user == "root" and program_file.mode == 0o755, program
    assert "usage: gitea-backup" in target.sudo("gitea-backup --help").stdout
    assert "usage: gitea-restore" in target.sudo("gitea-restore --help").stdout


def test_cron_runs_the_job_on_the_schedule(target):
    cron = target.host.file("/etc/cron.d/gitea-backup")
    assert cron.user == "root" and cron.mode == 0o644
    assert f"{target.data['backup_schedule']} root /usr/local/sbin/gitea-backup --quiet" in cron.content_string
    assert target.service("cron") == (True, True)


def test_restic_password_is_root_only(target):
    path = f"{target.data['data_root']}/secrets/restic_password"
    uid, octal, size = target.sudo(f"stat -c '%u %a %s' {path}").stdout.split()
    assert uid == "0" and octal == "600" and int(size) >= 32


def test_configuration_names_secret_files_never_secrets(target, secret_values):
    env = target.host.file(ENV_FILE).content_string
    assert f"GITEA_BACKUP_PASSWORD_FILE={target.data['data_root']}/secrets/restic_password" in env
    assert not [value for value in secret_values if value in env]
    if target.data.get("backup_aws_secret_access_key"):
        assert target.data["backup_aws_secret_access_key"] not in env
        assert target.sudo("stat -c '%u %a' /etc/gitea-deploy/aws-credentials").stdout.split() == ["0", "600"]


def test_gitea_is_not_left_paused(target):
    """The boot unit is enabled; no pause marker outlives its run (a live run's is fine)."""
    assert target.sudo(f"systemctl is-enabled {RESUME_UNIT}").stdout.strip() == "enabled"
    if target.sudo(f"test -e {PAUSE_MARKER}").rc == 0:
        holder = target.sudo("cat /run/lock/gitea-backup.lock 2>/dev/null || true").stdout.strip()
        assert holder, f"{PAUSE_MARKER} exists and no run holds the lock: Gitea was left stopped by a dead " \
                       "backup (sudo gitea-backup resume)"


def test_every_repository_is_initialised(target):
    status = dict(line.split(" ", 1) for line in target.sudo("gitea-backup status").stdout.splitlines() if " " in line)
    assert status == {name: "initialised" for name in expected_repositories(target)}


def test_every_repository_opens_with_the_password(target):
    """Opened for real: `gitea-backup status` may answer from its proof of an earlier open."""
    for name in expected_repositories(target):
        opened = target.sudo(f"gitea-backup restic {name} cat config")
        assert opened.rc == 0 and '"chunker_polynomial"' in opened.stdout, (name, opened.stderr[-500:])


def test_restic_password_is_kept_in_ssm_when_configured(target):
    state = target.sudo("gitea-backup password status").stdout.strip()
    assert state == ("same" if target.data.get("ssm_parameter_path") else "disabled")


def test_last_run_is_exported_per_repository(target):
    """Every repository has its series; before the first run they say so with 0 ("never"), which
    alerting treats as a missing backup, so there is nothing to skip."""
    text = metrics(target)
    runs = {m[0]: float(m[1]) for m in re.findall(
        r'^gitea_backup_last_run_timestamp_seconds\{repository="(\w+)"\} (\S+)$', text, re.M)}
    assert set(runs) == expected_repositories(target)
    for repository, last_run in runs.items():
        status = re.search(rf'^gitea_backup_last_exit_status\{{repository="{repository}"\}} (\S+)$', text, re.M)
        success = re.search(rf'^gitea_backup_last_success_timestamp_seconds\{{repository="{repository}"\}} (\S+)$',
                            text, re.M)
        assert status and success, repository
        if last_run == 0:
            print(f"{target.name}: no backup has run into {repository} yet (exported as 0 = never)")
            assert float(success.group(1)) == 0
        elif float(status.group(1)) == 0:
            assert float(success.group(1)) >= last_run, f"{repository}: a successful run must record its success"


def test_backups_are_recent_and_succeed(target):
    """Each repository's last run succeeded and its last success is at most about two schedule
    intervals old (one missed run is tolerated, two are not). A host where no run has happened yet
    passes only while it is new: the metrics file (written by the deploy, rewritten by every run)
    is younger than that allowance too."""
    schedule = target.data["backup_schedule"]
    interval = schedule_interval(schedule)
    allowed = 2 * interval + max(900, interval // 10)  # slack: a run takes minutes, cron starts late
    text = metrics(target)
    now = float(target.sudo("date +%s").stdout)
    written = float(target.sudo(f"stat -c %Y {metrics_file(target.data)}").stdout)
    runs = series(text, "gitea_backup_last_run_timestamp_seconds")
    status = series(text, "gitea_backup_last_exit_status")
    success = series(text, "gitea_backup_last_success_timestamp_seconds")
    limit = f"{allowed / 3600:.1f} h: twice the interval of backup_schedule {schedule!r}, plus slack"
    found = []
    for repository in sorted(expected_repositories(target)):
        if runs.get(repository, 0) == 0:
            if now - written > allowed:
                found.append(f"{repository}: no backup has ever run, and the host was deployed "
                             f"{(now - written) / 3600:.1f} h ago (allowed: {limit}); is cron running?")
            continue
        if status.get(repository) != 0:
            found.append(f"{repository}: the last run failed (gitea_backup_last_exit_status "
                         f"{status.get(repository)}; sudo journalctl -t gitea-backup)")
        if now - success.get(repository, 0) > allowed:
            found.append(f"{repository}: the last successful backup is {(now - success.get(repository, 0)) / 3600:.1f} h "
                         f"old (allowed: {limit})")
    assert not found, "; ".join(found)


def test_the_schedules_interval_is_exported_for_alerting(target):
    """BackupTooOld compares each repository's last success with twice this value: node_exporter
    must serve it, computed from this host's backup_schedule, from a root-owned file."""
    file = target.host.file(schedule_metrics_file(target.data))
    assert file.is_file and file.user == "root" and file.mode == 0o644
    served = re.findall(r"^gitea_deploy_backup_interval_seconds (\S+)$", metrics(target), re.M)
    assert served and float(served[0]) == schedule_interval(target.data["backup_schedule"]), served
