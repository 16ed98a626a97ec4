"""The backup job's pure parts (files/backup/gitea_backup.py): configuration, retention arguments,
snapshot choice, metrics, the lock. What needs restic, Docker or S3 is in tests/lab/test_backup.py."""

from __future__ import annotations

import re
import sys

import pytest

from tasks.common import REPO

sys.path.insert(0, str(REPO / "files" / "backup"))

import gitea_backup as job  # noqa: E402

ENV = """\
# comment
GITEA_BACKUP_DATA_ROOT=/srv/gitea
GITEA_BACKUP_COMPOSE_FILE=/srv/gitea/compose.yaml
GITEA_BACKUP_HTTP_PORT=3000
GITEA_BACKUP_HOST=git.example.com
GITEA_BACKUP_ADMIN_USER=gitadmin
GITEA_BACKUP_PASSWORD_FILE=/srv/gitea/secrets/restic_password
GITEA_BACKUP_LOCAL_REPOSITORY=/srv/gitea/backup/restic
GITEA_BACKUP_S3_REPOSITORY=s3:https://s3.eu-central-1.amazonaws.com/bucket/gitea
GITEA_BACKUP_SSM_PARAMETER=
GITEA_BACKUP_KEEP_HOURLY=24
GITEA_BACKUP_KEEP_DAILY=7
GITEA_BACKUP_KEEP_WEEKLY=0
GITEA_BACKUP_KEEP_MONTHLY=12
GITEA_BACKUP_STOP_GITEA=true
GITEA_BACKUP_TEXTFILE_DIR=/var/lib/prometheus/node-exporter
AWS_REGION="eu-central-1"
"""


def config(**overrides) -> job.Config:
    values = job.parse_env(ENV)
    values.update({f"GITEA_BACKUP_{k}": v for k, v in overrides.items()})
    return job.Config.from_env(values)


def test_config_reads_the_env_file():
    cfg = config()
    assert [r.name for r in cfg.repositories] == ["local", "s3"]  # local first: it takes the snapshot
    assert cfg.repository("s3").remote and not cfg.repository("local").remote
    assert cfg.ssm_parameter is None
    assert cfg.keep == {"hourly": 24, "daily": 7, "weekly": 0, "monthly": 12}
    assert cfg.stop_gitea is True and cfg.http_port == 3000
    assert cfg.aws_env == {"AWS_REGION": "eu-central-1"}
    assert cfg.dump_file in cfg.backup_paths
    assert {"/srv/gitea/gitea/data", "/srv/gitea/gitea/config", "/srv/gitea/secrets"} <= set(cfg.backup_paths)
    assert "/srv/gitea/postgres" not in cfg.backup_paths  # a running cluster's files are not a backup


def test_config_without_a_repository_or_a_key_says_which():
    with pytest.raises(ValueError, match="no repository"):
        config(LOCAL_REPOSITORY="", S3_REPOSITORY="")
    values = job.parse_env(ENV)
    del values["GITEA_BACKUP_DATA_ROOT"]
    with pytest.raises(ValueError, match="GITEA_BACKUP_DATA_ROOT"):
        job.Config.from_env(values)
    with pytest.raises(job.JobError, match="no s3 repository"):
        config(S3_REPOSITORY="").repository("s3")


def test_parse_env_rejects_what_is_not_key_value():
    assert job.parse_env("A='x y'  # note\nB=\n") == {"A": "x y", "B": ""}
    with pytest.raises(ValueError, match="line 1"):
        job.parse_env("not a line")


def test_s3_probe_url_is_the_bucket():
    assert job.s3_probe_url("s3:https://s3.eu-central-1.amazonaws.com/bucket/gitea/x") == \
        "https://s3.eu-central-1.amazonaws.com/bucket"
    assert job.s3_probe_url("s3:http://127.0.0.1:5050/lab-bucket/gitea") == "http://127.0.0.1:5050/lab-bucket"


def test_forget_keeps_one_lineage_per_tag_and_only_the_periods_set():
    args = job.forget_args({"hourly": 24, "daily": 7, "weekly": 0, "monthly": 12}, "git.example.com")
    assert args == ["forget", "--host", "git.example.com", "--group-by", "host,tags",
                    "--keep-hourly", "24", "--keep-daily", "7", "--keep-monthly", "12"]


def test_removed_count_reads_restic_forget_json():
    output = '[{"tags":["scheduled"],"keep":[{}],"remove":[{},{}]},{"tags":["pre-update"],"keep":[{}],"remove":null}]'
    assert job.removed_count(output) == 2
    assert job.removed_count("") == 0


SNAPSHOTS = [
    {"id": "aaaa1111" + "0" * 56, "short_id": "aaaa1111", "time": "2026-01-01T10:00:00Z"},
    {"id": "bbbb2222" + "0" * 56, "short_id": "bbbb2222", "time": "2026-01-01T12:00:00Z",
     "original": "cccc3333" + "0" * 56},
    {"id": "dddd4444" + "0" * 56, "short_id": "dddd4444", "time": "2026-01-01T11:00:00Z"},
]


def test_pick_snapshot_latest_by_id_or_by_the_id_it_was_copied_from():
    assert job.pick_snapshot(SNAPSHOTS, "latest")["short_id"] == "bbbb2222"
    assert job.pick_snapshot(SNAPSHOTS, "dddd")["short_id"] == "dddd4444"
    # An ID seen in the local repository finds its copy in S3.
    assert job.pick_snapshot(SNAPSHOTS, "cccc3333")["short_id"] == "bbbb2222"
    assert job.pick_snapshot(SNAPSHOTS, "eeee") is None
    assert job.pick_snapshot([], "latest") is None


def test_read_data_check_is_due_after_the_interval_or_when_never_done():
    state = {"checks": {"s3": {"read_data_last_success": 1000.0}}}
    assert job.read_data_due(state, "s3", 7, 1000.0 + 7 * 86400)
    assert not job.read_data_due(state, "s3", 7, 1000.0 + 6 * 86400)
    assert job.read_data_due(state, "local", 7, 1767261600.0)


def test_metrics_give_every_repository_every_series_and_say_never_as_zero():
    state = {"repositories": {"local": {"last_success": 1767261600.25, "exit_status": 0,
                                        "size_bytes": 1234567890123, "snapshots": 3}},
             "pause_seconds": 4.5}
    text = job.render_metrics(state, ["local", "s3"])
    assert 'gitea_backup_last_success_timestamp_seconds{repository="local"} 1767261600.250' in text
    assert 'gitea_backup_last_success_timestamp_seconds{repository="s3"} 0' in text
    assert 'gitea_backup_last_size_bytes{repository="local"} 1234567890123' in text  # no 1.23e+12
    assert "gitea_backup_gitea_pause_seconds 4.500" in text
    assert "gitea_restore_last_exit_status 0" in text
    sample = re.compile(r'^[a-z_]+(\{repository="(local|s3)"\})? -?[0-9.]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert len(names) == text.count("# TYPE")  # each family once


def test_save_state_replaces_both_files_atomically(tmp_path, monkeypatch):
    state_file = tmp_path / "state" / "state.json"
    cfg = config(TEXTFILE_DIR=str(tmp_path / "textfile"), STATE_FILE=str(state_file))
    job.save_state(cfg, {"pause_seconds": 1.0})
    assert job.load_state(cfg) == {"pause_seconds": 1.0}
    assert (tmp_path / "textfile" / job.METRICS_NAME).read_text().startswith("# HELP")
    assert [p.name for p in (tmp_path / "textfile").iterdir()] == [job.METRICS_NAME]  # no temp file left
    state_file.write_text("{not json")
    assert job.load_state(cfg) == {}


def test_a_second_run_refuses_while_the_first_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "LOCK_FILE", str(tmp_path / "gitea-backup.lock"))
    with job.job_lock("first"):
        with pytest.raises(job.LockedError, match="first, pid"):
            with job.job_lock("second"):
                pass
    with job.job_lock("third"):  # released: the next run goes ahead
        pass
