"""Secrets generated once on the host, never regenerated and never in the repo.

They live in one directory under the data root (so backups and a replacement instance keep them:
losing SECRET_KEY kills every 2FA secret). Containers read them through `__FILE` variables and
POSTGRES_PASSWORD_FILE, so no value shows in `docker inspect`, the compose file or a process list.
"""

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import snapshot
from tasks.common import chown
from tasks.grafana import SECRET as GRAFANA_SECRET

# name -> (owner, group, mode). Ownership is by container uid: PostgreSQL reads db_password as
# its owner, Gitea (gitea_uid, its gid the same) through the group bit.
LAYOUT = {
    "db_password": ("postgres_uid", "gitea_uid", "440"),
    "secret_key": ("gitea_uid", "gitea_uid", "400"),
    "internal_token": ("gitea_uid", "gitea_uid", "400"),
    "jwt_secret": ("gitea_uid", "gitea_uid", "400"),
    "lfs_jwt_secret": ("gitea_uid", "gitea_uid", "400"),
    "metrics_token": ("gitea_uid", "gitea_uid", "400"),
}


GITEA_ONLY = ("gitea_uid", "gitea_uid", "400")


def layout(data) -> dict[str, tuple[str, str, str]]:
    """The secrets of this host: LAYOUT; with an external database (database_endpoint) no PostgreSQL
    container reads db_password, so Gitea owns it; with mailer_user the SMTP password; and the files
    the operator's gitea_config reads (gitea_secrets); with grafana_enabled Grafana's admin password."""
    found = dict(LAYOUT)
    if data.get("database_endpoint"):
        found["db_password"] = GITEA_ONLY
    if data.get("mailer_user"):
        found["mailer_password"] = GITEA_ONLY
    for name in sorted(data.get("gitea_secrets") or {}):
        found[name] = GITEA_ONLY
    if data.get("grafana_enabled"):  # Grafana's own, mounted in its container only (gitea_secret_names)
        found[GRAFANA_SECRET] = ("grafana_uid", "grafana_uid", "400")
    return found


def gitea_secret_names(data) -> list[str]:
    """The secrets mounted into the Gitea container: all but Grafana's."""
    return sorted(name for name in layout(data) if name != GRAFANA_SECRET)


def operator_supplied(data) -> dict[str, str]:
    """The secrets only the operator has (name -> what to put there): the deploy never invents them,
    it stops until the file exists (require_operator_secret). Every other secret is generated once."""
    found = {}
    if data.get("database_endpoint"):
        found["db_password"] = ("the external database's password (RDS: the master user secret's password; "
                                "docs/runbooks/deploy.md, An external database)")
    if data.get("mailer_user"):
        found["mailer_password"] = (f"the SMTP password of mailer_user {data.get('mailer_user')} "
                                    "(docs/runbooks/configure.md, Mail)")
    for name, source in sorted((data.get("gitea_secrets") or {}).items()):
        if source == "operator":
            found[name] = f"the value gitea_config reads from {name} (docs/runbooks/configure.md, Secrets)"
    return found


def secrets_dir(data) -> str:
    return f"{data.get('data_root')}/secrets"


def generate_once(path: str) -> None:
    """A random secret in `path` (owner-only), made only while the file does not exist."""
    target, partial = shlex.quote(path), shlex.quote(f"{path}.partial")
    server.shell(
        name=f"Generate {path.rsplit('/', 1)[-1]} once",
        # 32 random bytes, base64url without padding: the format Gitea's JWT secrets need. Written
        # beside the target, checked non-empty, then renamed: a killed deploy leaves the old file or
        # a whole new one, never a truncated secret.
        commands=[f"set -e; umask 077; openssl rand 32 | basenc --base64url | tr -d '=\\n' > {partial}; "
                  f"test -s {partial}; mv -f {partial} {target}"],
        # Evaluated when the op runs: an earlier op (e.g. a fetch from SSM) may have written it.
        _if=snapshot.missing_or_empty(path),
    )


def require_operator_secret(path: str, what: str) -> None:
    """Stop the deploy, saying what to put where, while a secret only the operator has is missing."""
    message = f"{path} is missing or empty: put {what} there (root-only) and deploy again"
    server.shell(name=f"{path.rsplit('/', 1)[-1]} supplied by the operator",
                 commands=[f"echo {shlex.quote(message)} >&2; exit 1"], _if=snapshot.missing_or_empty(path))


@deploy("Secrets")
def secrets():
    snapshot.directory(name="Data root", path=host.data.data_root, user="root", group="root", mode="755")
    snapshot.directory(name="Secrets directory", path=secrets_dir(host.data), user="root", group="root", mode="700")

    supplied = operator_supplied(host.data)
    for name, (owner, group, mode) in layout(host.data).items():
        path = f"{secrets_dir(host.data)}/{name}"
        if name in supplied:
            require_operator_secret(path, supplied[name])
        else:
            generate_once(path)
        snapshot.file(name=f"Mode of {name}", path=path, mode=mode)
        chown(path, host.data.get(owner), host.data.get(group))
