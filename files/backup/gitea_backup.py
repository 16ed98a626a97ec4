"""Gitea's backup job and what it shares with the restore: configuration, restic, lock, metrics.

Installed by tasks/backup.py as /usr/local/lib/gitea-deploy/gitea_backup.py; the programs
/usr/local/sbin/gitea-backup and gitea-restore are thin entry points. Runs as root with python3's
standard library, plus boto3 (Debian python3-boto3) for SSM only. docs/concepts/backup.md says why
it works this way; the pure functions at the top are unit-tested (tests/unit/test_backup_job.py).

A run: take the lock; start Gitea again if an earlier run died while it was paused (the pause
marker); stop Gitea (configurable); dump PostgreSQL (pg_dump -Fc, from the db container) and
snapshot the dump, Gitea's data and configuration and the secrets into the first repository (the
local one when configured, else S3); start Gitea and measure the pause; copy the new snapshots to
S3; apply retention (forget, prune, check) only where this run's backup landed; a read-data check
every few days; write the outcome for node_exporter's textfile collector.

Configuration: backup.env, written by the deploy, is the whole contract. Every path the job uses
comes from it and a missing key is an error: there is no second set of defaults here. Only the
place of backup.env itself is built in (CONFIG_FILE, or GITEA_BACKUP_CONFIG for a drill).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE = "/etc/gitea-deploy/backup.env"

EXIT_FAILED = 1
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later

# Bounds on every external step (seconds). Data-moving steps get hours: an interrupted upload is
# resumed by the next run (restic keeps what it uploaded). A dead S3 is found by the probe first:
# restic itself retries a dead backend for 15 minutes.
PROBE_TIMEOUT = 10
METADATA_TIMEOUT = 600
DATA_TIMEOUT = 12 * 3600
COMPOSE_TIMEOUT = 300
HEALTH_TIMEOUT = 300
START_RETRY_SECONDS = 180  # `compose start` right after boot can fail while the engine settles

# restic's exit codes (0.17+): the repository does not exist; the password is wrong.
RESTIC_NO_REPOSITORY = 10
RESTIC_WRONG_PASSWORD = 12

log = logging.getLogger("gitea-backup")


class JobError(RuntimeError):
    """A step failed; the message says which and why (it goes to the journal and the metric)."""


# --- configuration ----------------------------------------------------------------------------

def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines (shell quoting, # comments), as systemd and sh read them."""
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise ValueError(f"line {number}: not KEY=VALUE: {line!r}")
        words = shlex.split(raw, comments=True)
        values[key] = words[0] if words else ""
    return values


@dataclass(frozen=True)
class Repository:
    name: str  # "local" or "s3": the metric label and what operators type
    url: str

    @property
    def remote(self) -> bool:
        return self.url.startswith("s3:")


@dataclass(frozen=True)
class Config:
    data_root: str
    compose_file: str
    http_port: int
    snapshot_host: str  # restic's --host: the domain, so a replacement host continues the same history
    admin_user: str
    password_file: str
    repositories: tuple[Repository, ...]
    ssm_parameter: str | None
    keep: dict[str, int]
    stop_gitea: bool
    read_data_subset: str
    read_data_days: int
    db_user: str
    db_name: str
    db_endpoint: str | None  # host:port of an external PostgreSQL (RDS); None: the stack's db container
    db_image: str  # the external one: the image whose pg_dump/psql/pg_restore talk to it
    db_ca_file: str  # the external one: the CA its certificate chains to (verify-full)
    db_password_file: str  # the external one: the file holding its password
    dump_file: str  # pg_dump's output, snapshotted with the files
    staging_dir: str  # where a restore unpacks a snapshot and keeps what it replaced
    state_file: str  # the outcomes the metrics are made from
    metrics_file: str  # in node_exporter's textfile directory
    cache_dir: str  # restic's cache
    lock_file: str  # one backup or restore at a time
    pause_marker: str  # exists while a backup has Gitea stopped: a crash leaves it behind
    aws_env: dict[str, str]

    @classmethod
    def from_env(cls, values: dict[str, str]) -> Config:
        """Every GITEA_BACKUP_* key is required (an optional value is written empty); a missing
        one raises ValueError naming it. AWS_* values are passed on to restic and boto3."""
        missing = [f"GITEA_BACKUP_{key}" for key in ENV_KEYS if f"GITEA_BACKUP_{key}" not in values]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set in the backup configuration (the deploy writes "
                             f"{CONFIG_FILE}; redeploy)")

        def get(key: str) -> str:
            return values[f"GITEA_BACKUP_{key}"]

        repositories = tuple(
            Repository(name, url)
            for name, url in (("local", get("LOCAL_REPOSITORY")), ("s3", get("S3_REPOSITORY")))
            if url
        )
        if not repositories:
            raise ValueError("no repository configured (GITEA_BACKUP_LOCAL_REPOSITORY, GITEA_BACKUP_S3_REPOSITORY)")
        if get("STOP_GITEA") not in ("true", "false"):
            raise ValueError(f"GITEA_BACKUP_STOP_GITEA={get('STOP_GITEA')!r}: must be true or false")
        return cls(
            data_root=get("DATA_ROOT"),
            compose_file=get("COMPOSE_FILE"),
            http_port=int(get("HTTP_PORT")),
            snapshot_host=get("HOST"),
            admin_user=get("ADMIN_USER"),
            password_file=get("PASSWORD_FILE"),
            repositories=repositories,
            ssm_parameter=get("SSM_PARAMETER") or None,
            keep={k: int(get(f"KEEP_{k.upper()}")) for k in ("hourly", "daily", "weekly", "monthly")},
            stop_gitea=get("STOP_GITEA") == "true",
            read_data_subset=get("READ_DATA_SUBSET"),
            read_data_days=int(get("READ_DATA_DAYS")),
            db_user=get("DB_USER"),
            db_name=get("DB_NAME"),
            db_endpoint=get("DB_ENDPOINT") or None,
            db_image=get("DB_IMAGE"),
            db_ca_file=get("DB_CA_FILE"),
            db_password_file=get("DB_PASSWORD_FILE"),
            dump_file=get("DUMP_FILE"),
            staging_dir=get("STAGING_DIR"),
            state_file=get("STATE_FILE"),
            metrics_file=get("METRICS_FILE"),
            cache_dir=get("CACHE_DIR"),
            lock_file=get("LOCK_FILE"),
            pause_marker=get("PAUSE_MARKER"),
            aws_env={k: v for k, v in values.items() if k.startswith("AWS_")},
        )

    def repository(self, name: str) -> Repository:
        for repo in self.repositories:
            if repo.name == name:
                return repo
        raise JobError(f"no {name} repository is configured (have: {', '.join(r.name for r in self.repositories)})")

    @property
    def backup_paths(self) -> list[str]:
        """What a snapshot holds: the dump, repositories/LFS/attachments/avatars (and jwt/ keys),
        app.ini, the secrets (SECRET_KEY & co: without them 2FA and tokens die) and the stack."""
        root = self.data_root
        return [self.dump_file, f"{root}/gitea/data", f"{root}/gitea/config", f"{root}/secrets", f"{root}/compose.yaml"]


# What backup.env must hold (GITEA_BACKUP_<key>); tasks/backup.py writes each, the unit tests
# compare the two. Empty means "none" for LOCAL_REPOSITORY, S3_REPOSITORY and SSM_PARAMETER.
ENV_KEYS = (
    "DATA_ROOT", "COMPOSE_FILE", "HTTP_PORT", "HOST", "ADMIN_USER", "PASSWORD_FILE", "LOCAL_REPOSITORY",
    "S3_REPOSITORY", "SSM_PARAMETER", "KEEP_HOURLY", "KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY", "STOP_GITEA",
    "READ_DATA_SUBSET", "READ_DATA_DAYS", "DB_USER", "DB_NAME", "DB_ENDPOINT", "DB_IMAGE", "DB_CA_FILE",
    "DB_PASSWORD_FILE", "DUMP_FILE", "STAGING_DIR", "STATE_FILE",
    "METRICS_FILE", "CACHE_DIR", "LOCK_FILE", "PAUSE_MARKER",
)


def load_config(path: str | None = None) -> Config:
    """backup.env, or the file GITEA_BACKUP_CONFIG names (a drill's scratch repository)."""
    return Config.from_env(parse_env(Path(path or os.environ.get("GITEA_BACKUP_CONFIG", CONFIG_FILE)).read_text()))


# --- pure helpers (unit-tested) ----------------------------------------------------------------

def pgpass_line(host: str, port: str, user: str, password: str) -> str:
    """One ~/.pgpass line (libpq's format: `:` and `\\` escaped with a backslash)."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:")

    return f"{esc(host)}:{port}:*:{esc(user)}:{esc(password)}\n"


def s3_probe_url(repository_url: str) -> str:
    """The bucket URL of an `s3:<endpoint>/<bucket>/<prefix>` repository, to see if S3 answers."""
    rest = repository_url.removeprefix("s3:")
    scheme, _, rest = rest.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}/{path.split('/', 1)[0]}"


def forget_args(keep: dict[str, int], snapshot_host: str) -> list[str]:
    """restic forget for one lineage: this Gitea's snapshots (whatever machine made them), each tag
    (scheduled, pre-update, ...) its own group so an update's safety net is not crowded out."""
    args = ["forget", "--host", snapshot_host, "--group-by", "host,tags"]
    for period in ("hourly", "daily", "weekly", "monthly"):
        if keep.get(period):
            args += [f"--keep-{period}", str(keep[period])]
    return args


def removed_count(forget_json: str) -> int:
    groups = json.loads(forget_json or "[]") or []
    return sum(len(group.get("remove") or []) for group in groups)


def pick_snapshot(snapshots: list[dict], wanted: str) -> dict | None:
    """`latest` (the newest) or the one whose ID (or the ID it was copied from) starts with `wanted`."""
    if not snapshots:
        return None
    if wanted == "latest":
        return max(snapshots, key=lambda s: s["time"])
    for snap in snapshots:
        if any(str(snap.get(k, "")).startswith(wanted) for k in ("id", "short_id", "original")):
            return snap
    return None


def read_data_due(state: dict, repository: str, days: int, now: float) -> bool:
    last = state.get("checks", {}).get(repository, {}).get("read_data_last_success", 0)
    return now - last >= days * 86400


_METRICS = [
    # (name, help, state key) per repository
    ("gitea_backup_last_run_timestamp_seconds", "When the job last tried this repository.", "last_run"),
    ("gitea_backup_last_success_timestamp_seconds", "When a backup last landed in this repository.", "last_success"),
    ("gitea_backup_last_exit_status", "0 if the last run succeeded for this repository, else 1.", "exit_status"),
    ("gitea_backup_last_duration_seconds", "Seconds the last run spent on this repository.", "duration"),
    ("gitea_backup_last_size_bytes", "Size of the files in the last snapshot.", "size_bytes"),
    ("gitea_backup_last_added_bytes", "New data the last snapshot added to the repository.", "added_bytes"),
    ("gitea_backup_snapshots", "Snapshots of this Gitea in the repository after retention.", "snapshots"),
]
_CHECK_METRICS = [
    ("gitea_backup_check_last_status", "0 if the last restic check of this repository passed, else 1.", "status"),
    ("gitea_backup_check_last_success_timestamp_seconds", "When restic check last passed.", "last_success"),
    ("gitea_backup_read_data_last_success_timestamp_seconds", "When a read-data check last passed.",
     "read_data_last_success"),
]
_JOB_METRICS = [
    ("gitea_backup_gitea_pause_seconds", "Seconds Gitea was unavailable during the last backup.", "pause_seconds"),
    ("gitea_backup_database_dump_bytes", "Size of the last database dump.", "dump_bytes"),
    ("gitea_backup_last_resume_timestamp_seconds", "When Gitea last had to be started again after a backup "
     "died while it was paused (0 = never).", "last_resume"),
    ("gitea_restore_last_run_timestamp_seconds", "When gitea-restore last ran.", "restore_last_run"),
    ("gitea_restore_last_exit_status", "0 if the last restore succeeded, else 1.", "restore_exit_status"),
    ("gitea_restore_last_duration_seconds", "Seconds the last restore took (start to healthy).", "restore_duration"),
]


def render_metrics(state: dict, repositories: list[str]) -> str:
    """Prometheus text for node_exporter's textfile collector; every configured repository gets
    every series (0 = never), so "no backup yet" is visible and alertable."""
    lines = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} gauge"])
        lines.extend(f"{name}{labels} {value}" if isinstance(value, int) else f"{name}{labels} {value:.3f}"
                     for labels, value in samples)

    for section, metrics in (("repositories", _METRICS), ("checks", _CHECK_METRICS)):
        for name, help_text, key in metrics:
            family(name, help_text, [(f'{{repository="{repo}"}}', state.get(section, {}).get(repo, {}).get(key, 0))
                                     for repo in repositories])
    for name, help_text, key in _JOB_METRICS:
        family(name, help_text, [("", state.get(key, 0))])
    return "\n".join(lines) + "\n"


# --- side effects: files, processes ------------------------------------------------------------

def atomic_write(path: str, text: str, mode: int = 0o644, durable: bool = False) -> None:
    """Readers (node_exporter, the next run) see the old file or the new one, never half of one.
    durable: the rename itself is on disk when this returns (it survives a power cut)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_directory(directory)


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_state(cfg: Config) -> dict:
    path = cfg.state_file
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        log.warning("%s is not JSON: starting a new one (metrics restart from zero)", path)
        return {}


def save_state(cfg: Config, state: dict) -> None:
    atomic_write(cfg.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o640)
    atomic_write(cfg.metrics_file, render_metrics(state, [r.name for r in cfg.repositories]))


def run(argv: list[str], *, timeout: float, env: dict | None = None, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """Run a command; stdin is never inherited (docker compose exec would swallow ours)."""
    log.debug("run: %s", shlex.join(argv))
    try:
        return subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout,
                              env=env, text=stdout == subprocess.PIPE)
    except subprocess.TimeoutExpired as error:
        raise JobError(f"{shlex.join(argv[:4])}... gave no answer within {timeout:.0f} s") from error


def last_lines(text: str | bytes | None, count: int = 5) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " | ".join(line.strip() for line in (text or "").strip().splitlines()[-count:])


class Restic:
    """restic against one repository, with the job's password file, cache and AWS environment."""

    def __init__(self, cfg: Config, repo: Repository, password_file: str | None = None):
        self.cfg, self.repo = cfg, repo
        self.password_file = password_file or cfg.password_file
        self.env = {**os.environ, **cfg.aws_env, "RESTIC_CACHE_DIR": cfg.cache_dir}

    def argv(self, *args: str) -> list[str]:
        return ["restic", "-r", self.repo.url, "--password-file", self.password_file, *args]

    def __call__(self, *args: str, timeout: float = METADATA_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
        cp = run(self.argv(*args), timeout=timeout, env=self.env)
        if check and cp.returncode != 0:
            raise JobError(f"restic {args[0]} ({self.repo.name}) failed with exit {cp.returncode}: "
                           f"{last_lines(cp.stderr)}")
        return cp

    def initialised(self) -> bool:
        cp = self("cat", "config", check=False)
        if cp.returncode == 0:
            return True
        if cp.returncode == RESTIC_NO_REPOSITORY:
            return False
        if cp.returncode == RESTIC_WRONG_PASSWORD:
            raise JobError(f"{self.repo.name} repository: the restic password does not open it")
        raise JobError(f"{self.repo.name} repository: cannot tell (exit {cp.returncode}): {last_lines(cp.stderr)}")

    def snapshots(self) -> list[dict]:
        return json.loads(self("snapshots", "--json", "--host", self.cfg.snapshot_host).stdout or "[]") or []


def s3_reachable(repo: Repository) -> str | None:
    """None if S3 answers HTTP at all (any status), else why not. Bounded, unlike restic's retries."""
    try:
        urllib.request.urlopen(urllib.request.Request(s3_probe_url(repo.url), method="HEAD"),
                               timeout=PROBE_TIMEOUT)
    except urllib.error.HTTPError:
        return None  # 403/404 without credentials: S3 is there
    except (OSError, ValueError) as error:
        return f"S3 is unreachable ({s3_probe_url(repo.url)}): {getattr(error, 'reason', error)}"
    return None


class LockedError(JobError):
    """Another run holds the job lock."""


@contextlib.contextmanager
def job_lock(path: str, what: str):
    """One backup or restore at a time; a second run refuses at once (cron will try again).
    flock: the kernel releases it when the holder dies, however it dies (children do not inherit it)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockedError(f"{what}: another run holds {path} ({holder}); not starting a second one") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- crash safety: signals and the pause marker ---------------------------------------------------

class Terminated(BaseException):
    """SIGTERM, SIGINT or SIGHUP, raised wherever the job is: the pause's `finally` then starts
    Gitea before the job exits. A BaseException, so no `except JobError` carries on past it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


_deferring = 0
_pending: list[int] = []


def _on_signal(signum, _frame) -> None:
    if _deferring:
        _pending.append(signum)  # raised once Gitea is running again (deferred_signals)
        return
    raise Terminated(signum)


def handle_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)


@contextlib.contextmanager
def deferred_signals():
    """Starting Gitea again is not interrupted by a signal: it is raised after (the signal mask
    is left alone, so `docker compose` itself can still be stopped)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending:
            signum = _pending[0]
            _pending.clear()
            raise Terminated(signum)


def read_marker(cfg: Config) -> str | None:
    """The pause marker's text (who paused Gitea, when), or None when Gitea is not paused by us."""
    try:
        return Path(cfg.pause_marker).read_text().strip() or "no details"
    except FileNotFoundError:
        return None


def write_marker(cfg: Config) -> None:
    """On disk (fsync'd file and directory) before Gitea is stopped: a SIGKILL, an OOM kill or a
    power cut at any later moment leaves it, and the next run or the boot unit starts Gitea."""
    atomic_write(cfg.pause_marker, f"paused by gitea-backup, pid {os.getpid()}, since "
                                   f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n", 0o644, durable=True)


def clear_marker(cfg: Config) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cfg.pause_marker)
    fsync_directory(os.path.dirname(cfg.pause_marker))


def resume_interrupted(cfg: Config, stack: Stack, state: dict | None = None) -> bool:
    """With the job lock held: a marker means a run died while Gitea was stopped. Start Gitea,
    wait until it is healthy, remove the marker. True if there was one."""
    marker = read_marker(cfg)
    if marker is None:
        return False
    log.warning("a backup was interrupted while Gitea was paused (%s: %s): starting Gitea again",
                cfg.pause_marker, marker)
    with deferred_signals():
        stack.resume()
        own_state = state is None
        state = load_state(cfg) if own_state else state
        state["last_resume"] = time.time()
        if own_state:
            save_state(cfg, state)
    log.info("Gitea is running and healthy again after the interrupted backup")
    return True


def resume(cfg: Config) -> int:
    """`gitea-backup resume` (the boot unit, and cron after each run): bring Gitea back if a backup
    died during its pause. Nothing to do without a marker; a live run that holds the lock starts
    Gitea itself."""
    if read_marker(cfg) is None:
        return 0
    try:
        with job_lock(cfg.lock_file, "gitea-backup resume"):
            resume_interrupted(cfg, Stack(cfg))
    except LockedError as error:
        log.info("%s: the marker belongs to that run, which starts Gitea itself", error)
    return 0


# --- the stack ----------------------------------------------------------------------------------

class Stack:
    """The Compose project the deploy runs: Gitea and its database."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def compose(self, *args: str, timeout: float = COMPOSE_TIMEOUT, **kw) -> subprocess.CompletedProcess:
        return run(["docker", "compose", "-f", self.cfg.compose_file, *args], timeout=timeout, **kw)

    def checked(self, *args: str, **kw) -> subprocess.CompletedProcess:
        cp = self.compose(*args, **kw)
        if cp.returncode != 0:
            raise JobError(f"docker compose {' '.join(args[:3])} failed: {last_lines(cp.stderr)}")
        return cp

    def gitea_running(self) -> bool:
        return "gitea" in self.checked("ps", "--status", "running", "--services").stdout.split()

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.cfg.http_port}/api/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response).get("status") == "pass"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.healthy():
                return time.monotonic() - started
            time.sleep(0.5)
        raise JobError(f"Gitea did not report healthy within {timeout:.0f} s "
                       f"(docker compose -f {self.cfg.compose_file} logs gitea)")

    def db(self, argv: list[str], timeout: float = COMPOSE_TIMEOUT, **kw) -> subprocess.CompletedProcess:
        """A PostgreSQL client command on Gitea's database. The stack's db container: run inside it
        (its loopback needs no password). An external one (RDS): from the PostgreSQL image on the
        host's network, TLS verify-full against the CA, the password in a root-only pgpass file that
        lives as long as the command (never on a command line or in the environment)."""
        if not self.cfg.db_endpoint:
            return self.compose("exec", "-T", "db", *argv, timeout=timeout, **kw)
        host, _, port = self.cfg.db_endpoint.rpartition(":")
        with tempfile.TemporaryDirectory(prefix="gitea-backup-pg.") as scratch:
            pgpass = os.path.join(scratch, "pgpass")
            atomic_write(pgpass, pgpass_line(host, port, self.cfg.db_user,
                                             Path(self.cfg.db_password_file).read_text().strip()), 0o600)
            return run(["docker", "run", "--rm", "-i", "--network", "host",
                        "-v", f"{pgpass}:/run/gitea-backup/pgpass:ro", "-v", f"{self.cfg.db_ca_file}:/run/gitea-backup/ca.pem:ro",
                        "-e", "PGPASSFILE=/run/gitea-backup/pgpass", "-e", f"PGHOST={host}", "-e", f"PGPORT={port}",
                        "-e", "PGSSLMODE=verify-full", "-e", "PGSSLROOTCERT=/run/gitea-backup/ca.pem",
                        "--entrypoint", argv[0], self.cfg.db_image, *argv[1:]], timeout=timeout, **kw)

    def psql(self, sql: str) -> str:
        cp = self.db(["psql", "-U", self.cfg.db_user, "-d", self.cfg.db_name, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        if cp.returncode != 0:
            raise JobError(f"psql failed (exit {cp.returncode}): {last_lines(cp.stderr)}")
        return cp.stdout.strip()

    def dump(self, path: str) -> int:
        """pg_dump -Fc into path (replaced only once the dump is complete); returns its size."""
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.partial"
        with open(tmp, "wb") as out:
            cp = self.db(["pg_dump", "-U", self.cfg.db_user, "-Fc", self.cfg.db_name], stdout=out, timeout=DATA_TIMEOUT)
            out.flush()
            os.fsync(out.fileno())
        if cp.returncode != 0:
            os.unlink(tmp)
            raise JobError(f"pg_dump failed (exit {cp.returncode}): {last_lines(cp.stderr)}")
        os.replace(tmp, path)
        return os.path.getsize(path)

    def start_gitea(self) -> None:
        """`compose start gitea`, retried for a while: right after boot the engine may not be ready."""
        deadline = time.monotonic() + START_RETRY_SECONDS
        while True:
            try:
                self.checked("start", "gitea")
                return
            except JobError as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("%s; trying again in 5 s", error)
                time.sleep(5)

    def resume(self) -> None:
        """Gitea started and healthy; only then is the pause marker removed."""
        self.start_gitea()
        self.wait_healthy()
        clear_marker(self.cfg)

    @contextlib.contextmanager
    def paused(self, result: dict, enabled: bool = True):
        """Gitea stopped for the duration (when configured, enabled and running); result["pause_seconds"]
        is how long it did not answer: from the stop until /api/healthz passes again.

        Crash-safe: the marker is on disk before the stop and removed only once Gitea is healthy
        again; a signal (Terminated) leaves through the `finally`, which starts Gitea first."""
        if not (self.cfg.stop_gitea and enabled) or not self.gitea_running():
            if self.cfg.stop_gitea and enabled:
                log.warning("Gitea is not running: backing up without pausing it")
            result["pause_seconds"] = 0.0
            yield
            return
        started = time.monotonic()
        write_marker(self.cfg)
        try:
            self.checked("stop", "gitea")
            yield
        finally:
            with deferred_signals():
                self.resume()
                result["pause_seconds"] = time.monotonic() - started
                log.info("Gitea paused for %.1f s (stopped, dumped, snapshotted, healthy again)",
                         result["pause_seconds"])


# --- logging --------------------------------------------------------------------------------------

def setup_logging(ident: str, quiet: bool = False) -> None:
    """The journal (through syslog's socket) always; stderr unless quiet (cron: the journal is enough)."""
    log.setLevel(logging.INFO)
    if not quiet:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(f"{ident}: %(levelname)s: %(message)s"))
        log.addHandler(stream)
    if os.path.exists("/dev/log"):
        journal = logging.handlers.SysLogHandler(address="/dev/log")
        journal.ident = f"{ident}: "
        journal.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(journal)


# --- the backup --------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What happened to one repository in this run."""

    repo: Repository
    started: float = field(default_factory=time.time)
    error: str | None = None
    snapshot: dict | None = None  # restic's summary of the snapshot that landed here

    def fail(self, why: str) -> None:
        self.error = self.error or why
        log.error("%s repository: %s", self.repo.name, why)


def snapshot_into(cfg: Config, restic: Restic, tags: list[str], at: str | None) -> dict:
    args = ["backup", "--json", "--host", cfg.snapshot_host, *[f"--tag={t}" for t in tags]]
    if at:
        args += ["--time", at]
    cp = restic(*args, *cfg.backup_paths, timeout=DATA_TIMEOUT)
    summaries = [json.loads(line) for line in cp.stdout.splitlines() if '"summary"' in line]
    if not summaries:
        raise JobError(f"restic backup ({restic.repo.name}) printed no summary")
    return summaries[-1]


def retention(cfg: Config, restic: Restic, state: dict) -> None:
    """forget + prune by the policy, then check. Only called where this run's backup landed, so a
    repository whose backups fail keeps every snapshot it has."""
    removed = removed_count(restic(*forget_args(cfg.keep, cfg.snapshot_host), "--json").stdout)
    if removed:
        log.info("%s: retention removed %d snapshot(s); pruning", restic.repo.name, removed)
        restic("prune", timeout=DATA_TIMEOUT)
        check(cfg, restic, state)


def check(cfg: Config, restic: Restic, state: dict, read_data_subset: str | None = None) -> None:
    record = state.setdefault("checks", {}).setdefault(restic.repo.name, {})
    args = ["check"] + ([f"--read-data-subset={read_data_subset}"] if read_data_subset else [])
    cp = restic(*args, timeout=DATA_TIMEOUT, check=False)
    now = time.time()
    record["last_run"] = now
    record["status"] = 0 if cp.returncode == 0 else 1
    if cp.returncode != 0:
        raise JobError(f"restic check{' --read-data-subset=' + read_data_subset if read_data_subset else ''} "
                       f"({restic.repo.name}) found problems (exit {cp.returncode}): "
                       f"{last_lines(cp.stdout + cp.stderr, 8)}")
    record["last_success"] = now
    if read_data_subset:
        record["read_data_last_success"] = now


def backup(cfg: Config, tags: list[str], at: str | None = None) -> int:
    state = load_state(cfg)
    outcomes = {repo.name: Outcome(repo) for repo in cfg.repositories}
    restics = {repo.name: Restic(cfg, repo) for repo in cfg.repositories}
    stack = Stack(cfg)
    try:
        # First of all: an earlier run that died during its pause left Gitea stopped.
        resume_interrupted(cfg, stack, state)
        return _backup(cfg, tags, at, state, outcomes, restics, stack)
    except Terminated as stop:
        with deferred_signals():  # record why, then exit (Gitea was started by the pause's finally)
            for outcome in outcomes.values():
                outcome.fail(str(stop))
                record_outcome(state, outcome, None)
            save_state(cfg, state)
        raise


def first_repository(outcomes: dict, reachable: dict) -> tuple[str | None, bool]:
    """Which repository takes the snapshot, and whether Gitea is paused for it.

    The pause never waits on S3 while a local repository is configured: the snapshot goes to the
    local disk and S3 gets a copy once Gitea is running again. If the local repository is
    configured but unusable this run, S3 takes the snapshot without pausing Gitea (dump first,
    as with backup_stop_gitea false). Only with S3 as the one repository (backup_local_repository
    None, the operator's choice) does the pause include the upload of what changed."""
    if "local" in outcomes:
        if reachable["local"]:
            return "local", True
        return ("s3" if reachable.get("s3") else None), False
    return ("s3" if reachable.get("s3") else None), True


def _backup(cfg: Config, tags: list[str], at: str | None, state: dict, outcomes: dict, restics: dict,
            stack: Stack) -> int:
    reachable = {}
    for name, outcome in outcomes.items():
        why = s3_reachable(outcome.repo) if outcome.repo.remote else None
        reachable[name] = why is None
        if why:
            outcome.fail(why)
    for name in outcomes:
        if reachable[name]:
            try:
                restics[name]("unlock")  # stale locks of a killed run; ours is the only run (job lock)
            except JobError as error:
                reachable[name] = False
                outcomes[name].fail(str(error))
    first, pause = first_repository(outcomes, reachable)
    if first and not pause and cfg.stop_gitea:
        log.warning("the local repository is unusable: snapshot into %s without pausing Gitea "
                    "(the pause never waits on S3)", first)
    job = {"pause_seconds": 0.0}
    try:
        if first is None:
            raise JobError("no repository is reachable: nothing was backed up")
        with stack.paused(job, enabled=pause):
            job["dump_bytes"] = stack.dump(cfg.dump_file)
            outcomes[first].snapshot = snapshot_into(cfg, restics[first], tags, at)
        log.info("snapshot %s in %s: %d files, %d bytes, %d new", outcomes[first].snapshot["snapshot_id"][:8],
                 first, outcomes[first].snapshot["total_files_processed"],
                 outcomes[first].snapshot["total_bytes_processed"], outcomes[first].snapshot["data_added"])
        # Gitea is running again from here on.
        for name, outcome in outcomes.items():
            if name == first or not reachable[name]:
                continue
            try:
                # Every snapshot the first repository has and this one lacks: catches up after an outage.
                restics[name]("copy", "--from-repo", outcomes[first].repo.url, "--from-password-file",
                              cfg.password_file, "--host", cfg.snapshot_host, timeout=DATA_TIMEOUT)
                outcome.snapshot = {**outcomes[first].snapshot, "data_added": 0}
            except JobError as error:
                outcome.fail(str(error))
    except JobError as error:
        for outcome in outcomes.values():
            outcome.fail(str(error))
    finally:
        state.update(job)
    for name, outcome in outcomes.items():
        if outcome.snapshot and not outcome.error:
            try:
                retention(cfg, restics[name], state)
                if read_data_due(state, name, cfg.read_data_days, time.time()):
                    check(cfg, restics[name], state, cfg.read_data_subset)
                    log.info("%s: read-data check (%s) passed", name, cfg.read_data_subset)
            except JobError as error:
                outcome.fail(str(error))
        record_outcome(state, outcome, restics[name] if reachable[name] else None)
    save_state(cfg, state)
    failed = [name for name, o in outcomes.items() if o.error]
    if failed:
        log.error("backup FAILED for %s (see above); the other repositories are unaffected", ", ".join(failed))
        return EXIT_FAILED
    log.info("backup done: %s", ", ".join(outcomes))
    return 0


def record_outcome(state: dict, outcome: Outcome, restic: Restic | None) -> None:
    now = time.time()
    record = state.setdefault("repositories", {}).setdefault(outcome.repo.name, {})
    record.update(last_run=outcome.started, duration=now - outcome.started,
                  exit_status=1 if outcome.error else 0, last_error=outcome.error or "")
    if not outcome.error and outcome.snapshot:
        record.update(last_success=now, size_bytes=outcome.snapshot["total_bytes_processed"],
                      added_bytes=outcome.snapshot["data_added"])
    if restic is not None:
        with contextlib.suppress(JobError, ValueError):
            record["snapshots"] = len(restic.snapshots())


# --- SSM: the restic password for a replacement host -------------------------------------------

def ssm_client(cfg: Config):
    import boto3  # only the password commands need it (Debian python3-boto3)

    # Region, endpoint (emulated AWS) and credentials file come from backup.env's AWS_* values;
    # without keys boto3 takes the instance role, as restic does.
    os.environ.update(cfg.aws_env)
    return boto3.client("ssm")


def ssm_password(cfg: Config) -> str | None:
    client = ssm_client(cfg)
    try:
        return client.get_parameter(Name=cfg.ssm_parameter, WithDecryption=True)["Parameter"]["Value"]
    except client.exceptions.ParameterNotFound:
        return None


def local_password(cfg: Config) -> str | None:
    try:
        return Path(cfg.password_file).read_text().strip()
    except FileNotFoundError:
        return None


def password_status(cfg: Config) -> str:
    """disabled | no-file | missing (not in SSM yet) | same | differs | error: <why>"""
    if not cfg.ssm_parameter:
        return "disabled"
    mine = local_password(cfg)
    if mine is None:
        return "no-file"
    try:
        theirs = ssm_password(cfg)
    except Exception as error:  # boto3's errors are many classes; the deploy only needs to know it failed
        return f"error: {type(error).__name__}: {error}"
    return "missing" if theirs is None else ("same" if theirs == mine else "differs")


def password_fetch(cfg: Config) -> str:
    """A replacement host takes the password its predecessor published (before one is generated)."""
    if local_password(cfg) is not None:
        return "present"
    value = ssm_password(cfg) if cfg.ssm_parameter else None
    if value is None:
        return "none in SSM"
    atomic_write(cfg.password_file, value, 0o600)
    return f"fetched from SSM {cfg.ssm_parameter}"


def password_publish(cfg: Config) -> str:
    """Publish once, never overwrite: a second value would orphan every snapshot made with the first."""
    mine = local_password(cfg)
    if mine is None:
        raise JobError(f"{cfg.password_file} does not exist")
    client = ssm_client(cfg)
    try:
        client.put_parameter(Name=cfg.ssm_parameter, Value=mine, Type="SecureString", Overwrite=False,
                             Description="restic password of Gitea's backups (gitea-deploy)")
        return f"published to SSM {cfg.ssm_parameter}"
    except client.exceptions.ParameterAlreadyExists:
        if ssm_password(cfg) == mine:
            return "already in SSM"
        raise JobError(f"SSM {cfg.ssm_parameter} holds a DIFFERENT restic password than {cfg.password_file}; "
                       "refusing to overwrite it (docs/runbooks/restore.md: two passwords)") from None


# --- repositories -------------------------------------------------------------------------------

# How long a proof that this host opened an S3 repository stands in for opening it again. Its
# bucket is versioned and the host may never delete a version (docs/adr/0006): a repository opened
# once can at worst be hidden behind delete markers, which the next hourly backup fails on (its
# metrics) long before this passes. A changed password or URL voids the proof at once.
OPENED_FOR = 24 * 3600


def opened_file(cfg: Config) -> str:
    return os.path.join(os.path.dirname(cfg.state_file), "opened.json")


def file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def opened_proof(cfg: Config, repo: Repository) -> dict:
    """What must still hold for an earlier open to count: the URL, the password file's digest and,
    for a local repository, its config file's digest (a deleted or replaced repository differs)."""
    return {"url": repo.url, "password": file_digest(cfg.password_file),
            "config": None if repo.remote else file_digest(os.path.join(repo.url, "config"))}


def read_opened(cfg: Config) -> dict:
    try:
        return json.loads(Path(opened_file(cfg)).read_text())
    except (OSError, ValueError):
        return {}


def opened_before(known: dict, cfg: Config, repo: Repository, now: float) -> bool:
    proof, seen = opened_proof(cfg, repo), known.get(repo.name) or {}
    fresh = not repo.remote or now - float(seen.get("at", 0)) < OPENED_FOR
    return fresh and proof["password"] is not None and {k: seen.get(k) for k in proof} == proof


def status(cfg: Config) -> dict[str, str]:
    """Per repository: initialised | missing | error: <why> (the deploy's guard, on every deploy).
    Opening a repository is restic's key derivation, ~0.5 s of CPU each: a repository this host
    opened before with the same password (opened_before) is not opened again; the others are
    asked at once, and each that opens is remembered."""
    now, known = time.time(), read_opened(cfg)
    proven = {r.name for r in cfg.repositories if opened_before(known, cfg, r, now)}

    def one(repo: Repository) -> str:
        if repo.name in proven:
            return "initialised"
        why = s3_reachable(repo) if repo.remote else None
        try:
            if why:
                raise JobError(why)
            return "initialised" if Restic(cfg, repo).initialised() else "missing"
        except JobError as error:
            return f"error: {error}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(cfg.repositories))) as pool:
        states = dict(zip((r.name for r in cfg.repositories), pool.map(one, cfg.repositories), strict=True))
    # A reused proof keeps the time of the open it proves, so it still expires.
    opened = {r.name: known[r.name] if r.name in proven else {**opened_proof(cfg, r), "at": now}
              for r in cfg.repositories if states[r.name] == "initialised"}
    if opened != known:
        write_opened(cfg, opened)
    return states


def write_opened(cfg: Config, opened: dict) -> None:
    with contextlib.suppress(OSError):  # unwritable: the next deploy opens the repositories again
        atomic_write(opened_file(cfg), json.dumps(opened, indent=1, sort_keys=True) + "\n", mode=0o600)


def init(cfg: Config) -> list[str]:
    """Initialise the repositories that do not exist. A new one takes the chunker parameters of an
    existing one, so copies between them deduplicate (a replacement host's fresh local repository
    and the S3 repository its predecessor filled)."""
    done = []
    states = status(cfg)
    existing = [r for r in cfg.repositories if states[r.name] == "initialised"]
    for repo in cfg.repositories:
        state = states[repo.name]
        if state == "initialised":
            continue
        if state != "missing":
            raise JobError(f"{repo.name} repository: {state}")
        args = ["init"]
        if existing:
            args += ["--from-repo", existing[0].url, "--from-password-file", cfg.password_file, "--copy-chunker-params"]
        Restic(cfg, repo)(*args)
        existing.append(repo)
        done.append(repo.name)
    if done:  # just made with this password: the next deploy's status need not open them
        now = time.time()
        write_opened(cfg, {**read_opened(cfg), **{r: {**opened_proof(cfg, cfg.repository(r)), "at": now} for r in done}})
    return done


# --- command line ---------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gitea-backup", description="Back up Gitea (database, data, configuration, secrets) with restic. "
        "Without a command: one backup run, as cron does it.")
    parser.add_argument("--tag", action="append", help="tag the snapshot (default: scheduled); e.g. "
                        "--tag pre-update before an update. Each tag keeps its own retention")
    parser.add_argument("--time", help="record the snapshot at this time (YYYY-MM-DD HH:MM:SS): drills, tests")
    parser.add_argument("--quiet", action="store_true", help="log to the journal only (cron)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("status", help="is each repository initialised (the deploy's guard)")
    sub.add_parser("init", help="initialise the repositories that do not exist yet")
    check_cmd = sub.add_parser("check", help="restic check every (or one) repository; records the outcome")
    check_cmd.add_argument("--repository", choices=["local", "s3"])
    check_cmd.add_argument("--read-data-subset", help="also read back this share of the data (e.g. 5%%, 100%%)")
    sub.add_parser("metrics", help="write the metrics file from the last outcomes (the deploy does, once)")
    sub.add_parser("resume", help="start Gitea if a backup died while it was paused (boot unit, cron after "
                   "each run); nothing to do otherwise")
    pw = sub.add_parser("password", help="the restic password in SSM: status | fetch | publish")
    pw.add_argument("action", choices=["status", "fetch", "publish"])
    passthrough = sub.add_parser("restic", help="run restic against a repository with the job's settings, "
                                 "e.g. gitea-backup restic s3 snapshots")
    passthrough.add_argument("repository", choices=["local", "s3"])
    passthrough.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    return guarded("gitea-backup", lambda: command(args), quiet=args.quiet)


def guarded(ident: str, body, quiet: bool = False) -> int:
    """Run a program's body: every failure logged (journal and stderr) and turned into its exit code."""
    setup_logging(ident, quiet=quiet)
    try:
        return body()
    except LockedError as error:
        log.error("%s", error)
        return EXIT_LOCKED
    except Terminated as stop:
        log.error("%s: stopped (Gitea was started again if this run had paused it)", stop)
        return 128 + stop.signum
    except JobError as error:
        log.error("FAILED: %s", error)
        return EXIT_FAILED
    except Exception:
        log.exception("FAILED unexpectedly")
        return EXIT_FAILED


def command(args) -> int:
    """What gitea-backup was asked to do."""
    cfg = load_config()
    if args.command == "restic":
        restic = Restic(cfg, cfg.repository(args.repository))
        os.execvpe("restic", restic.argv(*args.args), restic.env)
    if args.command == "status":
        for name, text in status(cfg).items():
            print(f"{name} {text}")
        return 0
    if args.command == "password":
        action = {"status": password_status, "fetch": password_fetch, "publish": password_publish}[args.action]
        print(action(cfg))
        return 0
    if args.command == "metrics":
        save_state(cfg, load_state(cfg))
        return 0
    if args.command == "resume":
        return resume(cfg)
    handle_signals()
    with job_lock(cfg.lock_file, f"gitea-backup {args.command or 'run'}"):
        if args.command == "init":
            print("initialised: " + (", ".join(init(cfg)) or "nothing to do"))
            return 0
        if args.command == "check":
            return run_checks(cfg, args.repository, args.read_data_subset)
        return backup(cfg, args.tag or ["scheduled"], args.time)


def run_checks(cfg: Config, only: str | None, read_data_subset: str | None) -> int:
    state, failed = load_state(cfg), []
    for repo in cfg.repositories:
        if only and repo.name != only:
            continue
        try:
            check(cfg, Restic(cfg, repo), state, read_data_subset)
            log.info("%s: check passed", repo.name)
        except JobError as error:
            log.error("%s", error)
            failed.append(repo.name)
    save_state(cfg, state)
    return EXIT_FAILED if failed else 0
