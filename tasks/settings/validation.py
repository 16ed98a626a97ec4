"""Validation of one host's merged inventory data: each setting's type and check, the rules between
settings (cross-checks) and unknown keys (with the closest known name: a misspelt key would
otherwise be silently ignored and its default used).

`validate()` runs twice: when an inventory file is loaded (inventories/precedence.py, before pyinfra
connects to any host) and at the top of deploy.py (which also sees `--data` overrides). A bad value
stops the run with one line per bad key.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable
from functools import cache
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from tasks.settings import gitea_config
from tasks.settings.table import BY_NAME, REQUIRED, SETTINGS, defaults


class SettingsError(PyinfraError):
    """Raised as a pyinfra error so the CLI prints one clean line per key, no traceback."""


def problems(data: dict[str, Any]) -> list[str]:
    """Every problem in the merged data of one host, one line each."""
    found = []
    for s in SETTINGS:
        value = data.get(s.name, s.default)
        if value is REQUIRED:
            found.append(f"{s.name}: is required ({s.doc})")
            continue
        expected = s.type if isinstance(s.type, tuple) else (s.type,)
        # bool is an int in Python: a port of True is a typo, not a port.
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected)
            found.append(f"{s.name}: {value!r} is a {type(value).__name__}, expected {names}")
            continue
        if s.check and value is not None and (why := s.check(value)):
            found.append(f"{s.name}: {value!r} {why}")
    # The cross-checks read every value through the merged data, so no default is repeated in them.
    merged = {**defaults(), **data}
    for check in CROSS_CHECKS:
        found.extend(check(merged))
    found.extend(unknown_keys(data))
    return found


# Keys connectors put into host data themselves (their make_names_data), not listed in data_meta.
_CONNECTOR_NAME_KEYS = frozenset({"docker_image", "docker_container_id", "chroot_directory"})


@cache
def pyinfra_keys() -> frozenset[str]:
    """Host data keys pyinfra itself reads: its connectors' data (ssh_*, docker_*, ...) and the
    global operation arguments that host data may set (_sudo, _sudo_user, _env, ...)."""
    from importlib.metadata import entry_points

    from pyinfra.api.arguments import all_global_arguments
    from pyinfra.connectors.ssh import SSHConnector

    keys = {name for name, _ in all_global_arguments() if name.startswith("_")}
    keys.update(SSHConnector.data_meta)  # the default connector, even where entry points are missing
    for entry in entry_points(group="pyinfra.connectors"):
        if entry.value.startswith("pyinfra."):  # pyinfra's own connectors, not third-party plugins
            keys.update(getattr(entry.load(), "data_meta", None) or {})
    return frozenset(keys | _CONNECTOR_NAME_KEYS)


def unknown_keys(data: dict[str, Any]) -> list[str]:
    """A key that is neither a setting nor pyinfra's is a typo: its default would silently win."""
    known = sorted(set(BY_NAME) | pyinfra_keys())
    found = []
    for key in sorted(str(k) for k in set(data) - set(known)):
        close = difflib.get_close_matches(key, known, n=1)
        hint = (f"did you mean {close[0]}?" if close
                else "not a deploy setting (tasks/settings/table.py), a pyinfra connector key or a global argument")
        found.append(f"{key}: is not a known inventory key: {hint}")
    return found


# --- cross-checks: rules between settings, each reading the merged data (defaults included) ---

def ports_are_distinct(data: dict[str, Any]) -> list[str]:
    ports = {key: data[key] for key in ("admin_ssh_port", "git_ssh_port", "gitea_http_port", "node_exporter_port",
                                        "prometheus_port", "alertmanager_port", "postgres_exporter_port",
                                        "nginx_exporter_port", "blackbox_exporter_port", "nginx_status_port",
                                        "grafana_port")}
    ports.update({"http (fixed)": 80, "https (fixed)": 443})
    seen: dict[Any, str] = {}
    found = []
    for key, value in ports.items():
        if value in seen:
            found.append(f"{key}: {value!r} is already used by {seen[value]}")
        seen.setdefault(value, key)
    return found


def sudo_matches_user(data: dict[str, Any]) -> list[str]:
    if data["_sudo"] is False and data.get("ssh_user", "root") != "root":
        return [f"_sudo: False, but ssh_user {data.get('ssh_user')!r} is not root: every operation "
                "needs root (leave _sudo at its default, True)"]
    return []


def ssh_user_may_log_in(data: dict[str, Any]) -> list[str]:
    """The deploy's own account in AllowUsers: otherwise the deploy would lock itself (and the
    operator) out at its next connection."""
    user = data.get("ssh_user")  # unset: pyinfra logs in as the local user, which it cannot know here
    if user and user not in (data["ssh_allow_users"] or []):
        return [f"ssh_allow_users: {data['ssh_allow_users']!r} leaves out ssh_user {user!r}, the account the deploy "
                "logs in with: add it"]
    return []


def database_has_ca(data: dict[str, Any]) -> list[str]:
    if data["database_endpoint"] and not data["database_ca_bundle"]:
        # verify-full needs the CA: without it the connection would fail, or (weaker modes) trust anyone.
        return ["database_ca_bundle: is required with database_endpoint: the PEM of the CA that signed the "
                "database's certificate (RDS: the region's bundle from AWS's RDS trust store)"]
    return []


def backup_is_complete(data: dict[str, Any]) -> list[str]:
    found = []
    if not data["backup_s3_bucket"] and not data["backup_local_repository"]:
        found.append("backup_s3_bucket: no backup repository: set it (production: Terraform's output) "
                     "or backup_local_repository")
    if data["backup_s3_bucket"] and not data["aws_region"]:
        found.append("aws_region: is required with backup_s3_bucket (Terraform's output)")
    if (data["backup_aws_access_key_id"] or data["backup_aws_secret_access_key"]) and not data["s3_endpoint"]:
        found.append("backup_aws_access_key_id: static AWS keys are for emulated AWS (s3_endpoint) only; "
                     "production uses the instance role")
    if bool(data["backup_aws_access_key_id"]) != bool(data["backup_aws_secret_access_key"]):
        found.append("backup_aws_secret_access_key: set both static key values, or neither")
    local, root = data["backup_local_repository"], data["data_root"]
    if isinstance(local, str) and local.startswith("/") and isinstance(root, str) \
            and not local.startswith(root.rstrip("/") + "/"):
        found.append(f"backup_local_repository: {local!r} must be on the data volume, below {root}")
    keep = [data[f"backup_keep_{k}"] for k in ("hourly", "daily", "weekly", "monthly")]
    if all(isinstance(v, int) for v in keep) and not any(keep):
        found.append("backup_keep_hourly: retention keeps nothing: set at least one backup_keep_* above 0")
    return found


def heartbeat_has_aws(data: dict[str, Any]) -> list[str]:
    if data["metrics_namespace"] and not data["aws_region"]:
        return ["aws_region: is required with metrics_namespace (the heartbeat publishes to CloudWatch in it; "
                "Terraform's output gives both)"]
    return []


def gitea_config_is_valid(data: dict[str, Any]) -> list[str]:
    """gitea_config and gitea_secrets together (a KEY__FILE names a declared secret)."""
    return gitea_config.problems(data["gitea_config"], data["gitea_secrets"])


def mail_is_whole(data: dict[str, Any]) -> list[str]:
    if not data["mailer_host"]:
        # Mail is off: a mailer setting given anyway is a half-done configuration, not a default.
        return [f"{key}: {data[key]!r} is set but mail is off: set mailer_host too (or remove {key})"
                for key in ("mailer_port", "mailer_from", "mailer_user") if data[key] is not None]
    if data["mailer_user"] and data["mailer_protocol"] == "smtp":
        return ["mailer_protocol: 'smtp' sends mailer_user's password unencrypted: use smtps or smtp+starttls"]
    return []


def compose_subnet_has_room(data: dict[str, Any]) -> list[str]:
    """The database's fixed address (tasks/gitea.py db_address) is the subnet's last host address;
    Docker hands out the others from the bottom, so a /28 leaves the stack 12 of them."""
    try:
        network = ipaddress.ip_network(data["compose_subnet"])
    except (TypeError, ValueError):
        return []  # its own check says why
    if network.version != 4 or network.prefixlen > 28:
        return [f"compose_subnet: {data['compose_subnet']!r} must be an IPv4 network of /28 or larger "
                "(the database takes its last host address)"]
    return []


def alerting_is_whole(data: dict[str, Any]) -> list[str]:
    found = []
    if data["alert_email_to"] and not data["mailer_host"]:
        found.append("alert_email_to: alerts are mailed through the mailer_* settings: set mailer_host too")
    elif data["alert_email_to"] and data["mailer_protocol"] == "smtps" and data["mailer_port"] not in (None, 465):
        found.append("alert_email_to: Alertmanager speaks TLS from the first byte (smtps) only on port 465: "
                     "use mailer_port 465 or smtp+starttls")
    if data["alert_sns_topic_arn"] and not data["aws_region"]:
        found.append("alert_sns_topic_arn: SigV4 signs in aws_region: set it too (Terraform output)")
    return found


CROSS_CHECKS: tuple[Callable[[dict[str, Any]], list[str]], ...] = (
    ports_are_distinct, sudo_matches_user, ssh_user_may_log_in, database_has_ca, backup_is_complete, heartbeat_has_aws,
    gitea_config_is_valid, mail_is_whole, compose_subnet_has_room, alerting_is_whole,
)


def validate(data: dict[str, Any], host: str = "") -> None:
    """Raise SettingsError naming every bad key of one host's data."""
    found = problems(data)
    if found:
        where = f" for host {host}" if host else ""
        raise SettingsError(f"invalid inventory data{where}:\n    " + "\n    ".join(found))


def require_defaults(data: dict[str, Any]) -> None:
    """The defaults reach hosts through group_data/all.py, which pyinfra reads from the directory it
    runs in: run from elsewhere, every default would be missing. Say so instead of failing later."""
    missing = sorted(set(defaults()) - set(data))
    if missing:
        raise SettingsError(f"{len(missing)} settings have no value ({', '.join(missing[:3])}, ...): "
                            "group_data/all.py was not loaded; run pyinfra from the repository root")
