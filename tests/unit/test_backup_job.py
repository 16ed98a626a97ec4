"""The backup job's pure parts (files/backup/gitea_backup.py): configuration, retention arguments,
snapshot choice, metrics, the lock, and the crash safety of the pause (marker, signals) with a
fake Compose. What needs restic, Docker or S3 is in tests/lab/test_backup.py."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

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
GITEA_BACKUP_READ_DATA_SUBSET=5%
GITEA_BACKUP_READ_DATA_DAYS=7
GITEA_BACKUP_DB_USER=gitea
GITEA_BACKUP_DB_NAME=gitea
GITEA_BACKUP_DB_ENDPOINT=
GITEA_BACKUP_DB_IMAGE=
GITEA_BACKUP_DB_CA_FILE=
GITEA_BACKUP_DB_PASSWORD_FILE=
GITEA_BACKUP_DUMP_FILE=/srv/gitea/backup/dump/gitea.pgdump
GITEA_BACKUP_STAGING_DIR=/srv/gitea/backup
GITEA_BACKUP_STATE_FILE=/var/lib/gitea-backup/state.json
GITEA_BACKUP_METRICS_FILE=/var/lib/prometheus/node-exporter/gitea_backup.prom
GITEA_BACKUP_CACHE_DIR=/var/cache/gitea-backup
GITEA_BACKUP_LOCK_FILE=/run/lock/gitea-backup.lock
GITEA_BACKUP_PAUSE_MARKER=/var/lib/gitea-backup/paused
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
    with pytest.raises(job.JobError, match="no s3 repository"):
        config(S3_REPOSITORY="").repository("s3")


@pytest.mark.parametrize("key", job.ENV_KEYS)
def test_every_key_is_required_none_has_a_default_in_the_job(key):
    values = job.parse_env(ENV)
    assert f"GITEA_BACKUP_{key}" in values, "ENV above must hold every key the job requires"
    del values[f"GITEA_BACKUP_{key}"]
    with pytest.raises(ValueError, match=f"GITEA_BACKUP_{key} not set"):
        job.Config.from_env(values)


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
    cfg = config(METRICS_FILE=str(tmp_path / "textfile" / "gitea_backup.prom"), STATE_FILE=str(state_file))
    job.save_state(cfg, {"pause_seconds": 1.0})
    assert job.load_state(cfg) == {"pause_seconds": 1.0}
    assert (tmp_path / "textfile" / "gitea_backup.prom").read_text().startswith("# HELP")
    assert [p.name for p in (tmp_path / "textfile").iterdir()] == ["gitea_backup.prom"]  # no temp file left
    state_file.write_text("{not json")
    assert job.load_state(cfg) == {}


def test_a_second_run_refuses_while_the_first_holds_the_lock(tmp_path):
    lock = str(tmp_path / "gitea-backup.lock")
    with job.job_lock(lock, "first"):
        with pytest.raises(job.LockedError, match="first, pid"):
            with job.job_lock(lock, "second"):
                pass
    with job.job_lock(lock, "third"):  # released: the next run goes ahead
        pass


# --- the pause: marker, signals, resume (a fake Compose records what the job asks of it) ------------

class FakeStack(job.Stack):
    """Gitea's Compose service without Docker: records calls and the marker seen at each."""

    def __init__(self, cfg, fail_start=False, on_start=None):
        super().__init__(cfg)
        self.calls: list[tuple[str, bool]] = []
        self.running = True
        self.fail_start, self.on_start = fail_start, on_start

    def marker(self) -> bool:
        return os.path.exists(self.cfg.pause_marker)

    def gitea_running(self) -> bool:
        return self.running

    def checked(self, *args, **kw):
        self.calls.append((args[0], self.marker()))
        if args[0] == "start":
            if self.on_start:
                self.on_start()
            if self.fail_start:
                raise job.JobError("docker compose start gitea failed: engine not ready")
            self.running = True
        elif args[0] == "stop":
            self.running = False

    def wait_healthy(self, timeout=0):
        self.calls.append(("healthy", self.marker()))
        return 0.0


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "START_RETRY_SECONDS", 0)
    monkeypatch.setattr(job.time, "sleep", lambda s: None)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield config(PAUSE_MARKER=str(tmp_path / "state" / "paused"), STATE_FILE=str(tmp_path / "state" / "state.json"),
                 METRICS_FILE=str(tmp_path / "textfile" / "gitea_backup.prom"), LOCK_FILE=str(tmp_path / "lock"))
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_the_marker_is_on_disk_before_the_stop_and_gone_only_once_gitea_is_healthy(cfg):
    stack, result = FakeStack(cfg), {}
    with stack.paused(result):
        assert stack.marker() and not stack.running
    assert stack.calls == [("stop", True), ("start", True), ("healthy", True)]
    assert not stack.marker() and result["pause_seconds"] >= 0


def test_a_failed_step_in_the_pause_starts_gitea_and_clears_the_marker(cfg):
    stack = FakeStack(cfg)
    with pytest.raises(job.JobError, match="pg_dump"):
        with stack.paused({}):
            raise job.JobError("pg_dump failed")
    assert stack.running and not stack.marker()


def test_gitea_that_does_not_come_back_keeps_the_marker_for_the_next_try(cfg):
    stack = FakeStack(cfg, fail_start=True)
    with pytest.raises(job.JobError, match="engine not ready"):
        with stack.paused({}):
            pass
    assert stack.marker()  # the boot unit, cron's resume or the next run tries again


def test_sigterm_during_the_pause_starts_gitea_before_the_job_exits(cfg):
    job.handle_signals()
    stack = FakeStack(cfg)
    with pytest.raises(job.Terminated, match="SIGTERM"):
        with stack.paused({}):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler raises at the next bytecode
                pass
            raise AssertionError("SIGTERM did not interrupt the pause")
    assert stack.running and not stack.marker()
    assert [c for c, _ in stack.calls] == ["stop", "start", "healthy"]


def test_a_signal_while_gitea_is_being_started_waits_until_it_is_healthy(cfg):
    job.handle_signals()
    stack = FakeStack(cfg, on_start=lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(job.Terminated, match="SIGINT"):
        with stack.paused({}):
            pass
    assert [c for c, _ in stack.calls] == ["stop", "start", "healthy"] and not stack.marker()


def test_not_paused_when_disabled_or_when_gitea_was_not_running(cfg):
    stack = FakeStack(cfg)
    with stack.paused({}, enabled=False):
        assert stack.running and not stack.marker()
    stack.running = False  # stopped by an operator, not by us: left as it is
    with stack.paused({}):
        pass
    assert stack.calls == [] and not stack.running and not stack.marker()


def test_resume_starts_gitea_only_when_a_dead_run_left_the_marker(cfg, monkeypatch):
    stack = FakeStack(cfg)
    monkeypatch.setattr(job, "Stack", lambda c: stack)
    assert job.resume(cfg) == 0 and stack.calls == []  # no marker: nothing to do
    job.write_marker(cfg)  # a run was SIGKILLed during its pause
    stack.running = False
    assert job.resume(cfg) == 0
    assert stack.running and not stack.marker() and [c for c, _ in stack.calls] == ["start", "healthy"]
    assert job.load_state(cfg)["last_resume"] > 0
    assert "gitea_backup_last_resume_timestamp_seconds " in Path(cfg.metrics_file).read_text()


def test_resume_leaves_a_live_run_alone(cfg, monkeypatch):
    stack = FakeStack(cfg)
    monkeypatch.setattr(job, "Stack", lambda c: stack)
    job.write_marker(cfg)
    with job.job_lock(cfg.lock_file, "gitea-backup run"):  # the run that is pausing Gitea right now
        assert job.resume(cfg) == 0
    assert stack.calls == [] and stack.marker()


def test_the_next_run_first_starts_gitea_left_stopped_by_a_dead_run(cfg):
    stack = FakeStack(cfg)
    stack.running = False
    job.write_marker(cfg)
    state = {}
    assert job.resume_interrupted(cfg, stack, state) is True
    assert stack.running and not stack.marker() and state["last_resume"] > 0
    assert job.resume_interrupted(cfg, stack, state) is False


def test_the_pause_never_waits_on_s3_while_a_local_repository_exists():
    both = {"local": None, "s3": None}
    assert job.first_repository(both, {"local": True, "s3": True}) == ("local", True)
    assert job.first_repository(both, {"local": True, "s3": False}) == ("local", True)
    # the local repository is broken this run: S3 takes the snapshot, Gitea is not paused for it
    assert job.first_repository(both, {"local": False, "s3": True}) == ("s3", False)
    assert job.first_repository(both, {"local": False, "s3": False}) == (None, False)
    # S3 alone (backup_local_repository None): the documented trade-off, the pause includes it
    assert job.first_repository({"s3": None}, {"s3": True}) == ("s3", True)


def test_pgpass_line_escapes_what_libpq_would_split_on():
    assert job.pgpass_line("db.example.com", "5432", "gitea", r"a:b\c") == "db.example.com:5432:*:gitea:a\\:b\\\\c\n"


def test_the_external_database_is_reached_from_the_image_over_verified_tls(tmp_path, monkeypatch):
    """RDS mode: pg_dump runs from the PostgreSQL image on the host's network, verify-full against
    the CA, the password only in a pgpass file (never in argv or the environment)."""
    password = tmp_path / "db_password"
    password.write_text("s3cret:pw\n")
    cfg = config(DB_ENDPOINT="db.example.com:5432", DB_IMAGE="postgres:17", DB_CA_FILE="/srv/gitea/database-ca.pem",
                 DB_PASSWORD_FILE=str(password))
    seen = {}

    def fake_run(argv, **kw):
        pgpass = next(a.split(":", 1)[0] for a in argv if a.endswith(":/run/gitea-backup/pgpass:ro"))
        seen.update(argv=argv, pgpass=Path(pgpass).read_text(), mode=Path(pgpass).stat().st_mode & 0o777)
        return job.subprocess.CompletedProcess(argv, 0, "1\n", "")

    monkeypatch.setattr(job, "run", fake_run)
    assert job.Stack(cfg).psql("SELECT 1") == "1"
    argv = seen["argv"]
    assert argv[:6] == ["docker", "run", "--rm", "-i", "--network", "host"]
    assert "PGSSLMODE=verify-full" in argv and "PGHOST=db.example.com" in argv
    assert "/srv/gitea/database-ca.pem:/run/gitea-backup/ca.pem:ro" in argv
    assert argv[argv.index("--entrypoint") + 1:][:2] == ["psql", "postgres:17"]
    assert not [a for a in argv if "s3cret" in a]
    assert seen["pgpass"] == "db.example.com:5432:*:gitea:s3cret\\:pw\n" and seen["mode"] == 0o600


def test_status_asks_the_repositories_at_once(monkeypatch, tmp_path):
    """Every deploy asks `gitea-backup status`; opening a restic repository is its key derivation
    (~0.5 s), so both are asked at once. The barrier passes only if the two checks overlap."""
    import threading

    monkeypatch.setattr(job, "opened_before", lambda *args: False)  # every call opens (next test)

    barrier = threading.Barrier(2, timeout=10)
    answers = {"local": True, "s3": False}

    def initialised(self):
        barrier.wait()
        return answers[self.repo.name]

    monkeypatch.setattr(job.Restic, "initialised", initialised)
    monkeypatch.setattr(job, "s3_reachable", lambda repo: None)
    cfg = config(STATE_FILE=str(tmp_path / "state.json"))
    assert job.status(cfg) == {"local": "initialised", "s3": "missing"}
    monkeypatch.setattr(job, "s3_reachable", lambda repo: "S3 is unreachable (test)")
    barrier.reset()
    monkeypatch.setattr(job.Restic, "initialised", lambda self: True)
    assert job.status(cfg) == {"local": "initialised", "s3": "error: S3 is unreachable (test)"}


def test_status_opens_a_repository_again_only_when_its_proof_no_longer_holds(monkeypatch, tmp_path):
    """A no-op deploy must not pay restic's key derivation per repository each time: a repository
    this host opened with this password counts as initialised until the password or the local
    repository changes, or (S3, which cannot be looked at without opening it) OPENED_FOR passes."""
    password, local = tmp_path / "restic_password", tmp_path / "restic"
    password.write_text("one")
    local.mkdir()
    (local / "config").write_text("repository one")
    cfg = config(STATE_FILE=str(tmp_path / "state" / "state.json"), PASSWORD_FILE=str(password),
                 LOCAL_REPOSITORY=str(local))
    opened, clock = [], [1_000_000.0]
    monkeypatch.setattr(job.Restic, "initialised", lambda self: opened.append(self.repo.name) or True)
    monkeypatch.setattr(job, "s3_reachable", lambda repo: None)
    monkeypatch.setattr(job.time, "time", lambda: clock[0])

    def asked() -> list[str]:
        opened.clear()
        assert job.status(cfg) == {"local": "initialised", "s3": "initialised"}
        return sorted(opened)

    assert asked() == ["local", "s3"]
    assert oct(os.stat(job.opened_file(cfg)).st_mode & 0o777) == "0o600"
    assert asked() == []  # proven: neither is opened again
    (local / "config").write_text("repository two")  # replaced by hand
    assert asked() == ["local"]
    password.write_text("two")  # a new password must open both again
    assert asked() == ["local", "s3"]
    clock[0] += job.OPENED_FOR - 1
    assert asked() == []
    clock[0] += 2  # an S3 proof expires; a local one is checked against the files themselves
    assert asked() == ["s3"]
    monkeypatch.setattr(job.Restic, "initialised", lambda self: False)
    (local / "config").unlink()
    assert job.status(cfg)["local"] == "missing"  # a missing repository is never "proven"


def test_a_repository_init_made_is_proven_for_the_next_status(monkeypatch, tmp_path):
    """The first deploy initialises both repositories; the second (a no-op) must not open them."""
    password, local = tmp_path / "restic_password", tmp_path / "restic"
    password.write_text("one")
    cfg = config(STATE_FILE=str(tmp_path / "state" / "state.json"), PASSWORD_FILE=str(password),
                 LOCAL_REPOSITORY=str(local))
    opened, ran = [], []
    monkeypatch.setattr(job.Restic, "initialised", lambda self: opened.append(self.repo.name) or False)
    monkeypatch.setattr(job, "s3_reachable", lambda repo: None)

    def restic(self, *args, **kwargs):
        ran.append((self.repo.name, args[0]))
        if self.repo.name == "local":
            local.mkdir()
            (local / "config").write_text("made by init")

    monkeypatch.setattr(job.Restic, "__call__", restic)
    assert job.init(cfg) == ["local", "s3"]
    assert ran == [("local", "init"), ("s3", "init")]
    opened.clear()
    assert job.status(cfg) == {"local": "initialised", "s3": "initialised"}
    assert opened == []
