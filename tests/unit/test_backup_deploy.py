"""tasks/backup.py and its templates: the configuration the deploy writes is the one the job reads,
it holds no secret values, and the schedule and node_exporter unit say what the settings say."""

from __future__ import annotations

import sys

from tasks.backup import s3_repository, ssm_parameter
from tasks.common import REPO
from tests.unit.render import render, sample_data

sys.path.insert(0, str(REPO / "files" / "backup"))

import gitea_backup as job  # noqa: E402

# Emulated AWS, as the lab has it (values of this test's own).
LAB = {"aws_region": "us-west-2", "s3_endpoint": "http://127.0.0.1:5050", "backup_s3_bucket": "test-backups",
       "backup_aws_access_key_id": "test-key", "backup_aws_secret_access_key": "test-not-secret",
       "ssm_parameter_path": "/test", "backup_local_repository": "/srv/gitea/backup/restic"}
PROD = {"aws_region": "eu-central-1", "backup_s3_bucket": "acme-gitea-backups", "backup_s3_prefix": "prod/gitea",
        "ssm_parameter_path": "/gitea-deploy/prod"}


def backup_env(data: dict) -> str:
    merged = sample_data(**data)
    return render("backup/backup.env.j2", **data, compose_file="/srv/gitea/compose.yaml",
                  password_file="/srv/gitea/secrets/restic_password", s3_repository=s3_repository(merged),
                  ssm_parameter=ssm_parameter(merged),
                  credentials_file="/etc/gitea-deploy/aws-credentials" if data.get("backup_aws_access_key_id") else None)


def test_s3_repository_url_production_and_emulated():
    assert s3_repository(sample_data(**PROD)) == "s3:https://s3.eu-central-1.amazonaws.com/acme-gitea-backups/prod/gitea"
    assert s3_repository(sample_data(**LAB)) == "s3:http://127.0.0.1:5050/test-backups/gitea"
    assert s3_repository(sample_data(backup_local_repository="/srv/gitea/backup/restic")) is None
    assert ssm_parameter(sample_data(**PROD)) == "/gitea-deploy/prod/restic_password"
    assert ssm_parameter(sample_data()) is None


def test_the_job_reads_what_the_deploy_writes_production():
    cfg = job.Config.from_env(job.parse_env(backup_env(PROD)))
    assert [(r.name, r.url) for r in cfg.repositories] == [
        ("s3", "s3:https://s3.eu-central-1.amazonaws.com/acme-gitea-backups/prod/gitea")]
    assert cfg.ssm_parameter == "/gitea-deploy/prod/restic_password"
    assert cfg.snapshot_host == "git.example.com"
    assert cfg.keep == {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 12}
    assert cfg.read_data_subset == "5%" and cfg.read_data_days == 7 and cfg.stop_gitea
    # The instance role, not keys: no endpoint, no credentials file.
    assert cfg.aws_env == {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-central-1"}


def test_the_job_reads_what_the_deploy_writes_lab_and_no_secret_is_in_it():
    text = backup_env(LAB)
    cfg = job.Config.from_env(job.parse_env(text))
    assert [r.name for r in cfg.repositories] == ["local", "s3"]
    assert cfg.aws_env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5050"
    assert cfg.aws_env["AWS_SHARED_CREDENTIALS_FILE"] == "/etc/gitea-deploy/aws-credentials"
    assert LAB["backup_aws_secret_access_key"] not in text and LAB["backup_aws_access_key_id"] not in text
    credentials = render("backup/aws-credentials.j2", **LAB)
    assert "aws_secret_access_key = test-not-secret" in credentials


def test_cron_runs_the_job_on_the_schedule_quietly():
    line = [l for l in render("backup/gitea-backup.j2", backup_schedule="*/30 * * * *").splitlines()
            if l and not l.startswith("#") and "=" not in l]
    assert line == ["*/30 * * * * root /usr/local/sbin/gitea-backup --quiet >/dev/null 2>&1"]


def test_node_exporter_listens_on_loopback_with_the_textfile_directory():
    unit = render("node_exporter/gitea-deploy.conf.j2", node_exporter_port=9101)
    exec_start = [l for l in unit.splitlines() if l.startswith("ExecStart=/")]
    assert len(exec_start) == 1 and "ExecStart=\n" in unit  # the packaged command is replaced, not added to
    assert "--web.listen-address=127.0.0.1:9101 " in exec_start[0]
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter " in exec_start[0]
