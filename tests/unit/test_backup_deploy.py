"""tasks/backup.py and its templates: the configuration the deploy writes is the one the job reads
(every key, nothing else), it holds no secret values, and the schedule, the boot unit and the
node_exporter unit say what the settings say."""

from __future__ import annotations

import configparser
import subprocess
import sys

import pytest

from tasks import backup as task
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
    """backup.env exactly as tasks/backup.py writes it for this inventory data."""
    return task.render_env(task.backup_env(sample_data(**data)))


class Reads(dict):
    """The values, recording every key the job looks at."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def items(self):
        self.read.update(k for k in self.keys() if k.startswith("AWS_"))  # passed on whole
        return super().items()


def test_s3_repository_url_production_and_emulated():
    assert s3_repository(sample_data(**PROD)) == "s3:https://s3.eu-central-1.amazonaws.com/acme-gitea-backups/prod/gitea"
    assert s3_repository(sample_data(**LAB)) == "s3:http://127.0.0.1:5050/test-backups/gitea"
    assert s3_repository(sample_data(backup_local_repository="/srv/gitea/backup/restic")) is None
    assert ssm_parameter(sample_data(**PROD)) == "/gitea-deploy/prod/restic_password"
    assert ssm_parameter(sample_data()) is None


def test_the_job_reads_what_the_deploy_writes_production():
    cfg = job.Config.from_env(job.parse_env(backup_env(PROD)))
    # Local first by default: the snapshot lands on the data volume inside the pause, S3 gets a copy after.
    assert [(r.name, r.url) for r in cfg.repositories] == [
        ("local", "/srv/gitea/backup/restic"),
        ("s3", "s3:https://s3.eu-central-1.amazonaws.com/acme-gitea-backups/prod/gitea")]
    assert cfg.ssm_parameter == "/gitea-deploy/prod/restic_password"
    assert cfg.snapshot_host == "git.example.com"
    assert cfg.keep == {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 12}
    assert cfg.read_data_subset == "5%" and cfg.read_data_days == 7 and cfg.stop_gitea
    # The instance role, not keys: no endpoint, no credentials file.
    assert cfg.aws_env == {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-central-1"}
    assert cfg.pause_marker == "/var/lib/gitea-backup/paused" and cfg.lock_file == "/run/lock/gitea-backup.lock"
    assert cfg.metrics_file == "/var/lib/prometheus/node-exporter/gitea_backup.prom"
    assert cfg.dump_file == "/srv/gitea/backup/dump/gitea.pgdump" and cfg.staging_dir == "/srv/gitea/backup"


@pytest.mark.parametrize("data", [PROD, LAB, {"backup_local_repository": None, **PROD}], ids=["prod", "lab", "s3-only"])
def test_every_key_the_job_reads_is_written_by_the_deploy_and_nothing_else(data):
    written = job.parse_env(backup_env(data))
    values = Reads(written)
    job.Config.from_env(values)
    assert values.read - set(written) == set(), "the job reads keys the deploy does not write"
    assert set(written) - values.read == set(), "the deploy writes keys the job never reads"
    assert {k for k in written if k.startswith("GITEA_BACKUP_")} == {f"GITEA_BACKUP_{k}" for k in job.ENV_KEYS}


@pytest.mark.parametrize("key", [k for k in job.parse_env(backup_env(PROD)) if k.startswith("GITEA_BACKUP_")])
def test_a_key_missing_from_what_the_deploy_wrote_is_an_error_naming_it(key):
    values = job.parse_env(backup_env(PROD))
    del values[key]
    with pytest.raises(ValueError, match=key):
        job.Config.from_env(values)


def test_backup_env_is_serialised_with_shell_quoting():
    rows = [("GITEA_BACKUP_A", "/srv/git data", ""), ("GITEA_BACKUP_B", "it's $HOME `x` \\ \"q\"", "note"),
            ("GITEA_BACKUP_C", "", ""), ("GITEA_BACKUP_D", "5%", "")]
    text = task.render_env(rows)
    assert job.parse_env(text) == {k: v for k, v, _ in rows}
    assert "GITEA_BACKUP_C=''" in text and "# note" in text
    with pytest.raises(ValueError, match="cannot be written"):
        task.render_env([("GITEA_BACKUP_E", "two\nlines", "")])
    # a data_root with a space survives the trip
    cfg = job.Config.from_env(job.parse_env(backup_env({**PROD, "data_root": "/srv/git data"})))
    assert cfg.data_root == "/srv/git data" and cfg.dump_file == "/srv/git data/backup/dump/gitea.pgdump"


def test_the_local_repository_follows_data_root_unless_absolute_or_none():
    assert task.local_repository(sample_data()) == "/srv/gitea/backup/restic"  # the default
    assert task.local_repository(sample_data(data_root="/data/gitea")) == "/data/gitea/backup/restic"
    assert task.local_repository(sample_data(backup_local_repository="/srv/gitea/restic")) == "/srv/gitea/restic"
    assert task.local_repository(sample_data(backup_local_repository=None)) is None


@pytest.mark.parametrize("schedule, seconds", [
    ("15 * * * *", 3600), ("@hourly", 3600), ("*/30 * * * *", 1800), ("0,30 * * * *", 1800),
    ("0 */6 * * *", 6 * 3600), ("0 3 * * *", 86400), ("@daily", 86400), ("0 3 * * 0", 7 * 86400),
    ("0 9-17 * * 1-5", (7 + 24 * 2 + 9) * 3600),  # Friday 17:00 to Monday 09:00
    ("0 3 1 * *", 31 * 86400),
    ("0 3 31 * *", 61 * 86400),  # only months with a 31st: May 31 to Jul 31
    ("0 3 1 1 *", 365 * 86400),  # yearly, measured over a whole year
    ("0 3 1 * 1", 7 * 86400),  # both day fields: the 1st or any Monday
])
def test_schedule_interval_is_the_longest_gap_between_runs(schedule, seconds):
    assert task.schedule_interval(schedule) == seconds


def test_the_interval_metric_is_the_schedules_longest_gap_in_prometheus_text():
    text = task.render_schedule_metrics("0 3 * * 0")
    lines = text.splitlines()
    assert lines[0].startswith("# HELP gitea_deploy_backup_interval_seconds ") and "'0 3 * * 0'" in lines[0]
    assert lines[1:] == ["# TYPE gitea_deploy_backup_interval_seconds gauge",
                         f"gitea_deploy_backup_interval_seconds {7 * 86400}"]
    assert text.endswith("\n") and task.render_schedule_metrics("0 3 * * 0") == text  # stable: zero changes


def test_the_metric_file_is_replaced_by_a_rename_never_rewritten_in_place(tmp_path):
    """What the collector can see at any moment: the old file or the new one (a dot-name .tmp
    is not *.prom, so it never reads the temporary one)."""
    live = tmp_path / "it's here" / task.SCHEDULE_METRICS_NAME
    live.parent.mkdir()
    live.write_text("old\n")
    inode = live.stat().st_ino
    text = task.render_schedule_metrics("15 * * * *")
    subprocess.run(["sh", "-c", task.replace_file_command(text, str(live))], check=True, timeout=10)
    assert live.read_text() == text and oct(live.stat().st_mode & 0o777) == "0o644"
    assert live.stat().st_ino != inode, "rewritten in place, not renamed over"
    assert sorted(p.name for p in live.parent.iterdir()) == [task.SCHEDULE_METRICS_NAME]


def test_the_job_reads_what_the_deploy_writes_lab_and_no_secret_is_in_it():
    text = backup_env(LAB)
    cfg = job.Config.from_env(job.parse_env(text))
    assert [r.name for r in cfg.repositories] == ["local", "s3"]
    assert cfg.aws_env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5050"
    assert cfg.aws_env["AWS_SHARED_CREDENTIALS_FILE"] == "/etc/gitea-deploy/aws-credentials"
    assert LAB["backup_aws_secret_access_key"] not in text and LAB["backup_aws_access_key_id"] not in text
    credentials = configparser.RawConfigParser()
    credentials.read_string(task.aws_credentials(LAB))
    assert dict(credentials["default"]) == {"aws_access_key_id": LAB["backup_aws_access_key_id"],
                                            "aws_secret_access_key": LAB["backup_aws_secret_access_key"]}


def test_aws_credentials_are_written_by_a_serializer_that_keeps_awkward_values_whole():
    awkward = {**LAB, "backup_aws_secret_access_key": "a=b;c#d [x] %(y)s"}
    credentials = configparser.RawConfigParser()
    credentials.read_string(task.aws_credentials(awkward))
    assert credentials["default"]["aws_secret_access_key"] == "a=b;c#d [x] %(y)s"
    with pytest.raises(ValueError, match="newline"):
        task.aws_credentials({**LAB, "backup_aws_secret_access_key": "x\n[evil]"})


def test_cron_runs_the_job_on_the_schedule_quietly():
    line = [row for row in render("backup/gitea-backup.j2", backup_schedule="*/30 * * * *").splitlines()
            if row and not row.startswith("#") and "=" not in row]
    assert line == ["*/30 * * * * root /usr/local/sbin/gitea-backup --quiet >/dev/null 2>&1; "
                    "/usr/local/sbin/gitea-backup --quiet resume >/dev/null 2>&1"]


def test_the_boot_unit_resumes_after_docker_and_is_enabled_at_boot():
    unit = (REPO / "files/backup" / task.RESUME_UNIT).read_text()
    assert "ExecStart=/usr/local/sbin/gitea-backup --quiet resume" in unit
    assert "After=docker.service" in unit and "Wants=docker.service" in unit
    assert "Type=oneshot" in unit and "WantedBy=multi-user.target" in unit


def test_node_exporter_listens_on_loopback_with_the_textfile_directory():
    unit = render("node_exporter/gitea-deploy.conf.j2", node_exporter_port=9101)
    exec_start = [row for row in unit.splitlines() if row.startswith("ExecStart=/")]
    assert len(exec_start) == 1 and "ExecStart=\n" in unit  # the packaged command is replaced, not added to
    assert "--web.listen-address=127.0.0.1:9101 " in exec_start[0]
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter " in exec_start[0]
