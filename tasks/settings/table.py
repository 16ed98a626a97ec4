"""The settings table: every inventory data key the deploy reads, its type, default, check and meaning.

This is the one place a default is declared. `group_data/all.py` exports `defaults()` so pyinfra's
data precedence applies (all < group < host < --data); nothing else declares one. A default that
follows other settings (mailer_port from mailer_protocol) is None here, so an unset value can be told
from a set one, and its row's `derived` computes what None means; tasks read it with `effective()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.settings.checks import (
    absolute_path,
    alert_url,
    aws_region,
    bounded,
    cidr,
    cloudwatch_metric,
    cloudwatch_namespace,
    cron_schedule,
    display_text,
    domain_name,
    each,
    email,
    endpoint_url,
    host_port,
    https_url,
    journal_size,
    key_prefix,
    key_secret,
    mail_from,
    mail_host,
    not_a_real_aws_key,
    not_root,
    one_of,
    path_below_root,
    pem_certificates,
    percentage,
    pinned_image,
    port,
    prometheus_duration,
    prometheus_size,
    s3_bucket,
    size,
    smtp_user,
    snapshot_id,
    sns_topic_arn,
    ssm_path,
    time_span,
    time_zone,
    unix_account,
    update_window,
    username,
)

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

REQUIRED = object()  # default for keys every inventory must set

# Each mailer_protocol's port (RFC 8314's submission ports; 25 for a plain relay): mailer_port's default.
MAILER_PORTS = {"smtps": 465, "smtp+starttls": 587, "smtp": 25}


@dataclass(frozen=True)
class Setting:
    name: str
    concern: str  # the task module that reads it
    type: type | tuple[type, ...]
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None
    derived: Callable[[Any], Any] | None = None  # with default None: the value None stands for, from the data


SETTINGS: tuple[Setting, ...] = (
    # connection: how pyinfra and the host checks reach every host, production and lab alike. The
    # SSH user and address come from the host source (Terraform's pyinfra_inventory output).
    Setting("_sudo", "connection", bool, True,
            "Run every operation through sudo: the deploy changes the system, and Debian's AMIs log in "
            "as the unprivileged `admin`. False only with ssh_user root."),
    # base: the host itself
    Setting("admin_ssh_port", "base", int, 2222,
            "Port of the administrator's OpenSSH (git SSH takes 22). Set by cloud-init / the lab "
            "before the first deploy; the deploy keeps it.", port),
    Setting("timezone", "base", str, "UTC", "System time zone.",
            time_zone),
    Setting("journal_max_use", "base", str, "1G",
            "Disk the persistent journal may take (SystemMaxUse); the oldest entries go first.", journal_size),
    Setting("journal_max_retention", "base", str, "1month",
            "How long the journal keeps entries at most (MaxRetentionSec).", time_span),
    Setting("ssh_allow_users", "base", list, ["admin"],
            "The only accounts the admin sshd lets in (AllowUsers); must include ssh_user, the deploy's own. "
            "Debian's AMIs log in as `admin`.", each(unix_account)),
    # firewall: the host's own packet filter
    Setting("admin_cidrs", "firewall", list, [],
            "Networks (IPv4 and/or IPv6 CIDRs) the host firewall lets reach admin_ssh_port; empty: any "
            "(the security group's admin_cidrs still applies). Set it to Terraform's admin_cidrs.",
            each(cidr)),
    # hardening (tasks/hardening.py): the kernel's settings and the system's limits.
    Setting("sysctl_kernel", "hardening", bool, True,
            "Also set the kernel-wide sysctls (kernel.*, fs.*), not only the per-network-namespace ones. "
            "False only where the host shares another machine's kernel (the lab's containers)."),
    # fail2ban (tasks/fail2ban.py): what counts as an attack, and for how long its address is banned.
    Setting("fail2ban_maxretry", "fail2ban", int, 5,
            "Failed logins (admin sshd, git SSH, Gitea's form, basic auth through nginx) from one address "
            "within fail2ban_findtime that ban it.", bounded(1, 100)),
    Setting("fail2ban_findtime", "fail2ban", int, 600, "Seconds over which failures are counted.",
            bounded(10, 86400)),
    Setting("fail2ban_bantime", "fail2ban", int, 3600, "Seconds an address stays banned.",
            bounded(10, 31536000)),
    Setting("fail2ban_rate_limited_maxretry", "fail2ban", int, 30,
            "Answers of 429 (over nginx_login_rate or nginx_api_rate) to one address within a minute that "
            "ban it.", bounded(5, 1000)),
    Setting("fail2ban_ignore_cidrs", "fail2ban", list, [],
            "Networks fail2ban never bans (loopback always); e.g. an office behind one NAT address.",
            each(cidr)),
    # gitea: the Compose stack
    Setting("gitea_domain", "gitea", str, REQUIRED, "Public FQDN users reach Gitea at (lower case).", domain_name),
    Setting("gitea_image", "gitea", str, "docker.gitea.com/gitea:1.27.3-rootless",
            "Gitea image (the rootless variant). Pinned: patch releases only without a person "
            "(1.27.3: the newest patch of the supported 1.27 line).",
            pinned_image),
    Setting("postgres_image", "gitea", str, "docker.io/library/postgres:17.6-trixie",
            "PostgreSQL image. Pin the major: a major bump needs a dump and restore.", pinned_image),
    # updates (tasks/updates.py, files/updates/; docs/concepts/updates.md)
    Setting("auto_update", "updates", bool, True,
            "In the update window, gitea-update moves Gitea to the newest patch release of its minor line "
            "and PostgreSQL to the newest minor release of its major, each through the whole update "
            "sequence (backup, checks, rollback). The pins stay the floor of their lines."),
    Setting("update_window", "updates", str, "Sun 03:00-05:00",
            "When automatic updates (and update_reboot) may happen, in the host's time zone: DAYS HH:MM-HH:MM, "
            "DAYS * or a comma list of Mon..Sun.", update_window),
    Setting("update_reboot", "updates", bool, False,
            "Reboot in the update window when the OS asks for it (/var/run/reboot-required, after "
            "unattended security upgrades); the stack starts again with the engine."),
    Setting("data_root", "gitea", str, "/srv/gitea",
            "Everything the stack keeps (compose file, secrets, repositories, database).", absolute_path),
    Setting("gitea_http_port", "gitea", int, 3000, "Host port for Gitea's HTTP, bound to 127.0.0.1 only.", port),
    Setting("git_ssh_port", "gitea", int, 22, "Public port of Gitea's built-in SSH server (git over SSH).", port),
    Setting("compose_subnet", "gitea", str, "172.30.0.0/24",
            "Subnet of the Compose network; Gitea trusts X-Forwarded-* only from it.", cidr),
    Setting("gitea_app_name", "gitea", str, "Gitea",
            "Site title: free text (quotes, #, :, $ are carried exactly), no control characters.", display_text),
    Setting("database_endpoint", "gitea", (str, type(None)), None,
            "host:port of an external PostgreSQL (Terraform's output with database = \"rds\"). None: "
            "PostgreSQL runs in the Compose stack. Set: no db container; Gitea, the backup and the restore "
            "use it over TLS (verify-full against database_ca_bundle), as user and database `gitea`, with "
            "the password the operator puts in <data_root>/secrets/db_password (docs/runbooks/deploy.md).",
            host_port),
    Setting("database_ca_bundle", "gitea", (str, type(None)), None,
            "PEM of the CA that signed the external PostgreSQL's certificate (for RDS: AWS's RDS bundle "
            "for the region); required with database_endpoint.", pem_certificates),
    Setting("gitea_disable_registration", "gitea", bool, True, "Only admins create accounts."),
    Setting("gitea_require_signin_view", "gitea", bool, False, "Hide everything from anonymous visitors."),
    Setting("gitea_admin_username", "gitea", str, "gitadmin", "The first administrator account.", username),
    Setting("gitea_admin_email", "gitea", str, REQUIRED, "The first administrator's e-mail.", email),
    Setting("gitea_uid", "gitea", int, 61000,
            "uid (and gid) Gitea runs as (compose `user:`). No host account may have it: the image's 1000 "
            "is `admin` on Debian's AMIs, who would own app.ini and the repositories. 61000 lies above "
            "Debian's login range (UID_MAX 60000) and below systemd's dynamic users (61184).",
            not_root),
    # Sized for Terraform's default t3.small (2 GiB): what is left serves nginx, Prometheus and the
    # page cache. A container over its limit is killed and restarted, never the host's sshd.
    Setting("gitea_memory_limit", "gitea", str, "1g", "Memory limit of the Gitea container (compose mem_limit).",
            size),
    Setting("db_memory_limit", "gitea", str, "512m", "Memory limit of the PostgreSQL container.", size),
    Setting("gitea_pids_limit", "gitea", int, 1024,
            "Processes and threads the Gitea container may have (a git process per request).", bounded(64, 65536)),
    Setting("db_pids_limit", "gitea", int, 256,
            "Processes the PostgreSQL container may have (a backend per connection).", bounded(64, 65536)),
    Setting("postgres_uid", "gitea", int, 999,
            "uid of postgres in the PostgreSQL image (image contract); the deploy refuses a host where a "
            "login account has it.",
            not_root),
    # gitea: any other app.ini option (tasks/settings/gitea_config.py, docs/runbooks/configure.md)
    Setting("gitea_config", "gitea", dict, {},
            "Any other app.ini option, {section: {KEY: value}} (\"\" is the root section), rendered as "
            "GITEA__section__KEY over the deploy's own settings. Values are str, int, float or bool; the keys the "
            "deploy sets are refused with the setting to use; secrets never inline: KEY__FILE: \"<name>\" from "
            "gitea_secrets."),
    Setting("gitea_secrets", "gitea", dict, {},
            "Secret files gitea_config's KEY__FILE entries read, {name: \"generate\" | \"operator\"}: generated "
            "once on the host (random, never regenerated), or put by you at <data_root>/secrets/<name> (the "
            "deploy stops until it is there). Mounted in the Gitea container at /run/secrets/<name>."),
    # gitea: mail ([mailer]); off while mailer_host is None
    Setting("mailer_host", "gitea", (str, type(None)), None,
            "SMTP server Gitea sends mail through (password resets, notifications). None: mail is off.",
            mail_host),
    Setting("mailer_protocol", "gitea", str, "smtps",
            "smtps (TLS from the first byte, RFC 8314's choice for submission), smtp+starttls (port 587 "
            "upgraded with STARTTLS) or smtp (no TLS: a relay on a private network only, never with a password).",
            one_of("smtps", "smtp+starttls", "smtp")),
    Setting("mailer_port", "gitea", (int, type(None)), None,
            f"SMTP port. None: the protocol's ({', '.join(f'{p} {n}' for p, n in MAILER_PORTS.items())}). "
            "Terraform's smtp_egress_port must be the same.", port,
            derived=lambda data: MAILER_PORTS[data.get("mailer_protocol")]),
    Setting("mailer_from", "gitea", (str, type(None)), None,
            "Sender address (`name@domain` or `Name <name@domain>`; with SES a verified identity). "
            "None: gitea@<gitea_domain>.", mail_from,
            derived=lambda data: f"gitea@{data.get('gitea_domain')}"),
    Setting("mailer_user", "gitea", (str, type(None)), None,
            "SMTP user name (SES: the SMTP credentials' user). Set: its password is the file you put at "
            "<data_root>/secrets/mailer_password (GITEA__mailer__PASSWD__FILE). None: no authentication.",
            smtp_user),
    # nginx + certbot: the HTTPS front door
    Setting("acme_email", "certbot", str, REQUIRED, "ACME account e-mail (expiry notices).", email),
    Setting("acme_server", "certbot", str, LETSENCRYPT,
            f"ACME directory. Let's Encrypt by default; staging: {LETSENCRYPT_STAGING}.", https_url),
    Setting("acme_ca_bundle", "certbot", (str, type(None)), None,
            "PEM of a private ACME server's TLS CA (the lab's pebble); None for Let's Encrypt.",
            pem_certificates),
    Setting("nginx_client_max_body_size", "nginx", str, "512M",
            "Largest request nginx passes to Gitea (pushes, LFS, attachments).", size),
    # Per client address; over the rate (plus a small burst) nginx answers 429, and a client that
    # keeps at it is banned by fail2ban (tasks/fail2ban.py).
    Setting("nginx_login_rate", "nginx", int, 10,
            "Sign-in form posts per minute nginx passes to Gitea from one address.", bounded(1, 600)),
    Setting("nginx_api_rate", "nginx", int, 10,
            "API requests per second nginx passes to Gitea from one address (healthz is not limited).",
            bounded(1, 1000)),
    # backup: restic to S3 and/or a local repository, on a cron schedule (tasks/backup.py,
    # docs/concepts/backup.md). The AWS names come from Terraform's outputs.
    Setting("aws_region", "backup", (str, type(None)), None,
            "AWS region of the backup bucket and the SSM parameters (Terraform output).", aws_region),
    Setting("backup_s3_bucket", "backup", (str, type(None)), None,
            "S3 bucket of the restic repository (Terraform output); None: no S3 repository.", s3_bucket),
    Setting("backup_s3_prefix", "backup", str, "gitea",
            "Key prefix of the restic repository in the bucket (the instance role may use only it).", key_prefix),
    # s3_endpoint is the emulated AWS's one endpoint for every AWS API the host calls (S3, SSM,
    # CloudWatch), as moto serves them all; the name is kept so existing inventories stay valid.
    Setting("s3_endpoint", "backup", (str, type(None)), None,
            "Emulated AWS only (the lab's moto): the one endpoint for every AWS API the host calls (S3 and SSM "
            "for the backup, CloudWatch for the heartbeat). None: the real AWS endpoints.",
            endpoint_url),
    Setting("backup_aws_access_key_id", "backup", (str, type(None)), None,
            "Emulated AWS only: a static key ID (restic and boto3 for the backup and the heartbeat, and "
            "Alertmanager's SNS signing). None in production: they use the instance role.",
            not_a_real_aws_key),
    Setting("backup_aws_secret_access_key", "backup", (str, type(None)), None,
            "Emulated AWS only: the static key's secret (written root-only on the host, never in backup.env; "
            "for Alertmanager 0640 root:prometheus, never in alertmanager.yml).",
            key_secret),
    Setting("ssm_parameter_path", "backup", (str, type(None)), None,
            "SSM Parameter Store path (Terraform output); the restic password is kept at "
            "<path>/restic_password so a replacement host can restore. None: not kept in SSM.", ssm_path),
    Setting("backup_local_repository", "backup", (str, type(None)), "backup/restic",
            "The restic repository on the data volume that takes each snapshot while Gitea is paused (S3 gets "
            "a copy after): relative to data_root, or absolute below it. None: none (the pause then waits on S3).",
            path_below_root),
    Setting("backup_schedule", "backup", str, "15 * * * *", "When cron runs the backup job (default hourly).",
            cron_schedule),
    Setting("backup_keep_hourly", "backup", int, 24, "Retention: newest snapshot of each of the last N hours.",
            bounded(0, 10000)),
    Setting("backup_keep_daily", "backup", int, 7, "Retention: newest snapshot of each of the last N days.",
            bounded(0, 10000)),
    Setting("backup_keep_weekly", "backup", int, 4, "Retention: newest snapshot of each of the last N weeks.",
            bounded(0, 10000)),
    Setting("backup_keep_monthly", "backup", int, 12, "Retention: newest snapshot of each of the last N months.",
            bounded(0, 10000)),
    Setting("backup_stop_gitea", "backup", bool, True,
            "Stop Gitea while the database is dumped and the files are snapshotted (DB and repositories "
            "agree; costs a pause of seconds). False: no pause, repositories may be ahead of the DB."),
    Setting("backup_read_data_subset", "backup", str, "5%",
            "Share of the repository's data `restic check --read-data-subset` reads back.", percentage),
    Setting("backup_read_data_days", "backup", int, 7, "Days between read-data checks (after a backup).",
            bounded(1, 366)),
    # node_exporter: the host's metrics, on loopback only (tasks/node_exporter.py)
    Setting("node_exporter_port", "node_exporter", int, 9100, "Port of node_exporter, bound to 127.0.0.1 only.",
            port),
    Setting("node_exporter_textfile_dir", "node_exporter", str, "/var/lib/prometheus/node-exporter",
            "node_exporter's textfile collector directory (the backup job writes its outcome there).",
            absolute_path),
    # monitoring: Prometheus and the exporters, every one on 127.0.0.1 only (tasks/monitoring.py,
    # docs/concepts/monitoring.md). The ports are one block so every stage that points at another
    # daemon (Prometheus at Alertmanager, Grafana at Prometheus) reads the same value.
    Setting("prometheus_port", "monitoring", int, 9090, "Port of Prometheus, bound to 127.0.0.1 only.", port),
    Setting("alertmanager_port", "monitoring", int, 9093, "Port of Alertmanager, bound to 127.0.0.1 only.", port),
    Setting("postgres_exporter_port", "monitoring", int, 9187,
            "Port of the PostgreSQL exporter, bound to 127.0.0.1 only.", port),
    Setting("nginx_exporter_port", "monitoring", int, 9113, "Port of the nginx exporter, bound to 127.0.0.1 only.",
            port),
    Setting("blackbox_exporter_port", "monitoring", int, 9115,
            "Port of the blackbox exporter, bound to 127.0.0.1 only.", port),
    Setting("nginx_status_port", "monitoring", int, 8081,
            "Port of nginx's stub_status server, bound to 127.0.0.1 only (the nginx exporter reads it).", port),
    Setting("grafana_port", "monitoring", int, 3001, "Port of Grafana (when grafana_enabled), bound to 127.0.0.1 only.",
            port),
    Setting("prometheus_scrape_interval", "monitoring", str, "30s",
            "How often Prometheus scrapes every target (Gitea's /metrics, which counts rows in the database, "
            "at most once a minute) and evaluates its rules.", prometheus_duration(5, 300)),
    Setting("prometheus_retention_time", "monitoring", str, "30d",
            "How long Prometheus keeps samples (--storage.tsdb.retention.time).", prometheus_duration(86400, 10 * 31536000)),
    Setting("prometheus_retention_size", "monitoring", str, "2GB",
            "Most disk Prometheus's TSDB may take under /var/lib/prometheus on the root volume (oldest blocks "
            "go first); the default fits the 20 GiB root volume, about 10x what 30 days take "
            "(docs/concepts/monitoring.md).", prometheus_size),
    Setting("monitoring_tls_ca_bundle", "monitoring", (str, type(None)), None,
            "PEM of the CA the HTTPS probe verifies the served certificate against (the lab: pebble's root that "
            "issued it). None: the system's CAs, as users' browsers (Let's Encrypt).", pem_certificates),
    # heartbeat: one CloudWatch datapoint a minute while the host and its monitoring answer; Terraform's
    # alarm treats a missing one as breaching (tasks/heartbeat.py, docs/concepts/heartbeat.md).
    Setting("metrics_namespace", "heartbeat", (str, type(None)), None,
            "CloudWatch namespace the host publishes its heartbeat to (Terraform output; the instance role may "
            "publish only there). The heartbeat's switch: None (no Terraform, no AWS) means no heartbeat; set, "
            "it needs aws_region.", cloudwatch_namespace),
    Setting("heartbeat_metric", "heartbeat", str, "Heartbeat",
            "Name of the heartbeat metric (Terraform output: the alarm watches this name, with the dimension "
            "Domain = gitea_domain).", cloudwatch_metric),
    # grafana: the dashboards, in the Compose project (tasks/grafana.py, docs/runbooks/monitoring.md)
    Setting("grafana_enabled", "grafana", bool, False,
            "Run Grafana (the official image) with the provisioned Prometheus datasource and this project's "
            "dashboards, on 127.0.0.1:grafana_port only; operators reach it through SSH forwarding."),
    Setting("grafana_image", "grafana", str, "docker.io/grafana/grafana:13.2.3",
            "Grafana image (grafana/grafana: grafana-oss gets no updates since 12.4). Pinned: 13.2.3, the newest "
            "patch of the 13.2 line confirmed released.", pinned_image),
    Setting("grafana_uid", "grafana", int, 472,
            "uid the Grafana image runs as (image contract): it owns Grafana's data directory and its "
            "admin password file.", not_root),
    # alerting: Alertmanager and its receivers (tasks/alerting.py, docs/concepts/alerting.md). No
    # receiver set: alerts are kept (amtool, the API) but reach no one; the dead-man's switch is the
    # only receiver of Watchdog.
    Setting("alert_email_to", "alerting", list, [],
            "Addresses every alert is mailed to, through the mailer_* settings (needs mailer_host; "
            "the sender is mailer_from).", each(email)),
    Setting("alert_webhook_urls", "alerting", list, [],
            "URLs every alert is posted to (Alertmanager's webhook JSON, resolved too). https, or http "
            "to 127.0.0.1 only; a token in the URL is kept in a file only root and Alertmanager read.",
            each(alert_url)),
    Setting("alert_sns_topic_arn", "alerting", (str, type(None)), None,
            "SNS topic critical alerts are published to (Terraform output alerts_topic_arn), signed "
            "with SigV4 in aws_region by the instance role. None: no SNS.", sns_topic_arn),
    Setting("alert_sns_api_url", "alerting", (str, type(None)), None,
            "Emulated AWS only (the lab's moto, an environment key like s3_endpoint): the SNS endpoint "
            "alert_sns_topic_arn is published at, signed with the backup_aws_* keys. None: the region's "
            "real endpoint.", endpoint_url),
    Setting("deadmans_switch_url", "alerting", (str, type(None)), None,
            "The external dead-man's switch (e.g. a healthchecks.io ping URL) the always-firing Watchdog "
            "is posted to every few minutes; silence there means the host or its alerting is dead. "
            "https (http to 127.0.0.1 only). None: Watchdog goes nowhere.", alert_url),
    Setting("alert_runbook_base_url", "alerting", (str, type(None)), None,
            "Where this repository's files can be read (e.g. https://git.example.com/ops/gitea-deploy/src/"
            "branch/main): each rule's runbook_url, docs/runbooks/alerts.md#<alert>, is rebased on it. "
            "None: the rules' links as written.", alert_url),
    # restore: run-time choices of `pyinfra INVENTORY restore.py` (--data restore_snapshot=...)
    Setting("restore_snapshot", "restore", (str, int), "latest", "The snapshot restore.py restores.",
            snapshot_id),
    Setting("restore_force", "restore", bool, False,
            "Let restore.py overwrite a host that already holds repositories or users."),
)

BY_NAME = {s.name: s for s in SETTINGS}


def effective(data, name: str) -> Any:
    """One host's value of a setting (`data`: host.data or a dict): as set, or, where it is None and
    the row derives one, what the row computes from the other settings."""
    setting, value = BY_NAME[name], data.get(name)
    return setting.derived(data) if value is None and setting.derived else value


def defaults(concern: str | None = None) -> dict[str, Any]:
    """Default values, all or one concern's; required keys have none."""
    return {
        s.name: s.default
        for s in SETTINGS
        if s.default is not REQUIRED and (concern is None or s.concern == concern)
    }
