"""Alertmanager: routing, grouping, inhibition and delivery of Prometheus's alerts (Debian's
prometheus-alertmanager, on 127.0.0.1 only, no cluster port), and the alert rules Prometheus loads.

Every file is built from Python data and dumped by a serializer: alertmanager.yml from
alertmanager_config() (checked with `amtool check-config` before it goes live), the rule files from
files/alerting/rules/ (checked with `promtool check rules`). Secrets never enter a world-readable
file: the webhook and dead-man's switch URLs (which carry tokens), the SMTP password and the lab's
static AWS keys are files of SECRETS_DIR, 0640 root:prometheus, that alertmanager.yml names with
Alertmanager's *_file options (0.28.1 in Debian 13: url_file, auth_password_file). Why the tree is
shaped as it is: docs/concepts/alerting.md.
"""

from __future__ import annotations

import posixpath
import shlex
from io import StringIO
from pathlib import Path

import yaml
from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import server

from tasks import REPO, snapshot
from tasks.common import apply_when_stale, install_validated, staged_put
from tasks.secrets import secrets_dir
from tasks.settings import effective

SERVICE = "prometheus-alertmanager"
# amtool is in Alertmanager's package; promtool (its own package in Debian 13, no daemon) checks the
# rule files before they go live.
PACKAGES = [SERVICE, "promtool"]
DEFAULTS_FILE = f"/etc/default/{SERVICE}"
CONFIG = "/etc/prometheus/alertmanager.yml"
STORAGE = "/var/lib/prometheus/alertmanager"
SECRETS_DIR = "/etc/prometheus/alertmanager-secrets"
AMTOOL_CONFIG = "/etc/amtool/config.yml"
GROUP = "prometheus"  # Debian's packages run Alertmanager and Prometheus as this user and group

RULES_SOURCE = REPO / "files/alerting/rules"
RULES_DIR = "/etc/prometheus/rules"
RUNBOOKS = "docs/runbooks/"  # what a rule's runbook_url points into (docs/runbooks/alerts.md#<alert>)

# Receivers (names are what `amtool config routes test` and docs/concepts/alerting.md speak of).
WARNING = "operators"            # e-mail and webhooks
CRITICAL = "operators-critical"  # the same, plus SNS: the channel that pages
DEADMAN = "deadmans-switch"      # Watchdog only

# Grouping: one message per alert name and scrape job (TargetDown of node and of gitea are two
# incidents; three failing blackbox probes of one job are one). One Alertmanager serves one host,
# so an inhibition needs no `equal` to stay on its host.
GROUP_BY = ["alertname", "job"]
TIMING = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "12h"}
CRITICAL_REPEAT = "4h"
# Watchdog: at once, then every 5 minutes; the dead-man's switch expects a ping at that period.
DEADMAN_TIMING = {"group_wait": "0s", "group_interval": "1m", "repeat_interval": "5m"}

# Inhibition: (source matchers, target matchers). A source firing silences the targets: one
# incident is one message, from its cause (docs/concepts/alerting.md, Inhibition).
NODE_DERIVED = ("HostDiskSpaceLow|HostDiskWillFillIn24Hours|HostInodesLow|HostMemoryLow|HostOomKill|"
                "SystemdUnitFailed|ContainerRestarting|BackupTooOld|BackupFailed|ResticCheckFailed|RebootRequired")
INHIBITIONS = [
    # The database is the cause: Gitea's health check, the public probe, Gitea's /metrics (its
    # gauges are database COUNTs) and the backup (pg_dump) all fail with it.
    (['alertname="PostgresqlDown"'], ['alertname=~"GiteaHealthzFailing|HttpsProbeFailing|BackupFailed"']),
    (['alertname="PostgresqlDown"'], ['alertname="TargetDown"', 'job=~"gitea|postgres"']),
    # Gitea itself is down: the public probe and its scrape fail with it.
    (['alertname="GiteaHealthzFailing"'], ['alertname="HttpsProbeFailing"']),
    (['alertname="GiteaHealthzFailing"'], ['alertname="TargetDown"', 'job="gitea"']),
    # node_exporter is down: everything read from it (and from its textfile collector) is unknown.
    (['alertname="TargetDown"', 'job="node"'], [f'alertname=~"{NODE_DERIVED}"']),
    # The blackbox exporter is down: its probes fail without saying anything about Gitea.
    (['alertname="TargetDown"', 'job="blackbox"'],
     ['alertname=~"HttpsProbeFailing|GitSshProbeFailing|CertificateExpiresIn20Days|CertificateExpiresIn7Days"']),
    (['alertname="TargetDown"', 'job="blackbox"'], ['alertname="TargetDown"', 'job=~"blackbox_https|blackbox_git_ssh"']),
    # The critical certificate alert says all the warning one does.
    (['alertname="CertificateExpiresIn7Days"'], ['alertname="CertificateExpiresIn20Days"']),
]


# --- what the files hold ------------------------------------------------------------------------


def secret_files(data) -> dict[str, str]:
    """path in SECRETS_DIR -> content, of the secrets that come from the inventory."""
    found = {f"{SECRETS_DIR}/webhook-{i}.url": url for i, url in enumerate(data.get("alert_webhook_urls") or [])}
    if data.get("deadmans_switch_url"):
        found[f"{SECRETS_DIR}/deadmans-switch.url"] = data.get("deadmans_switch_url")
    if sns_static_keys(data):
        # The AWS SDK's shared-credentials format; Alertmanager finds it through the environment
        # (defaults_file()). sigv4 has no secret-key file option of its own.
        found[aws_credentials_file()] = (f"[default]\naws_access_key_id = {data.get('backup_aws_access_key_id')}\n"
                                         f"aws_secret_access_key = {data.get('backup_aws_secret_access_key')}\n")
    return found


def smtp_password(data) -> tuple[str, str] | None:
    """(the operator's mailer_password under the secrets directory, Alertmanager's copy of it)."""
    if data.get("alert_email_to") and data.get("mailer_user"):
        return f"{secrets_dir(data)}/mailer_password", f"{SECRETS_DIR}/smtp-password"
    return None


def sns_static_keys(data) -> bool:
    """Emulated AWS only: SigV4 with the lab's static keys. In production the instance role."""
    return bool(data.get("alert_sns_topic_arn") and data.get("backup_aws_access_key_id"))


def aws_credentials_file() -> str:
    return f"{SECRETS_DIR}/aws-credentials"


def args(data) -> list[str]:
    port = int(data.get("alertmanager_port"))
    return [
        f"--config.file={CONFIG}",
        f"--storage.path={STORAGE}",
        f"--web.listen-address=127.0.0.1:{port}",
        # Links in notifications: the operator reaches it through `ssh -L` (docs/concepts/alerting.md).
        f"--web.external-url=http://127.0.0.1:{port}/",
        # One Alertmanager per host: no gossip. The default opens 9094 on every address.
        "--cluster.listen-address=",
    ]


def defaults_file(data) -> str:
    """/etc/default/prometheus-alertmanager (the unit's EnvironmentFile). Only whitelisted values:
    an integer port and the deploy's own paths."""
    lines = ["# Managed by gitea-deploy (tasks/alerting.py): loopback only, no cluster port.",
             f'ARGS="{" ".join(args(data))}"']
    if sns_static_keys(data):
        lines.append(f"AWS_SHARED_CREDENTIALS_FILE={aws_credentials_file()}")
    return "\n".join(lines) + "\n"


def _webhook(path: str, send_resolved: bool) -> dict:
    return {"url_file": path, "send_resolved": send_resolved}


def email_config(data) -> dict:
    """One message to every address, through the mailer_* settings. Alertmanager speaks TLS from the
    first byte only on port 465 (the settings' cross-check holds smtps to it); smtp+starttls
    requires STARTTLS; smtp (a relay on a private network) has neither, and no password."""
    protocol = data.get("mailer_protocol")
    config = {
        "to": ", ".join(data.get("alert_email_to")),
        "from": effective(data, "mailer_from"),
        "smarthost": f"{data.get('mailer_host')}:{effective(data, 'mailer_port')}",
        "hello": data.get("gitea_domain"),
        "require_tls": protocol == "smtp+starttls",
        "send_resolved": True,
    }
    if protocol != "smtp":
        config["tls_config"] = {"server_name": data.get("mailer_host")}
    if password := smtp_password(data):
        config.update(auth_username=data.get("mailer_user"), auth_password_file=password[1])
    return config


def operator_channels(data, page: bool) -> dict:
    """The receiver configs of the operators: e-mail and webhooks; with `page`, SNS too."""
    channels: dict[str, list] = {}
    if data.get("alert_email_to"):
        channels["email_configs"] = [email_config(data)]
    webhooks = [path for path in secret_files(data) if posixpath.basename(path).startswith("webhook-")]
    if webhooks:
        channels["webhook_configs"] = [_webhook(path, send_resolved=True) for path in webhooks]
    if page and data.get("alert_sns_topic_arn"):
        sns = {"topic_arn": data.get("alert_sns_topic_arn"), "sigv4": {"region": data.get("aws_region")},
               "send_resolved": True,
               "subject": '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}'}
        if data.get("alert_sns_api_url"):
            sns["api_url"] = data.get("alert_sns_api_url")
        channels["sns_configs"] = [sns]
    return channels


def alertmanager_config(data) -> dict:
    """alertmanager.yml: critical alerts to every channel, the rest to e-mail and webhooks, Watchdog
    only to the dead-man's switch; grouped by GROUP_BY; inhibited per INHIBITIONS."""
    deadman = {}
    if data.get("deadmans_switch_url"):
        deadman = {"webhook_configs": [_webhook(f"{SECRETS_DIR}/deadmans-switch.url", send_resolved=False)]}
    return {
        "route": {
            "receiver": WARNING,
            "group_by": GROUP_BY,
            **TIMING,
            "routes": [
                {"receiver": DEADMAN, "matchers": ['alertname="Watchdog"'], "group_by": ["alertname"],
                 **DEADMAN_TIMING},
                {"receiver": CRITICAL, "matchers": ['severity="critical"'], "repeat_interval": CRITICAL_REPEAT},
            ],
        },
        "inhibit_rules": [{"source_matchers": source, "target_matchers": target} for source, target in INHIBITIONS],
        "receivers": [
            {"name": WARNING, **operator_channels(data, page=False)},
            {"name": CRITICAL, **operator_channels(data, page=True)},
            {"name": DEADMAN, **deadman},
        ],
    }


def dump(document: dict) -> str:
    return "# Managed by gitea-deploy (tasks/alerting.py).\n" + yaml.safe_dump(document, sort_keys=False)


def rebase_runbooks(rules: dict, base: str) -> dict:
    """Each rule's runbook_url, from docs/runbooks/ on, rebased on `base` (the operator's published
    copy of this repository); a link that does not point into docs/runbooks/ is left as it is."""
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            link = (rule.get("annotations") or {}).get("runbook_url")
            if link and RUNBOOKS in link:
                rule["annotations"]["runbook_url"] = f"{base.rstrip('/')}/{link[link.index(RUNBOOKS):]}"
    return rules


def rule_files(data, source: Path = RULES_SOURCE) -> dict[str, str]:
    """file name -> what /etc/prometheus/rules/<name> holds: the repository's file, or with
    alert_runbook_base_url set, the same rules with their runbook links rebased."""
    base = data.get("alert_runbook_base_url")
    found = {}
    for path in sorted(source.glob("*.yml")) if source.is_dir() else []:
        text = path.read_text()
        found[path.name] = dump(rebase_runbooks(yaml.safe_load(text), base)) if base else text
    return found


# --- facts ----------------------------------------------------------------------------------------


class GroupId(FactBase):
    """The gid of a group, or None while it does not exist (before the package's postinst)."""

    def command(self, group: str) -> str:
        return f"getent group {shlex.quote(group)} | cut -d: -f3; true"

    def process(self, output: list[str]) -> int | None:
        return int(output[0]) if output and output[0].strip().isdigit() else None


class CopiesDiffer(FactBase):
    """The (source, copy) pairs whose copy is missing, differs or is not 0640 root:GROUP."""

    default = list

    def command(self, pairs: tuple[tuple[str, str], ...]) -> str:
        q = shlex.quote
        return "; ".join(f"{{ cmp -s {q(src)} {q(dest)} && [ \"$(stat -c %a:%U:%G {q(dest)})\" = 640:root:{GROUP} ]; }} "
                         f"|| echo {q(dest)}" for src, dest in pairs) + "; true"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class Listing(FactBase):
    """The names in a directory (none while it is missing)."""

    default = list

    def command(self, path: str) -> str:
        return f"ls -A {shlex.quote(path)} 2>/dev/null; true"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


# --- the stage --------------------------------------------------------------------------------------


def before_install() -> None:
    """Run by the packages stage before the package: its postinst starts Alertmanager, which then
    listens on loopback only, with no cluster port, from its first start. apt keeps this file over
    the package's (--force-confold)."""
    snapshot.put(name="Alertmanager on loopback, no cluster port", src=StringIO(defaults_file(host.data)),
                 dest=DEFAULTS_FILE, mode="644")


def install_secrets(data) -> list[str]:
    """The secret files, 0640 root:prometheus in a 0750 directory; returns their paths."""
    gid = snapshot.system(GroupId, group=GROUP)
    snapshot.directory(name="Alertmanager's secrets directory", path=SECRETS_DIR, user="root", mode="750")
    files = secret_files(data)
    for path, content in files.items():
        # The content is uploaded (never on a command line); the group is set below.
        snapshot.put(name=f"Alertmanager secret {posixpath.basename(path)}", src=StringIO(content), dest=path,
                     user="root", mode="640")
    owned = [SECRETS_DIR, *files]
    for path in owned:
        snapshot.register("paths", path, False)
    server.shell(
        name=f"Alertmanager's secrets readable by group {GROUP} only",
        commands=[f"chgrp {GROUP} {' '.join(shlex.quote(p) for p in owned)}"],
        _if=lambda: any((seen := snapshot.paths().get(p)) is None or seen.gid != gid() for p in owned),
    )
    copy = smtp_password(data)
    if copy:
        differ = snapshot.system(CopiesDiffer, pairs=(copy,))
        server.shell(
            name="Alertmanager's copy of the SMTP password (mailer_password)",
            commands=[f"install -m 640 -o root -g {GROUP} {shlex.quote(copy[0])} {shlex.quote(copy[1])}"],
            _if=lambda: bool(differ()),
        )
    return [*files, *([copy[1]] if copy else [])]


def remove_stale_secrets(wanted: list[str]) -> None:
    """A receiver taken out of the inventory takes its secret along: once Alertmanager runs the
    configuration that no longer names it."""
    listing = snapshot.system(Listing, path=SECRETS_DIR)
    server.shell(name="Remove the secrets of receivers no longer configured",
                 commands=[f"find {SECRETS_DIR} -mindepth 1 -maxdepth 1 "
                           + "".join(f"! -path {shlex.quote(p)} " for p in wanted) + "-delete"],
                 _if=lambda: any(f"{SECRETS_DIR}/{name}" not in wanted for name in listing()))


def install_rules(data) -> None:
    """files/alerting/rules/*.yml into /etc/prometheus/rules/, checked by promtool, then Prometheus
    reloaded until it has loaded what is on disk (the monitoring stage installs Prometheus)."""
    rules = rule_files(data)
    if not rules:
        return
    # RULES_DIR itself is the monitoring stage's (Prometheus's rule_files), which runs before this one.
    staged = [staged_put(f"Alert rules {name}", content, f"{RULES_DIR}/{name}") for name, content in rules.items()]
    install_validated("Install the alert rules (validated by promtool check rules)", staged,
                      check="promtool check rules " + " ".join(shlex.quote(f.staged) for f in staged),
                      marker="prometheus-rules", overlay=False)
    live = " ".join(shlex.quote(f.live) for f in staged)
    apply_when_stale("Reload Prometheus for its alert rules", marker="prometheus-rules",
                     # Reloaded if it runs; a stopped Prometheus reads the files when it starts.
                     effective=f"cat {live}", command="systemctl try-reload-or-restart prometheus")


@deploy("Alerting")
def alerting():
    data = host.data
    port = int(data.alertmanager_port)
    wanted_secrets = install_secrets(data)

    config = staged_put("Alertmanager configuration", dump(alertmanager_config(data)), CONFIG)
    # amtool reads what the daemon would; the secret files it names are already in place.
    install_validated("Install alertmanager.yml (validated by amtool check-config)", [config],
                      check=f"amtool check-config {shlex.quote(config.staged)}", marker="alertmanager",
                      overlay=False)
    snapshot.directory(name="amtool's configuration directory", path=posixpath.dirname(AMTOOL_CONFIG), mode="755")
    snapshot.put(name="amtool talks to this host's Alertmanager",
                 src=StringIO(dump({"alertmanager.url": f"http://127.0.0.1:{port}"})), dest=AMTOOL_CONFIG, mode="644")

    snapshot.service(name="Alertmanager running", service=SERVICE, running=True, enabled=True)
    # Its arguments (listen address, cluster off) take a restart; the configuration and secrets a
    # reload, which answers an error when Alertmanager refuses them (curl -f). Both until they ran
    # with what is on disk (tasks/common.py).
    apply_when_stale("Alertmanager restarted for its arguments", marker="alertmanager-args",
                     effective=f"cat {DEFAULTS_FILE}", command=f"systemctl restart {SERVICE}")
    secrets = " ".join(shlex.quote(p) for p in wanted_secrets)
    apply_when_stale("Alertmanager reloaded for its configuration", marker="alertmanager",
                     # One command group: apply_when_stale pipes it whole into sha256sum.
                     effective=f"{{ cat {CONFIG}; sha256sum {secrets}; }}" if secrets else f"cat {CONFIG}",
                     # A restart just before: wait (30 s at most) until it answers.
                     command=("ok=; for i in $(seq 30); do curl -fsS -o /dev/null -X POST "
                              f"http://127.0.0.1:{port}/-/reload && {{ ok=1; break; }}; sleep 1; done; [ -n \"$ok\" ]"))
    remove_stale_secrets(wanted_secrets)
    install_rules(data)

