"""Backups: restic into a local repository on the data volume and to S3, run hourly by cron.

The job itself is files/backup/ (gitea-backup, gitea-restore and their module); this stage
installs it with its configuration (backup.env: every value and path the job uses, see
backup_env()), the restic password (generated once, or taken from SSM on a replacement host, and
kept in SSM), initialised repositories and the boot unit that starts Gitea again if a backup died
while Gitea was paused. docs/concepts/backup.md explains the design, docs/runbooks/restore.md the
restores.
"""

from __future__ import annotations

import configparser
import datetime
import itertools
import re
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.util import get_file_sha1
from pyinfra.operations import server, systemd

from tasks import snapshot
from tasks.common import REPO, template
from tasks.gitea import compose_file, database
from tasks.secrets import generate_once, secrets_dir

LIB_DIR = "/usr/local/lib/gitea-deploy"
CONFIG_DIR = "/etc/gitea-deploy"
CREDENTIALS_FILE = f"{CONFIG_DIR}/aws-credentials"
ENV_FILE = f"{CONFIG_DIR}/backup.env"
# Installed by tasks/updates.py (before the stack, which an image update runs through them).
MODULES = ("gitea_backup.py", "gitea_restore.py")
PROGRAMS = ("gitea-backup", "gitea-restore")
RESUME_UNIT = "gitea-backup-resume.service"
# The job's own files, off the data volume: they describe this host's runs, not Gitea's data.
STATE_DIR = "/var/lib/gitea-backup"
STATE_FILE = f"{STATE_DIR}/state.json"
PAUSE_MARKER = f"{STATE_DIR}/paused"  # persistent: it must survive the reboot it is there for
CACHE_DIR = "/var/cache/gitea-backup"
LOCK_FILE = "/run/lock/gitea-backup.lock"  # tmpfs: no run survives a reboot, neither should its lock
# How long a deploy waits for a backup to start Gitea again (gitea.after_backup_pause).
PAUSE_WAIT_SECONDS = 600
METRICS_NAME = "gitea_backup.prom"
# The deploy's own textfile (the job's is rewritten by every run): what BackupTooOld measures
# against, so files/alerting/rules/gitea-deploy.yml stays the same for every schedule.
SCHEDULE_METRICS_NAME = "gitea_deploy_backup_schedule.prom"
INTERVAL_METRIC = "gitea_deploy_backup_interval_seconds"
# The database role and name templates/gitea/compose.yaml.j2 gives PostgreSQL.
DB_USER = DB_NAME = "gitea"


def pause_wait(seconds: int = PAUSE_WAIT_SECONDS) -> str:
    """Shell that returns once no backup has Gitea paused, or after `seconds`: the marker exists
    and a live run holds the job lock. A marker without a holder is a run that died paused; then
    nothing is waited for, and whoever asks finds Gitea stopped and starts it, as the boot unit
    does."""
    marker, lock = shlex.quote(PAUSE_MARKER), shlex.quote(LOCK_FILE)
    return (f"t=0; while [ -e {marker} ] && ! flock -n {lock} true 2>/dev/null && [ $t -lt {int(seconds)} ]; "
            f"do sleep 1; t=$((t+1)); done")


def local_repository(data) -> str | None:
    """The local repository's path: backup_local_repository below data_root when relative (the
    default, backup/restic, follows a changed data_root), as given when absolute, None for none."""
    value = data.get("backup_local_repository")
    if not value:
        return None
    return value if value.startswith("/") else f"{data.get('data_root').rstrip('/')}/{value}"


def s3_repository(data) -> str | None:
    """restic's URL of the S3 repository: the regional endpoint, or the emulated one in the lab."""
    if not data.get("backup_s3_bucket"):
        return None
    endpoint = (data.get("s3_endpoint") or f"https://s3.{data.get('aws_region')}.amazonaws.com").rstrip("/")
    return f"s3:{endpoint}/{data.get('backup_s3_bucket')}/{data.get('backup_s3_prefix')}"


def packages(data) -> list[str]:
    """cron runs the job; boto3 only talks to SSM, so only a host that keeps its password there."""
    return ["restic", "cron", *(["python3-boto3"] if ssm_parameter(data) else [])]


def ssm_parameter(data) -> str | None:
    path = data.get("ssm_parameter_path")
    return f"{path}/restic_password" if path else None


def backup_dir(data) -> str:
    """On the data volume, next to what it copies: the dump, and a restore's staging."""
    return f"{data.get('data_root').rstrip('/')}/backup"


def textfile(data, name: str) -> str:
    """A metrics file in node_exporter's textfile directory (the backup's, the schedule's, the updater's)."""
    return f"{data.get('node_exporter_textfile_dir').rstrip('/')}/{name}"


def metrics_file(data) -> str:
    return textfile(data, METRICS_NAME)


def schedule_metrics_file(data) -> str:
    return textfile(data, SCHEDULE_METRICS_NAME)


def render_schedule_metrics(schedule: str) -> str:
    """Prometheus text of gitea_deploy_backup_interval_seconds: schedule_interval(schedule). The
    schedule is named in HELP, escaped as the text format wants (backslash, newline)."""
    quoted = schedule.replace("\\", "\\\\").replace("\n", "\\n")
    return (f"# HELP {INTERVAL_METRIC} The longest gap between two runs of backup_schedule '{quoted}', in "
            f"seconds; BackupTooOld fires past twice it.\n"
            f"# TYPE {INTERVAL_METRIC} gauge\n"
            f"{INTERVAL_METRIC} {schedule_interval(schedule)}\n")


def password_file(data) -> str:
    return f"{secrets_dir(data)}/restic_password"


def backup_env(data) -> list[tuple[str, str, str]]:
    """backup.env as (key, value, comment) rows: everything gitea-backup and gitea-restore read.
    The job has no defaults of its own; tests/unit/test_backup_deploy.py checks the two agree."""
    def b(key: str) -> str:
        return f"GITEA_BACKUP_{key}"

    rows = [
        (b("DATA_ROOT"), data.get("data_root"), ""),
        (b("COMPOSE_FILE"), compose_file(data), ""),
        (b("HTTP_PORT"), str(data.get("gitea_http_port")), ""),
        (b("HOST"), data.get("gitea_domain"), "restic's --host: the domain, so a replacement instance continues "
                                              "the same snapshot history."),
        (b("ADMIN_USER"), data.get("gitea_admin_username"), ""),
        (b("PASSWORD_FILE"), password_file(data), "The restic password's file (root-only); never the password."),
        (b("LOCAL_REPOSITORY"), local_repository(data) or "", "Empty: none (the pause then includes S3)."),
        (b("S3_REPOSITORY"), s3_repository(data) or "", "Empty: none."),
        (b("SSM_PARAMETER"), ssm_parameter(data) or "", "Empty: the password is not kept in SSM."),
        *[(b(f"KEEP_{period.upper()}"), str(data.get(f"backup_keep_{period}")), "")
          for period in ("hourly", "daily", "weekly", "monthly")],
        (b("STOP_GITEA"), "true" if data.get("backup_stop_gitea") else "false", ""),
        (b("READ_DATA_SUBSET"), data.get("backup_read_data_subset"), ""),
        (b("READ_DATA_DAYS"), str(data.get("backup_read_data_days")), ""),
        (b("DB_USER"), DB_USER, ""),
        (b("DB_NAME"), DB_NAME, ""),
        *external_database_rows(data, b),
        (b("DUMP_FILE"), f"{backup_dir(data)}/dump/gitea.pgdump", ""),
        (b("STAGING_DIR"), backup_dir(data), "Restores unpack here and keep what they replace (pre-restore-*)."),
        (b("STATE_FILE"), STATE_FILE, ""),
        (b("METRICS_FILE"), metrics_file(data), "node_exporter's textfile collector reads it."),
        (b("CACHE_DIR"), CACHE_DIR, ""),
        (b("LOCK_FILE"), LOCK_FILE, ""),
        (b("PAUSE_MARKER"), PAUSE_MARKER, "Exists while a backup has Gitea stopped; gitea-backup resume (boot "
                                          "unit, next run) starts Gitea if a run died with it there."),
    ]
    if data.get("aws_region"):
        rows += [("AWS_REGION", data.get("aws_region"), ""), ("AWS_DEFAULT_REGION", data.get("aws_region"), "")]
    if data.get("s3_endpoint"):
        rows.append(("AWS_ENDPOINT_URL", data.get("s3_endpoint"), "Emulated AWS: one endpoint serves S3 and SSM."))
    if data.get("backup_aws_access_key_id"):
        rows.append(("AWS_SHARED_CREDENTIALS_FILE", CREDENTIALS_FILE,
                     "Emulated AWS only; production has no key file and uses the instance role."))
    return rows


def external_database_rows(data, b) -> list[tuple[str, str, str]]:
    """Where pg_dump/pg_restore reach the database: the db container (all empty), or the external
    one (database_endpoint) from the PostgreSQL image on the host's network, over verified TLS."""
    db = database(data)
    return [
        (b("DB_ENDPOINT"), db["address"] if db["external"] else "",
         "Empty: the stack's db container. Else host:port of the external PostgreSQL (RDS)."),
        (b("DB_IMAGE"), data.get("postgres_image") if db["external"] else "", "Its client tools, for the external one."),
        (b("DB_CA_FILE"), db["ca_file"] or "", "The CA its certificate must chain to (verify-full)."),
        (b("DB_PASSWORD_FILE"), f"{data.get('data_root')}/secrets/db_password" if db["external"] else "",
         "The file holding its password (root-only); never the password."),
    ]


def aws_credentials(data) -> str:
    """The shared credentials file (INI) of the emulated AWS's static keys, through configparser."""
    ini = configparser.RawConfigParser()
    ini["default"] = {"aws_access_key_id": data.get("backup_aws_access_key_id"),
                      "aws_secret_access_key": data.get("backup_aws_secret_access_key")}
    if any("\n" in value or value != value.strip() for value in ini["default"].values()):
        raise ValueError("aws-credentials: a static key holds a newline or surrounding space")
    text = StringIO()
    ini.write(text)
    return "# Managed by gitea-deploy (tasks/backup.py). Emulated AWS only: static keys from the inventory.\n" \
        + text.getvalue()


def configuration_directory(data) -> None:
    """/etc/gitea-deploy with the emulated AWS's static keys (root-only) when the inventory has them:
    every job on the host that calls AWS (the backup, the heartbeat) reads them there, so the first
    stage that needs them writes them and the others find them in place."""
    snapshot.directory(name="Configuration directory", path=CONFIG_DIR, mode="755")
    if data.backup_aws_access_key_id:
        snapshot.put(name="Static AWS keys (emulated AWS only)", src=StringIO(aws_credentials(data)),
                     dest=CREDENTIALS_FILE, mode="600")


def render_env(rows: list[tuple[str, str, str]], writer: str = "tasks/backup.py",
               readers: str = "gitea-backup and gitea-restore") -> str:
    """KEY=value lines, each value shell-quoted (gitea_backup.parse_env and sh read them alike); the
    header names the stage that writes the file and the programs that read it."""
    lines = [f"# Managed by gitea-deploy ({writer}): read by {readers}, which",
             "# have no defaults of their own. No secret values here: only the paths of the files that",
             "# hold them (root-only)."]
    for key, value, comment in rows:
        if not isinstance(value, str) or not re.match(r"^[A-Z][A-Z0-9_]*$", key) or "\n" in value:
            raise ValueError(f"backup.env: {key}={value!r} cannot be written")
        if comment:
            lines.append(f"# {comment}")
        lines.append(f"{key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def schedule_interval(schedule: str) -> int:
    """The longest gap, in seconds, between two runs of a cron schedule (settings.cron_schedule's
    grammar): what "the last backup is recent" is measured against (tests/host)."""
    nicknames = {"@hourly": 3600, "@daily": 86400, "@midnight": 86400, "@weekly": 7 * 86400,
                 "@monthly": 31 * 86400, "@yearly": 366 * 86400, "@annually": 366 * 86400}
    if schedule in nicknames:
        return nicknames[schedule]

    def expand(text: str, low: int, high: int) -> set[int]:
        values = set()
        for part in text.split(","):
            span, _, step = part.partition("/")
            first, last = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
            if step and span != "*" and "-" not in span:
                last = high
            values.update(range(first, last + 1, int(step or 1)))
        return values

    fields = schedule.split()
    minutes, hours, days, months = (expand(f, lo, hi) for f, lo, hi in
                                    zip(fields[:4], (0, 0, 1, 1), (59, 23, 31, 12), strict=True))
    weekdays = {d % 7 for d in expand(fields[4], 0, 7)}
    start = datetime.datetime(2025, 1, 1)  # any year; 400 days cover every monthly schedule twice
    any_day, any_weekday = fields[2] == "*", fields[4] == "*"
    runs = []
    for day in range(400):
        date = start + datetime.timedelta(days=day)
        if date.month not in months:
            continue
        in_month, in_week = date.day in days, (date.isoweekday() % 7) in weekdays
        # cron: with both day fields restricted, either one matching is enough
        if not ((in_month and in_week) if (any_day or any_weekday) else (in_month or in_week)):
            continue
        runs += [(day * 1440 + h * 60 + m) * 60 for h in sorted(hours) for m in sorted(minutes)]
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    return max(gaps) if gaps else 366 * 86400


class BackupRepositories(FactBase):
    """`gitea-backup status`: repository name -> initialised | missing | error: ...

    Only "missing" (or a job that cannot even say) makes the deploy initialise: an S3 that does
    not answer right now is the backup job's alert (its metrics), not a change to make."""

    def command(self) -> str:
        # No configuration yet (a first deploy asks before this stage wrote it): nothing to say.
        return f"[ ! -f {ENV_FILE} ] || gitea-backup status 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in output if " " in line)


class BackupPasswordInSsm(FactBase):
    """`gitea-backup password status`: same | missing | differs | no-file | disabled | error: ...
    (an SSM that does not answer is left to the host checks, which want "same")."""

    def command(self) -> str:
        return f"[ ! -f {ENV_FILE} ] || gitea-backup password status 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return output[-1].strip() if output else ""




def schedule_metrics(data) -> None:
    """The schedule's interval for the textfile collector, replaced atomically: written beside it
    under a name the collector ignores (not *.prom), then renamed, so a scrape never reads half a
    file (files.put copies over the old file in place). Skipped while the file already matches."""
    text = render_schedule_metrics(data.get("backup_schedule"))
    live = schedule_metrics_file(data)
    server.shell(
        name="Backup schedule's interval for alerting (textfile metric)",
        commands=[replace_file_command(text, live)],
        _if=snapshot.expect(live, snapshot.Want("file", snapshot._mode("644"), 0, 0, get_file_sha1(StringIO(text)))),
    )


def replace_file_command(text: str, live: str) -> str:
    """sh: `text` into `live` (mode 644) through a rename from a dot-name beside it."""
    directory, _, name = live.rpartition("/")
    tmp, q = f"{directory}/.{name}.tmp", shlex.quote
    return f"printf %s {q(text)} > {q(tmp)} && chmod 644 {q(tmp)} && mv -f {q(tmp)} {q(live)}"


@deploy("Backups")
def backup():
    data = host.data
    ssm = ssm_parameter(data)
    snapshot.service(name="cron running", service="cron", running=True, enabled=True)

    # gitea-backup and gitea-restore themselves: installed by tasks/updates.py, before the stack.
    password = password_file(data)
    configuration_directory(data)
    env = render_env(backup_env(data))
    snapshot.put(name="Backup configuration", src=StringIO(env), dest=ENV_FILE, mode="644")
    # The dump and restores' staging live on the data volume, next to what they copy.
    for path in (backup_dir(data), f"{backup_dir(data)}/dump", CACHE_DIR):
        snapshot.directory(name=f"Directory {path}", path=path, user="root", group="root", mode="700")
    snapshot.directory(name="Backup job's state", path=STATE_DIR, user="root", group="root", mode="750")
    # At boot, before anyone has to notice: Gitea started again if a backup died while it was
    # paused (`compose stop` is not undone by restart: unless-stopped).
    unit = snapshot.put(name="Boot unit: resume an interrupted pause", src=str(REPO / "files/backup" / RESUME_UNIT),
                        dest=f"/etc/systemd/system/{RESUME_UNIT}", mode="644")
    systemd.daemon_reload(name="Reload systemd units (backup)", _if=unit.did_change)
    snapshot.service(name=f"Enable {RESUME_UNIT}", service=RESUME_UNIT, running=None, enabled=True)

    # The restic password: a replacement host takes its predecessor's from SSM, else one is made.
    if ssm:
        server.shell(
            name="Take the restic password from SSM (replacement host)",
            commands=["gitea-backup password fetch"],
            _if=snapshot.missing(password),
        )
    generate_once(password)
    snapshot.file(name="Mode of restic_password", path=password, user="root", group="root", mode="600")

    repositories = snapshot.system(BackupRepositories)
    server.shell(name="Initialise the restic repositories", commands=["gitea-backup init"],
                 _if=lambda: not (states := repositories()) or "missing" in states.values())
    # Until the first run, the metrics say "never" (0), which alerting sees as a missing backup.
    server.shell(
        name="Backup metrics before the first run",
        commands=["gitea-backup metrics"],
        _if=snapshot.missing(metrics_file(data)),
    )
    snapshot.template(name="Backup schedule (cron)", src=template("backup/gitea-backup.j2"),
                      dest="/etc/cron.d/gitea-backup", mode="644")
    schedule_metrics(data)
    if ssm:
        in_ssm = snapshot.system(BackupPasswordInSsm)
        # Last, so that a failure here (a role without ssm:PutParameter, a differing value already in
        # SSM, which is never overwritten) stops the deploy with the reason while backups already run.
        server.shell(
            name="Keep the restic password in SSM",
            commands=["gitea-backup password publish"],
            _if=lambda: in_ssm() in ("missing", "differs", ""),
        )
