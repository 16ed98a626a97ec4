"""Backups: restic to S3 (and a local repository on the data volume), run hourly by cron.

The job itself is files/backup/ (gitea-backup, gitea-restore and their module); this stage
installs it with its configuration, the restic password (generated once, or taken from SSM on a
replacement host, and kept in SSM) and initialised repositories. docs/concepts/backup.md explains
the design, docs/runbooks/restore.md the restores.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from tasks import settings
from tasks.common import REPO, apt_install, template
from tasks.gitea import compose_file
from tasks.secrets import generate_once, secrets_dir

LIB_DIR = "/usr/local/lib/gitea-deploy"
CONFIG_DIR = "/etc/gitea-deploy"
CREDENTIALS_FILE = f"{CONFIG_DIR}/aws-credentials"
MODULES = ("gitea_backup.py", "gitea_restore.py")
PROGRAMS = ("gitea-backup", "gitea-restore")


def s3_repository(data) -> str | None:
    """restic's URL of the S3 repository: the regional endpoint, or the emulated one in the lab."""
    if not data.get("backup_s3_bucket"):
        return None
    endpoint = (data.get("s3_endpoint") or f"https://s3.{data.get('aws_region')}.amazonaws.com").rstrip("/")
    return f"s3:{endpoint}/{data.get('backup_s3_bucket')}/{data.get('backup_s3_prefix')}"


def ssm_parameter(data) -> str | None:
    path = data.get("ssm_parameter_path")
    return f"{path}/restic_password" if path else None


class BackupRepositories(FactBase):
    """`gitea-backup status`: repository name -> initialised | missing | error: ...

    Only "missing" (or a job that cannot even say) makes the deploy initialise: an S3 that does
    not answer right now is the backup job's alert (its metrics), not a change to make."""

    def command(self) -> str:
        return "gitea-backup status 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in output if " " in line)


class BackupPasswordInSsm(FactBase):
    """`gitea-backup password status`: same | missing | differs | no-file | disabled | error: ...
    (an SSM that does not answer is left to the host checks, which want "same")."""

    def command(self) -> str:
        return "gitea-backup password status 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return output[-1].strip() if output else ""


def _repositories_missing() -> bool:
    states = host.get_fact(BackupRepositories)
    return not states or "missing" in states.values()


@deploy("Backups", data_defaults={**settings.defaults("backup"), **settings.defaults("node_exporter")})
def backup():
    data = host.data
    ssm = ssm_parameter(data)
    # boto3 only talks to SSM; cron runs the job. No recommends: cron's would be a mail server.
    apt_install(["restic", "cron", *(["python3-boto3"] if ssm else [])], no_recommends=True)
    systemd.service(name="cron running", service="cron", running=True, enabled=True)

    files.directory(name="Backup job's code", path=LIB_DIR, mode="755")
    for name in MODULES:
        files.put(name=f"Install {name}", src=str(REPO / "files/backup" / name), dest=f"{LIB_DIR}/{name}", mode="644")
    for name in PROGRAMS:
        files.put(name=f"Install {name}", src=str(REPO / "files/backup" / name), dest=f"/usr/local/sbin/{name}",
                  mode="755")

    password = f"{secrets_dir()}/restic_password"
    files.directory(name="Backup configuration directory", path=CONFIG_DIR, mode="755")
    credentials = bool(data.backup_aws_access_key_id)
    if credentials:
        files.template(name="Static AWS keys (emulated AWS only)", src=template("backup/aws-credentials.j2"),
                       dest=CREDENTIALS_FILE, mode="600")
    files.template(
        name="Backup configuration",
        src=template("backup/backup.env.j2"),
        dest=f"{CONFIG_DIR}/backup.env",
        mode="644",
        compose_file=compose_file(),
        password_file=password,
        s3_repository=s3_repository(data),
        ssm_parameter=ssm,
        credentials_file=CREDENTIALS_FILE if credentials else None,
    )
    # The dump and restores' staging live on the data volume, next to what they copy.
    for path in (f"{data.data_root}/backup", f"{data.data_root}/backup/dump", "/var/cache/gitea-backup"):
        files.directory(name=f"Directory {path}", path=path, user="root", group="root", mode="700")
    files.directory(name="Backup job's state", path="/var/lib/gitea-backup", user="root", group="root", mode="750")

    # The restic password: a replacement host takes its predecessor's from SSM, else one is made.
    if ssm:
        server.shell(
            name="Take the restic password from SSM (replacement host)",
            commands=["gitea-backup password fetch"],
            _if=lambda: not host.get_fact(File, path=password),
        )
    generate_once(password)
    files.file(name="Mode of restic_password", path=password, user="root", group="root", mode="600")

    server.shell(name="Initialise the restic repositories", commands=["gitea-backup init"],
                 _if=_repositories_missing)
    # Until the first run, the metrics say "never" (0), which alerting sees as a missing backup.
    server.shell(
        name="Backup metrics before the first run",
        commands=["gitea-backup metrics"],
        _if=lambda: not host.get_fact(File, path=f"{data.node_exporter_textfile_dir}/gitea_backup.prom"),
    )
    files.template(name="Backup schedule (cron)", src=template("backup/gitea-backup.j2"),
                   dest="/etc/cron.d/gitea-backup", mode="644")
    if ssm:
        # Last, so that a failure here (a role without ssm:PutParameter, a differing value already in
        # SSM, which is never overwritten) stops the deploy with the reason while backups already run.
        server.shell(
            name="Keep the restic password in SSM",
            commands=["gitea-backup password publish"],
            _if=lambda: host.get_fact(BackupPasswordInSsm) in ("missing", "differs", ""),
        )
