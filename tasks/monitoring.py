"""Monitoring: Prometheus and the exporters from Debian's packages, every one on 127.0.0.1 only.

What runs, and why (docs/concepts/monitoring.md):

    node_exporter      the host (tasks/node_exporter.py), + systemd and textfile collectors
    postgres exporter  PostgreSQL, as the least-privilege role gitea_monitor (pg_monitor), through
                       the Compose network: the database stays unpublished
    nginx exporter     nginx's stub_status (a loopback-only server, templates/nginx/)
    blackbox exporter  the HTTPS probe of https://<gitea_domain>/api/healthz (certificate verified,
                       expiry exported) and the git SSH banner probe
    Prometheus         scrapes all of them and Gitea's /metrics (with a copy of its token)
    container metrics  a timer writing the stack's restart counts and running state (textfile)

Every listen address is set in a unit drop-in written before the packages are installed
(before_install, called by tasks/packages.py), so no postinst ever starts a daemon on another
address. Every config file is serialized from a dict (prometheus_config, blackbox_config), staged,
checked by the daemon's own validator and only then moved into place; daemons are restarted or
reloaded until they run what is on disk (tasks/common.py). Alert rules, Alertmanager and Grafana
are other stages' (rule files go to RULES_DIR).
"""

from __future__ import annotations

import shlex
from io import StringIO

import yaml
from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import server

from tasks import REPO, snapshot
from tasks.common import apply_when_stale, install_validated, staged_template, template
from tasks.gitea import compose, database, db_address
from tasks.secrets import generate_once, secrets_dir
from tasks.settings.checks import duration_seconds

PROMETHEUS = "prometheus"
POSTGRES_EXPORTER = "prometheus-postgres-exporter"
NGINX_EXPORTER = "prometheus-nginx-exporter"
BLACKBOX_EXPORTER = "prometheus-blackbox-exporter"
APT_COLLECTOR = "prometheus-node-exporter-apt"

CONFIG_FILE = "/etc/prometheus/prometheus.yml"  # Debian's path: its own example is replaced
STORAGE_PATH = "/var/lib/prometheus/metrics2/"  # Debian's: the package creates it for its user
RULES_DIR = "/etc/prometheus/rules"
BLACKBOX_CONFIG = "/etc/prometheus/blackbox.yml"
GITEA_DEPLOY_DIR = "/etc/prometheus/gitea-deploy"
BLACKBOX_HOSTS = f"{GITEA_DEPLOY_DIR}/blackbox-hosts"
PROBE_CA_FILE = f"{GITEA_DEPLOY_DIR}/probe-ca.pem"
# Secrets Prometheus and the exporters (user prometheus) read: root-owned, group prometheus, 0440.
SECRETS_DIR = "/etc/prometheus/secrets"
TOKEN_FILE = f"{SECRETS_DIR}/gitea_metrics_token"
MONITOR_PASSWORD_FILE = f"{SECRETS_DIR}/postgres_exporter_password"
MONITOR_ROLE = "gitea_monitor"
MONITOR_SECRET = "monitor_db_password"  # in the secrets directory, backed up with the others

METRICS_PROGRAM = "/usr/local/sbin/gitea-deploy-container-metrics"
METRICS_UNIT = "gitea-deploy-container-metrics"

HTTPS_MODULE = "https_healthz"
SSH_MODULE = "git_ssh_banner"
GITEA_MIN_INTERVAL = 60  # seconds: Gitea's /metrics counts rows in the database at every scrape


def drop_in(service: str) -> str:
    return f"/etc/systemd/system/{service}.service.d/gitea-deploy.conf"


def packages(data) -> list[str]:
    """promtool comes with prometheus; dbus lets node_exporter's systemd collector ask systemd (no
    recommends are installed, and the base image has no bus); the collectors package brings the
    apt/reboot-required timer. No postgres exporter with an external database (docs)."""
    external = database(data)["external"]
    return [PROMETHEUS, *([] if external else [POSTGRES_EXPORTER]), NGINX_EXPORTER, BLACKBOX_EXPORTER,
            "prometheus-node-exporter-collectors", "dbus"]


def exporters(data) -> list[str]:
    return [s for s in (POSTGRES_EXPORTER, NGINX_EXPORTER, BLACKBOX_EXPORTER) if s in packages(data)]


def contexts(data) -> dict[str, dict]:
    """Each template's context beyond host data (the unit tests render with it too)."""
    return {
        "monitoring/prometheus.conf.j2": {"config_file": CONFIG_FILE, "storage_path": STORAGE_PATH},
        "monitoring/postgres-exporter.conf.j2": {"db_address": db_address(data), "role": MONITOR_ROLE,
                                                 "password_file": MONITOR_PASSWORD_FILE},
        "monitoring/nginx-exporter.conf.j2": {},
        "monitoring/blackbox-exporter.conf.j2": {"hosts_file": BLACKBOX_HOSTS, "config_file": BLACKBOX_CONFIG},
        "monitoring/blackbox-hosts.j2": {},
        "monitoring/node-exporter-apt.conf.j2": {},
        "monitoring/gitea-deploy-container-metrics.service.j2": {},
    }


DROP_INS = {
    PROMETHEUS: "monitoring/prometheus.conf.j2",
    POSTGRES_EXPORTER: "monitoring/postgres-exporter.conf.j2",
    NGINX_EXPORTER: "monitoring/nginx-exporter.conf.j2",
    BLACKBOX_EXPORTER: "monitoring/blackbox-exporter.conf.j2",
    APT_COLLECTOR: "monitoring/node-exporter-apt.conf.j2",
}


def _template(name: str, src: str, dest: str, mode: str = "644"):
    return snapshot.template(name=name, src=template(src), dest=dest, mode=mode, **contexts(host.data)[src])


def before_install() -> None:
    """Run by the packages stage before the packages: each postinst reloads systemd and starts its
    service, which then starts on loopback, with what it needs, from the first moment."""
    # BindReadOnlyPaths of the blackbox unit needs its source before the unit first starts.
    _template("The blackbox exporter's own /etc/hosts", "monitoring/blackbox-hosts.j2", BLACKBOX_HOSTS)
    for service, src in DROP_INS.items():
        if service in (*exporters(host.data), PROMETHEUS, APT_COLLECTOR):
            _template(f"{service} unit drop-in (loopback only)", src, drop_in(service))


# --- the configurations, as dicts ----------------------------------------------------------------


def _local(port: int) -> str:
    return f"127.0.0.1:{int(port)}"


def _static(job: str, port: int, **extra) -> dict:
    return {"job_name": job, "static_configs": [{"targets": [_local(port)]}], **extra}


def probe_targets(data) -> dict[str, tuple[str, str]]:
    """job -> (blackbox module, target): through the public name, which the blackbox exporter
    resolves to this host (its own /etc/hosts, templates/monitoring/blackbox-exporter.conf.j2)."""
    domain = data.get("gitea_domain")
    return {
        "blackbox_https": (HTTPS_MODULE, f"https://{domain}/api/healthz"),
        "blackbox_git_ssh": (SSH_MODULE, f"{domain}:{int(data.get('git_ssh_port'))}"),
    }


def _probe(job: str, module: str, target: str, blackbox_port: int) -> dict:
    # The target becomes the probe's ?target= and the series' instance; the scrape goes to the exporter.
    return {
        "job_name": job,
        "metrics_path": "/probe",
        "params": {"module": [module]},
        "static_configs": [{"targets": [target]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": _local(blackbox_port)},
        ],
    }


def prometheus_config(data) -> dict:
    """prometheus.yml: the jobs of docs/concepts/monitoring.md, every target on loopback, Alertmanager
    (the alerting stage's, on every host) among them: its failed notifications are an alert."""
    interval = data.get("prometheus_scrape_interval")
    gitea_interval = interval if duration_seconds(interval) >= GITEA_MIN_INTERVAL else f"{GITEA_MIN_INTERVAL}s"
    jobs = [
        _static("prometheus", data.get("prometheus_port")),
        _static("node", data.get("node_exporter_port")),
        _static("gitea", data.get("gitea_http_port"), metrics_path="/metrics", scrape_interval=gitea_interval,
                # Gitea's own port, never the public vhost (which answers /metrics with 404).
                authorization={"type": "Bearer", "credentials_file": TOKEN_FILE}),
    ]
    if not database(data)["external"]:
        jobs.append(_static("postgres", data.get("postgres_exporter_port")))
    jobs += [
        _static("nginx", data.get("nginx_exporter_port")),
        _static("blackbox", data.get("blackbox_exporter_port")),
        _static("alertmanager", data.get("alertmanager_port")),
        *(_probe(job, module, target, data.get("blackbox_exporter_port"))
          for job, (module, target) in probe_targets(data).items()),
    ]
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [f"{RULES_DIR}/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [_local(data.get("alertmanager_port"))]}]}]},
        "scrape_configs": jobs,
    }


def blackbox_config(data) -> dict:
    """blackbox.yml: the HTTPS probe verifies the chain (against monitoring_tls_ca_bundle, or the
    system's CAs) and that Gitea says "pass"; the SSH probe wants Gitea's SSH banner."""
    tls = {"insecure_skip_verify": False}
    if data.get("monitoring_tls_ca_bundle"):
        tls["ca_file"] = PROBE_CA_FILE
    ip4 = {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": False}
    return {"modules": {
        HTTPS_MODULE: {"prober": "http", "timeout": "10s", "http": {
            **ip4,
            "method": "GET",
            "valid_status_codes": [200],
            "fail_if_not_ssl": True,
            "no_follow_redirects": True,
            "tls_config": tls,
            "fail_if_body_not_matches_regexp": ['"status":\\s*"pass"'],
        }},
        SSH_MODULE: {"prober": "tcp", "timeout": "5s", "tcp": {
            **ip4,
            "query_response": [{"expect": "^SSH-2.0-"}],
        }},
    }}


def serialized(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _staged_yaml(name: str, dest: str, document: dict, mode: str = "644"):
    return staged_template(name, src=template("monitoring/serialized.j2"), dest=dest, mode=mode,
                           source="tasks/monitoring.py", document=serialized(document).rstrip("\n"))


# --- secrets and the database role: checked in the deploy's one look at the running system ------


class SecretCopies(FactBase):
    """The secret copies (src -> dest) that are missing, differ from their source, or are not
    root:prometheus 0440 (and the directory not root:prometheus 0750); an empty list when all hold."""

    default = list

    def command(self, pairs: tuple[tuple[str, str], ...]) -> str:
        q = shlex.quote
        lines = [f"[ \"$(stat -c %U:%G:%a {q(SECRETS_DIR)} 2>/dev/null)\" = root:prometheus:750 ] "
                 f"|| echo {q(SECRETS_DIR)}"]
        lines += [f"{{ cmp -s {q(src)} {q(dest)} && [ \"$(stat -c %U:%G:%a {q(dest)})\" = root:prometheus:440 ]; }} "
                  f"|| echo {q(dest)}" for src, dest in pairs]
        return "\n".join([*lines, "true"])

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


def secret_copies(data) -> tuple[tuple[str, str], ...]:
    """(secret, copy for user prometheus) pairs: Gitea's metrics token and, with the stack's own
    database, the exporter's password. restore.py refreshes them after a restore replaced the token."""
    copies = [(f"{secrets_dir(data)}/metrics_token", TOKEN_FILE)]
    if not database(data)["external"]:
        copies.append((f"{secrets_dir(data)}/{MONITOR_SECRET}", MONITOR_PASSWORD_FILE))
    return tuple(copies)


def copy_secrets_command(pairs: tuple[tuple[str, str], ...]) -> str:
    """Each copy written beside its target and renamed: never half a secret, never a wider mode."""
    q = shlex.quote
    lines = ["set -e", f"install -d -o root -g prometheus -m 750 {q(SECRETS_DIR)}"]
    for src, dest in pairs:
        lines += [f"install -o root -g prometheus -m 440 {q(src)} {q(dest + '.partial')}",
                  f"mv -f {q(dest + '.partial')} {q(dest)}"]
    return "\n".join(lines)


class MonitorRole(FactBase):
    """"ok" when the role logs in to PostgreSQL with the password on the host and holds pg_monitor;
    anything else (or nothing) means it must be (re)made. The password reaches psql on stdin and
    its environment, never a command line."""

    def command(self, compose_cmd: str, password_file: str) -> str:
        probe = ("read -r PGPASSWORD; export PGPASSWORD; psql -h 127.0.0.1 -U " + MONITOR_ROLE +
                 " -d postgres -tAc \"select pg_has_role(current_user, 'pg_monitor', 'member')\"")
        return (f"{compose_cmd}exec -T db sh -c {shlex.quote(probe)} < {shlex.quote(password_file)} 2>/dev/null "
                f"| grep -qx t && echo ok || echo missing")

    def process(self, output: list[str]) -> str:
        return output[-1].strip() if output else "missing"


def monitor_role_command(compose_cmd: str, password_file: str) -> str:
    """Create or update the role, idempotently, as the database's owner inside the db container
    (`compose_cmd`: compose("") of the stack). The SQL (with the password) goes to psql on stdin
    from shell builtins: nothing shows it."""
    q = shlex.quote
    create = (f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MONITOR_ROLE}') "
              f"THEN CREATE ROLE {MONITOR_ROLE}; END IF; END $$;\n")
    grant = f"GRANT pg_monitor TO {MONITOR_ROLE};\n"
    alter = f"ALTER ROLE {MONITOR_ROLE} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '%s';\n"
    return (
        f"set -e -o pipefail; pw=$(cat {q(password_file)}); "
        # Generated as base64url (tasks/secrets.py): nothing that could end the SQL string.
        "case \"$pw\" in ''|*[!A-Za-z0-9_-]*) echo 'gitea-deploy: unexpected characters in the monitor "
        "password' >&2; exit 1;; esac; "
        f"{{ printf '%s' {q(create)}; printf {q(alter)} \"$pw\"; printf '%s' {q(grant)}; }} "
        f"| {compose_cmd}exec -T db psql -v ON_ERROR_STOP=1 -q -U gitea -d gitea"
    )


# --- the stage ------------------------------------------------------------------------------------


def _restart_when_stale(service: str, files: list[str], command: str | None = None) -> None:
    cat = "cat " + " ".join(shlex.quote(f) for f in files)
    apply_when_stale(f"{service} restarted for its configuration", marker=service, effective=cat,
                     # reset-failed: a unit that failed before its files were complete (the postgres
                     # exporter started by its postinst, before its password exists) is not refused
                     # a start for having failed too often.
                     command=command or f"systemctl daemon-reload && systemctl reset-failed {service}; "
                                        f"systemctl restart {service}")


@deploy("Monitoring")
def monitoring():
    data = host.data
    external = database(data)["external"]

    # node_exporter's systemd collector asks systemd over the system bus; Debian's dbus does not
    # start its socket on a running system (only at the next boot).
    snapshot.service(name="D-Bus system bus (node_exporter's systemd collector)", service="dbus.socket",
                     running=True)
    # The apt collector writes where node_exporter reads (its drop-in, before_install).
    _restart_when_stale(APT_COLLECTOR, [drop_in(APT_COLLECTOR)],
                        command=f"systemctl daemon-reload && systemctl restart {APT_COLLECTOR}.service")

    # Secrets: the exporter's own database password (generated once, kept with the others) and
    # copies, for user prometheus, of it and of Gitea's metrics token.
    if not external:
        own = f"{secrets_dir(data)}/{MONITOR_SECRET}"
        generate_once(own)
        snapshot.file(name=f"Mode of {MONITOR_SECRET}", path=own, user="root", group="root", mode="400")
    pairs = secret_copies(data)
    stale_copies = snapshot.system(SecretCopies, pairs=pairs)
    server.shell(name="Secrets for Prometheus and the exporters (root:prometheus 0440)",
                 commands=[copy_secrets_command(pairs)], _if=lambda: bool(stale_copies()))

    if not external:
        role = snapshot.system(MonitorRole, compose_cmd=compose(""), password_file=own)
        server.shell(name=f"PostgreSQL role {MONITOR_ROLE} (pg_monitor) for the exporter",
                     commands=[monitor_role_command(compose(""), own)], _if=lambda: role() != "ok")

    # Exporters: their drop-ins are on disk since before_install; running them as written.
    for service in exporters(data):
        snapshot.service(name=f"{service} running", service=service, running=True, enabled=True)
    if not external:
        # Its password file is read at start only: a new copy (a restored secrets directory) restarts it.
        _restart_when_stale(POSTGRES_EXPORTER, [drop_in(POSTGRES_EXPORTER), MONITOR_PASSWORD_FILE])
    _restart_when_stale(NGINX_EXPORTER, [drop_in(NGINX_EXPORTER)])

    # The blackbox exporter: its probes' CA, its own /etc/hosts (before_install), its modules.
    bundle = data.get("monitoring_tls_ca_bundle")
    if bundle:
        # Not a secret: the CA the served certificate must verify against.
        snapshot.put(name="The HTTPS probe's CA", src=StringIO(bundle), dest=PROBE_CA_FILE, mode="644")
    blackbox = _staged_yaml("Blackbox exporter modules", BLACKBOX_CONFIG, blackbox_config(data))
    install_validated("Install the blackbox modules (validated by --config.check)", [blackbox],
                      check=f"{BLACKBOX_EXPORTER} --config.check --config.file={shlex.quote(blackbox.staged)}",
                      marker=BLACKBOX_EXPORTER, overlay=False)
    _restart_when_stale(BLACKBOX_EXPORTER, [drop_in(BLACKBOX_EXPORTER), BLACKBOX_HOSTS, BLACKBOX_CONFIG,
                                            *([PROBE_CA_FILE] if bundle else [])])

    # Container metrics, every 30 s, into the textfile directory.
    snapshot.put(name="Container metrics program", src=str(REPO / "files/monitoring/gitea-deploy-container-metrics"),
                 dest=METRICS_PROGRAM, mode="755")
    unit, timer = f"/etc/systemd/system/{METRICS_UNIT}.service", f"/etc/systemd/system/{METRICS_UNIT}.timer"
    _template("Container metrics unit", "monitoring/gitea-deploy-container-metrics.service.j2", unit)
    snapshot.put(name="Container metrics timer", src=str(REPO / f"files/monitoring/{METRICS_UNIT}.timer"),
                 dest=timer, mode="644")
    # daemon-reload until systemd runs the unit files on disk (a killed run is finished by the next).
    _restart_when_stale(f"{METRICS_UNIT}.timer", [unit, timer])
    snapshot.service(name="Container metrics timer running", service=f"{METRICS_UNIT}.timer",
                     running=True, enabled=True)

    # Prometheus: the rules directory the alerting stage fills, then its configuration, checked by
    # promtool (which also opens the token file it names) before it goes live.
    snapshot.directory(name="Prometheus rules directory", path=RULES_DIR, mode="755")
    config = _staged_yaml("Prometheus configuration", CONFIG_FILE, prometheus_config(data))
    install_validated("Install prometheus.yml (validated by promtool check config)", [config],
                      check=f"promtool check config {shlex.quote(config.staged)}",
                      marker="prometheus-config", overlay=False)
    snapshot.service(name="Prometheus running", service=PROMETHEUS, running=True, enabled=True)
    # Reloaded for a new prometheus.yml (a running Prometheus; started when it is not), restarted
    # for new flags (its drop-in). The reload first: a SIGHUP reaching a Prometheus that is still
    # starting would end it.
    apply_when_stale("Prometheus reloaded for prometheus.yml", marker="prometheus-config",
                     effective=f"cat {CONFIG_FILE}", command=f"systemctl reload-or-restart {PROMETHEUS}")
    _restart_when_stale(PROMETHEUS, [drop_in(PROMETHEUS)])
