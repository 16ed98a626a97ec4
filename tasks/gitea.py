"""The Compose stack: PostgreSQL and Gitea (and Grafana, grafana_enabled), started healthy, plus
the first administrator."""

from __future__ import annotations

import ipaddress
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.docker import DockerImage
from pyinfra.operations import server

from tasks import grafana, snapshot
from tasks.common import LoginAccounts, owned_directory, template
from tasks.secrets import gitea_secret_names, layout, secrets_dir
from tasks.settings import effective, gitea_config


def compose_file(data) -> str:
    return f"{data.get('data_root')}/compose.yaml"


def database(data) -> dict:
    """Where Gitea's PostgreSQL is: the stack's `db` service, or an external one (RDS) over TLS
    verified against database_ca_bundle. The template, the backup job and the host checks read it."""
    endpoint = data.get("database_endpoint")
    return {
        "external": bool(endpoint),
        "address": endpoint or "db:5432",
        "ssl_mode": "verify-full" if endpoint else "disable",  # the local one is on a private network
        "ca_file": f"{data.get('data_root')}/database-ca.pem" if endpoint else None,
        "ca_in_container": "/etc/ssl/gitea-deploy/database-ca.pem",
    }


def pg_version_file(data) -> str:
    """PostgreSQL's own record of the data directory's major version (tasks/updates.py reads it)."""
    return f"{data.get('data_root')}/postgres/PG_VERSION"


def db_address(data) -> str:
    """The db service's fixed address on the Compose network: the subnet's last host address (Docker
    gives the others from the bottom; validation keeps the subnet /28 or larger). The host routes to
    the bridge, so the PostgreSQL exporter reaches the unpublished database here (tasks/monitoring.py)."""
    return str(ipaddress.ip_network(data.get("compose_subnet"))[-2])


# `docker compose up --wait`'s bound: pulling is not in it, the wait for healthy containers is.
STACK_WAIT = 300


def mailer(data) -> dict[tuple[str, str], str]:
    """[mailer] from the mailer_* settings: off while mailer_host is None. The port's and the
    sender's defaults follow other settings; the table computes them (settings.effective)."""
    if not data.get("mailer_host"):
        return {("mailer", "ENABLED"): "false"}
    found = {
        ("mailer", "ENABLED"): "true",
        ("mailer", "PROTOCOL"): data.get("mailer_protocol"),
        ("mailer", "SMTP_ADDR"): data.get("mailer_host"),
        ("mailer", "SMTP_PORT"): str(effective(data, "mailer_port")),
        ("mailer", "FROM"): effective(data, "mailer_from"),
    }
    if data.get("mailer_user"):
        found[("mailer", "USER")] = data.get("mailer_user")
        found[("mailer", "PASSWD__FILE")] = "/run/secrets/mailer_password"
    return found


def deploy_config(data) -> dict[tuple[str, str], str]:
    """The app.ini values the deploy sets, (section, KEY or KEY__FILE) -> value. The keys of
    gitea_config.OWNED among them are the deploy's alone; the others are defaults gitea_config may
    override ([server] LFS_START_SERVER, [security] MIN_PASSWORD_LENGTH, [session] PROVIDER)."""
    db = database(data)
    bool_text = gitea_config.text
    return {
        # The root section is "" (GITEA____APP_NAME): GITEA__DEFAULT__ would write a [default] section
        # that Gitea never reads, and the site title would stay Gitea's own.
        ("", "APP_NAME"): data.get("gitea_app_name"),
        ("database", "DB_TYPE"): "postgres",
        ("database", "HOST"): db["address"],
        ("database", "SSL_MODE"): db["ssl_mode"],
        ("database", "NAME"): "gitea",
        ("database", "USER"): "gitea",
        ("database", "PASSWD__FILE"): "/run/secrets/db_password",
        ("server", "DOMAIN"): data.get("gitea_domain"),
        ("server", "ROOT_URL"): f"https://{data.get('gitea_domain')}/",
        # Since 1.26 Gitea makes links from the request's Host header by default ("auto"); nginx is the
        # default server for any name and passes Host and X-Forwarded-Proto, so "auto" or "legacy" would
        # put a client's Host into links. "never": always ROOT_URL (go-gitea/gitea#36785).
        ("server", "PUBLIC_URL_DETECTION"): "never",
        ("server", "HTTP_PORT"): "3000",
        ("server", "SSH_DOMAIN"): data.get("gitea_domain"),
        ("server", "SSH_PORT"): str(data.get("git_ssh_port")),
        ("server", "SSH_LISTEN_PORT"): "2222",
        ("server", "START_SSH_SERVER"): "true",
        ("server", "LFS_START_SERVER"): "true",
        ("server", "LFS_JWT_SECRET__FILE"): "/run/secrets/lfs_jwt_secret",
        ("security", "INSTALL_LOCK"): "true",
        ("security", "SECRET_KEY__FILE"): "/run/secrets/secret_key",
        ("security", "INTERNAL_TOKEN__FILE"): "/run/secrets/internal_token",
        ("security", "MIN_PASSWORD_LENGTH"): "12",
        # Explicit, never Gitea's default (in a container it trusted every address, go-gitea/gitea#14959):
        # nginx reaches Gitea from loopback or the Compose network's gateway, nobody else may.
        ("security", "REVERSE_PROXY_TRUSTED_PROXIES"): f"127.0.0.0/8,::1/128,{data.get('compose_subnet')}",
        ("oauth2", "JWT_SECRET__FILE"): "/run/secrets/jwt_secret",
        ("service", "DISABLE_REGISTRATION"): bool_text(bool(data.get("gitea_disable_registration"))),
        ("service", "REQUIRE_SIGNIN_VIEW"): bool_text(bool(data.get("gitea_require_signin_view"))),
        ("session", "PROVIDER"): "db",
        ("metrics", "ENABLED"): "true",
        ("metrics", "TOKEN__FILE"): "/run/secrets/metrics_token",
        **mailer(data),
    }


def environment(data) -> dict[str, str]:
    """Gitea's GITEA__* variables: the deploy's own settings with the operator's gitea_config laid
    over them. An operator key replaces the deploy's value of the same app.ini key (inline or
    __FILE); a key the deploy owns cannot be replaced (validation refuses it; this refuses it again)."""
    operator = gitea_config.render(data)
    own: dict[tuple[str, str], str] = {}
    for (section, key), value in deploy_config(data).items():
        base, file = (key[:-len(gitea_config.FILE_SUFFIX)], True) if key.endswith(gitea_config.FILE_SUFFIX) \
            else (key, False)
        if (section, base) in operator.keys:
            if gitea_config.owned(section, base):
                raise ValueError(f"gitea_config.{section}.{base} is set by the deploy")
            continue
        own[gitea_config.variable(section, base, file)] = value
    return {**own, **operator.environment}


def contexts(data, images: dict[str, str] | None = None) -> dict[str, dict]:
    """The compose template's context beyond host data (the unit tests render with it too).
    `images`: service -> image, as tasks/updates.py decided (default: the inventory's pins)."""
    from tasks.updates import wanted_images  # tasks.updates imports tasks.backup, which imports this

    return {"gitea/compose.yaml.j2": {
        "images": images or wanted_images(data),
        "secrets_dir": secrets_dir(data),
        "secret_names": sorted(layout(data)),
        "gitea_secret_names": gitea_secret_names(data),
        "grafana": grafana.context(data),
        "database": database(data),
        "db_address": db_address(data),
        "gitea_environment": environment(data),
    }}


def compose(args: str) -> str:
    """`docker compose` on the stack's file (quoted); `args` is shell text the caller quoted."""
    return f"docker compose -f {shlex.quote(compose_file(host.data))} {args}"


def create_admin_command(compose_cmd: str, username: str, email: str, password_file: str) -> str:
    """Create the administrator with a random password and keep that password in `password_file`.

    `compose_cmd` is compose("") of the stack. Every value is shell-quoted: an address such as
    o'brien@example.com arrives as one argument. Gitea prints the password once, so its output goes
    to a root-only capture file (`capture_file()`) before anything parses it: if the parse or the
    write dies, the next deploy finds the capture and parses it again instead of losing the password.
    """
    create = compose_cmd + shlex.join([
        "exec", "-T", "gitea", "gitea", "admin", "user", "create", "--username", username, "--email", email,
        "--admin", "--random-password", "--must-change-password",
    ])
    target, capture = shlex.quote(password_file), shlex.quote(capture_file(password_file))
    partial = shlex.quote(f"{password_file}.partial")
    return (
        "set -o pipefail; umask 077; "
        # The shell opens the capture before Gitea runs: no capture, no user created.
        f"if [ ! -s {capture} ]; then {create} > {capture} 2>&1 "
        f"|| {{ rc=$?; cat {capture} >&2; rm -f {capture}; exit $rc; }}; fi; "
        f"sed -n \"s/^generated random password is '\\(.*\\)'$/\\1/p\" {capture} > {partial} "
        f"&& test -s {partial} && mv -f {partial} {target} && rm -f {capture}"
    )


def capture_file(password_file: str) -> str:
    return f"{password_file}.capture"


def after_backup_pause(command: str) -> str:
    """`command`, once no backup has Gitea stopped (tasks/backup.py pause_wait, bounded): what asks
    whether Gitea runs, and what starts it, waits the pause out, so neither a redeploy nor the
    drift report takes a paused Gitea for a stopped one and starts it under the backup's feet."""
    from tasks.backup import pause_wait  # tasks.backup imports this module

    return f"{pause_wait()}; {command}"


class StaleServices(FactBase):
    """Compose services whose running container is not what the compose file on disk defines:
    no running container (stopped, crashed, never created), or one created from another
    definition. Compose stamps each container with `com.docker.compose.config-hash`, the hash
    `docker compose config --hash` computes from the file (they agree in Compose 2.26, Debian
    13's); comparing the two asks the host what runs, not whether this run changed the file, so a
    deploy that died between writing the file and `up` is finished by the next one. Containers of
    services the file no longer has are stale too (`up --remove-orphans` removes them)."""

    def command(self, config_cmd: str, ps_cmd: str) -> str:
        labels = ('have {{index .Config.Labels "com.docker.compose.service"}} '
                  '{{index .Config.Labels "com.docker.compose.config-hash"}}')
        return after_backup_pause(
            f"want=$({config_cmd} 2>&1) && printf '%s\\n' \"$want\" | sed 's/^/want /' "
            f"|| echo '! compose config failed'; "
            f"ids=$({ps_cmd} 2>/dev/null); "
            f"[ -z \"$ids\" ] || docker inspect --format {shlex.quote(labels)} $ids 2>/dev/null; true")

    def process(self, output: list[str]) -> list[str]:
        want: dict[str, str] = {}
        have: dict[str, list[str]] = {}
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            if kind == "!":  # a file Compose rejects: `up` runs and fails with Compose's message
                return ["(the compose file does not load)"]
            service, _, digest = rest.partition(" ")
            if kind == "want":
                want[service] = digest
            elif kind == "have":
                have.setdefault(service, []).append(digest)
        if not want:
            return ["(no services in the compose file)"]
        stale = [s for s, digest in want.items() if have.get(s) != [digest]]
        return sorted(stale + [s for s in have if s not in want])


class GiteaAdmins(FactBase):
    """Usernames of Gitea's administrators, asked through Gitea's own CLI; snapshot.Unanswered when
    it cannot say (the exec failed, or printed no table), never an empty list: that would read as
    "no administrator" on a host that has one."""

    @staticmethod
    def default() -> snapshot.Unanswered:
        return snapshot.Unanswered("Gitea's CLI printed nothing")

    def command(self, compose_cmd: str) -> str:
        # Its stdout is the table; on failure the exit status and the end of its stderr (Compose's or
        # Gitea's reason) are the answer, marked "!". The command itself always succeeds.
        return after_backup_pause(
            f"e=$(mktemp) || e=/dev/null; if out=$({compose_cmd} 2>\"$e\"); then printf '%s\\n' \"$out\"; "
            f"else printf '! exit %s: %s\\n' \"$?\" \"$(tail -n 3 \"$e\" | tr '\\n' ' ')\"; fi; "
            f"[ \"$e\" = /dev/null ] || rm -f \"$e\"")

    def process(self, output: list[str]) -> list[str] | snapshot.Unanswered:
        if output[0].startswith("! "):
            return snapshot.Unanswered(output[0][2:].strip())
        # Gitea's table, aligned with spaces: ID, Username, Email, IsActive (IsAdmin, 2FA without --admin)
        if output[0].split()[:2] != ["ID", "Username"]:
            return snapshot.Unanswered(f"not Gitea's user table: {output[0].strip()[:80]!r}")
        rows = [line.split() for line in output[1:]]
        return [row[1] for row in rows if len(row) > 1]


def admin_needed(admin: str, capture_left, admins):
    """The `_if` of "Create the first administrator": a capture left by an interrupted run is
    finished; else the account is created while Gitea's CLI does not list it. An operator who
    deleted the password file after reading it (the runbook allows it) gets no new one.

    When Gitea cannot be asked (the stack was just started healthy, so that is an error) the op
    runs: `gitea admin user create` then fails with Compose's or Gitea's own message, or makes the
    account a fresh host lacks (Gitea refuses a second one of a name, so nothing is overwritten).
    The drift report says it cannot judge the op, and why (snapshot.undecided)."""

    def needed() -> bool:
        if capture_left():
            return True
        found = admins()
        if not isinstance(found, list):
            why = found.reason if isinstance(found, snapshot.Unanswered) else f"the answer was {found!r}"
            return snapshot.undecided(f"Gitea's administrators could not be listed ({why})")
        return admin not in found

    return needed


@deploy("Gitea stack")
def gitea():
    root = host.data.data_root
    uid, pg_uid = host.data.gitea_uid, host.data.postgres_uid
    accounts = host.get_fact(LoginAccounts, uids=(int(uid), int(pg_uid)))
    for key in ("gitea_uid", "postgres_uid"):
        account = accounts.get(int(host.data.get(key)))
        if account:
            raise DeployError(f"{key} {host.data.get(key)} is the host's login account {account.split(':')[0]}: "
                              f"it would own the container's files (app.ini, the database); set another {key}")
    # Recursive: hosts deployed before gitea_uid left the image's 1000 (admin's uid) hold files of it.
    owned_directory(f"{root}/gitea", uid, uid, "750", recursive=True)
    owned_directory(f"{root}/gitea/data", uid, uid, "750")
    # app.ini ends up holding values read from the __FILE secrets: keep it owner-only.
    owned_directory(f"{root}/gitea/config", uid, uid, "700")
    db = database(host.data)
    if db["external"]:
        # Not a secret: the CA Gitea verifies the database's certificate against.
        snapshot.put(name="External database's CA", src=StringIO(host.data.database_ca_bundle),
                     dest=db["ca_file"], mode="644")
        # No db service pulls it: the backup and the restore run pg_dump/pg_restore from this image.
        image = shlex.quote(host.data.postgres_image)
        server.shell(name="PostgreSQL client image (backup and restore)", commands=[f"docker pull -q {image}"],
                     _if=lambda: not host.get_fact(DockerImage, object_id=image))
    else:
        owned_directory(f"{root}/postgres", pg_uid, pg_uid, "700")

    grafana.grafana_files()  # before the compose file, which carries their digest

    # Which images: the inventory's pins, less what gitea-update found broken; refused here (before
    # any operation has run) when they would downgrade Gitea or change PostgreSQL's major.
    from tasks import updates  # it imports tasks.backup, which imports this module

    plan = updates.host_plan()
    context = contexts(host.data, plan.images)["gitea/compose.yaml.j2"]
    if plan.update:
        # Another image than a container was made from: never a plain `up`. The file goes beside the
        # live one, and gitea-update takes it through backup, pull, up, checks or rollback.
        snapshot.template(name="Compose file for the update", src=template("gitea/compose.yaml.j2"),
                          dest=updates.next_compose(host.data), mode="644", **context)
        server.shell(
            name=f"Update the stack to {', '.join(sorted(set(plan.images.values())))} (gitea-update: pre-update "
                 f"backup, health checks, rollback on failure)",
            commands=[after_backup_pause("gitea-update apply")],
        )
    else:
        snapshot.template(name="Compose file", src=template("gitea/compose.yaml.j2"), dest=compose_file(host.data),
                          mode="644", **context)
        # `up` recreates only the services whose definition changed; --wait returns once both are
        # healthy (Gitea's /api/healthz passes), so the admin step below can talk to it. It runs
        # whenever a service's running container differs from the file (StaleServices), however the
        # difference came about: this run's change, an earlier run killed before `up`, a stopped
        # container.
        stale = snapshot.system(StaleServices, config_cmd=compose("config --hash '*'"),
                                ps_cmd=compose("ps -q --status running"))
        server.shell(
            # Named with what it waits for and how long at most: the longest step of a first deploy.
            name=f"Start the stack (pulls missing images, then waits up to {STACK_WAIT} s for healthy)",
            commands=[after_backup_pause(compose(f"up -d --wait --wait-timeout {STACK_WAIT} --remove-orphans"))],
            _if=lambda: bool(stale()),
        )

    admin = host.data.gitea_admin_username
    password_file = f"{secrets_dir(host.data)}/admin_password"
    capture_left = snapshot.exists(capture_file(password_file))
    admins = snapshot.system(GiteaAdmins, compose_cmd=compose("exec -T gitea gitea admin user list --admin"))
    # --random-password keeps the password off every command line; it is taken from the output
    # into a root-only file that the runbook tells the operator to read once.
    server.shell(
        name=f"Create the first administrator {admin}",
        commands=[create_admin_command(compose(""), admin, host.data.gitea_admin_email, password_file)],
        _if=admin_needed(admin, capture_left, admins),
    )
