"""tasks/backup.py: the job and its schedule, the restic password, the repositories, the outcome
node_exporter exports. Run against production too: nothing here writes to the host."""

import re

from tests.host.test_node_exporter import metrics


def expected_repositories(target) -> set[str]:
    return ({"local"} if target.data.get("backup_local_repository") else set()) | \
        ({"s3"} if target.data.get("backup_s3_bucket") else set())


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
    env = target.host.file("/etc/gitea-deploy/backup.env").content_string
    assert f"GITEA_BACKUP_PASSWORD_FILE={target.data['data_root']}/secrets/restic_password" in env
    assert not [value for value in secret_values if value in env]
    if target.data.get("backup_aws_secret_access_key"):
        assert target.data["backup_aws_secret_access_key"] not in env
        assert target.sudo("stat -c '%u %a' /etc/gitea-deploy/aws-credentials").stdout.split() == ["0", "600"]


def test_every_repository_is_initialised(target):
    status = dict(line.split(" ", 1) for line in target.sudo("gitea-backup status").stdout.splitlines() if " " in line)
    assert status == {name: "initialised" for name in expected_repositories(target)}


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
