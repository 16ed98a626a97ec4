"""Every inventory data key the deploy reads: its type, default, check and meaning.

This is the one place inventory data is defined. `group_data/all.py` exports the defaults,
inventories override them, and `validate()` runs twice: when an inventory file is loaded (before
pyinfra connects to any host) and at the top of deploy.py (which also sees `--data` overrides).
A bad value stops the run with one line per bad key, and so does an unknown key (with the
closest known name: a misspelt key would otherwise be silently ignored and its default used).

Checks are whitelists matched in full (`re.fullmatch`: `$` would admit a trailing newline): no
newline, quote, `$`, backtick or `$()` reaches a domain, URL, path, cron field, image reference or
user name. Values that may legally hold awkward characters (an e-mail like o'brien@example.com, the
site title) are quoted where they are used: `shlex.quote` in shell commands, `tojson` in YAML/JSON.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

from pyinfra.api.exceptions import PyinfraError

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

REQUIRED = object()  # default for keys every inventory must set


class SettingsError(PyinfraError):
    """Raised as a pyinfra error so the CLI prints one clean line per key, no traceback."""


# --- checks: each returns None when fine, else what is wrong --------------------------------

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def fqdn(value: str) -> str | None:
    """A DNS name of two or more labels of a-z 0-9 - (any case), no trailing dot."""
    labels = value.lower().split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return "is not a valid fully qualified domain name (e.g. git.example.com)"
    if labels[-1].isdigit():
        return "is an IP address, not a domain name"
    return None


def domain_name(value: str) -> str | None:
    """The site's own name: an FQDN in lower case. certbot names its lineage (live/<name>/) and
    nginx serves what is written; mixed case would make the two disagree."""
    if value != value.lower():
        return "must be written in lower case (DNS names are case-insensitive)"
    return fqdn(value)


def _ip_address(value: str) -> bool:
    if not re.fullmatch(r"[0-9a-fA-F.:]+", value):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _url_host(value: str) -> bool:
    """A host in a URL: a DNS name (one label allowed: localhost), an IPv4 address or [IPv6]."""
    if value.startswith("[") and value.endswith("]"):
        return ":" in value and _ip_address(value[1:-1])
    labels = value.lower().split(".")
    if labels[-1].isdigit():
        return _ip_address(value)
    return len(value) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _port_text(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9]{1,5}", value)) and 1 <= int(value) <= 65535


# RFC 5322 dot-atom local part, less `$` and the backtick (no shell or Compose expansion can ever
# apply to an address) and no quoted forms. The apostrophe stays legal (o'brien@example.com): every
# command that carries an address quotes it with shlex.quote.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#%&'*+/=?^_{|}~-]+(?:\.[A-Za-z0-9!#%&'*+/=?^_{|}~-]+)*")


def email(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if not at or len(value) > 254 or len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local) \
            or local.startswith("-") or fqdn(domain):
        return "is not a valid e-mail address (name@domain.tld; the name of letters, digits and .!#%&'*+/=?^_{|}~-)"
    return None


def port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "is not a TCP port (1-65535)"


_URL = re.compile(r"(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[^/]*))?"
                  r"(?P<path>/[A-Za-z0-9._~%/+=:@,-]*)?")


def _url(value: str, schemes: tuple[str, ...], path: bool) -> bool:
    match = _URL.fullmatch(value)
    return bool(match) and match["scheme"] in schemes and _url_host(match["host"]) \
        and (match["port"] is None or _port_text(match["port"])) and (path or match["path"] in (None, "/"))


def https_url(value: str) -> str | None:
    if _url(value, ("https",), path=True):
        return None
    return "must be an https:// URL (host[:port], a path of letters, digits and ._~%/+=:@,-; no query)"


# The OCI distribution reference grammar (distribution/reference): domain[:port]/path:tag@digest.
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_IMAGE_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?P<name>(?:{_IMAGE_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)


def pinned_image(value: str) -> str | None:
    """An image reference (OCI grammar) that names one version: a digest, or a tag other than latest."""
    match = _IMAGE.fullmatch(value)
    if not match or len(match["name"]) > 255:
        return ("is not an image reference: [registry[:port]/]name:tag or name@sha256:<64 hex> "
                "(name components of a-z 0-9 and . _ __ -)")
    if match["digest"]:
        return None
    if not match["tag"]:
        return "has no tag: pin a version (e.g. gitea/gitea:1.24.6-rootless), never latest"
    if match["tag"] == "latest":
        return f"tag {match['tag']!r} is not a pinned version"
    return None


_PATH = re.compile(r"(?:/[A-Za-z0-9._@+-]+)+")


def absolute_path(value: str) -> str | None:
    # The whitelist keeps paths safe in Compose volume specs (no :), systemd lines (no % $ or
    # spaces) and shells (quoted anyway).
    if not _PATH.fullmatch(value) or any(part in (".", "..") for part in value.split("/")) or len(value) > 1024:
        return "must be an absolute path below / (not / itself, no . or .., no trailing /; letters, digits and ._@+-)"
    return None


def relative_path(value: str) -> str | None:
    """A path below a root directory: the same characters as absolute_path, no leading /."""
    if not _PATH.fullmatch("/" + value) or any(part in (".", "..") for part in value.split("/")) or len(value) > 1024:
        return "must be a path below data_root (no . or .., no trailing /; letters, digits and ._@+-)"
    return None


def host_port(value: str) -> str | None:
    """host:port with a fully qualified domain name or an IP address ([v6]:port) as the host."""
    host, sep, port_text = value.rpartition(":")
    ipv4 = "." in host and ":" not in host and _ip_address(host)
    ipv6 = host.startswith("[") and host.endswith("]") and ":" in host and _ip_address(host[1:-1])
    if sep and _port_text(port_text) and (fqdn(host) is None or ipv4 or ipv6):
        return None
    return "is not host:port (a domain name or an IP address, and a port 1-65535)"


def display_text(value: str) -> str | None:
    """Free text shown to people (the site title): any printable character, carried exactly."""
    if not 1 <= len(value) <= 100 or value != value.strip():
        return "must be 1-100 characters without leading or trailing spaces"
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        # Gitea's app.ini reader (go-ini) strips quotes around a whole value.
        return "must not be wrapped in quotes as a whole (Gitea's app.ini would drop them)"
    for char in value:
        # Characters beyond U+FFFF would reach the compose file as JSON surrogate pairs, which
        # Compose's YAML parser rejects.
        if unicodedata.category(char)[0] == "C" or ord(char) > 0xFFFF:
            return (f"holds {char!r}: control and format characters (newlines, tabs) and characters "
                    "beyond U+FFFF (emoji) are refused")
    return None


def pem_certificates(value: str | None) -> str | None:
    if value is None:
        return None
    if "-----BEGIN CERTIFICATE-----" not in value or "PRIVATE KEY" in value:
        return "must be PEM certificate text (no private keys)"
    return None


def size(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9]{1,12}[kKmMgG]?", value) else "is not an nginx size (e.g. 512M)"


def username(value: str) -> str | None:
    # Gitea reserves these names; creating them fails late inside the container.
    if value.lower() in {"admin", "api", "assets", "user", "explore", "org", "repo", "login"}:
        return "is a name Gitea reserves"
    # Gitea's rule: alphanumerics with single - _ . between them, at most 40 characters.
    if len(value) <= 40 and re.fullmatch(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*", value):
        return None
    return "is not a valid Gitea username (letters, digits, single - _ . between them, up to 40)"


def cidr(value: str) -> str | None:
    try:
        if not re.fullmatch(r"[0-9a-fA-F.:]+/[0-9]{1,3}", value):
            raise ValueError(value)
        ipaddress.ip_network(value)
    except ValueError:
        return "is not a CIDR network (e.g. 172.30.0.0/24)"
    return None


def one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


# backup checks
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_CRON_NICKNAMES = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}


def cron_schedule(value: str) -> str | None:
    """Five numeric cron fields (*, lists, ranges, steps) or a nickname such as @hourly."""
    if value in _CRON_NICKNAMES:
        return None
    # Fields of digits and * , - / only, separated by spaces: nothing else can reach the cron line.
    if not re.fullmatch(r"[0-9*,/-]+(?: +[0-9*,/-]+){4}", value):
        return "is not a cron schedule: five fields (e.g. 15 * * * *) or @hourly/@daily/..."
    fields = value.split()
    for text, (what, low, high) in zip(fields, _CRON_FIELDS):
        for part in text.split(","):
            span, _, step = part.partition("/")
            bounds = [] if span == "*" else span.split("-")
            numbers = [*bounds, *([step] if step else [])]
            if not all(n.isdigit() for n in numbers) or len(bounds) > 2 or (step and int(step) == 0) \
                    or not all(low <= int(n) <= high for n in bounds):
                return f"has a bad {what} field {text!r} (numbers {low}-{high}, *, a-b, /step, lists)"
    return None


def s3_bucket(value: str) -> str | None:
    ok = re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value) and ".." not in value
    if not ok or re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", value):
        return "is not an S3 bucket name (3-63 of a-z 0-9 . -)"
    return None


def key_prefix(value: str) -> str | None:
    # The same rule as terraform/variables.tf backup_s3_prefix: the IAM policy is written for it.
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*", value):
        return None
    return "must be a relative key prefix without leading or trailing / (e.g. gitea or prod/gitea)"


def ssm_path(value: str) -> str | None:
    # The same rule as terraform/variables.tf ssm_parameter_path.
    if re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", value) and not re.match(r"/(aws|ssm)", value.lower()):
        return None
    return "must look like /a/b (no trailing /) and not start with /aws or /ssm"


def endpoint_url(value: str) -> str | None:
    return None if _url(value, ("http", "https"), path=False) else "must be http(s)://host[:port] with no path"


def aws_region(value: str) -> str | None:
    return None if re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]", value) else "is not an AWS region (e.g. eu-central-1)"


def not_a_real_aws_key(value: str) -> str | None:
    # Static keys are for emulated AWS only; production uses the instance role.
    if re.match(r"(AKIA|ASIA)[A-Z0-9]{12,}", value):
        return "looks like a real AWS access key: production uses the instance role, never static keys"
    return None if re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", value) else "must be 1-128 of letters, digits and _ . -"


def key_secret(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9/+=_.-]{1,128}", value) else "must be 1-128 of letters, digits and / + = _ . -"


def bounded(low: int, high: int) -> Callable[[int], str | None]:
    return lambda value: None if low <= value <= high else f"must be {low}-{high}"


def percentage(value: str) -> str | None:
    return None if re.fullmatch(r"(100|[1-9][0-9]?)(\.[0-9]+)?%", value) else "must be a percentage (e.g. 5%)"


def snapshot_id(value: str | int) -> str | None:
    if isinstance(value, int):  # pyinfra's --data turns 12345678 into a number: leading zeros are lost
        return "is a number: pass the ID as a JSON string, --data 'restore_snapshot=\"01234567\"'"
    return None if value == "latest" or re.fullmatch(r"[0-9a-f]{8,64}", value) else "must be latest or a snapshot ID"


@dataclass(frozen=True)
class Setting:
    name: str
    concern: str  # the task module that reads it
    type: type | tuple[type, ...]
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None


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
            lambda v: None if re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+)*", v) else "is not a time zone name"),
    # docker: the engine
    Setting("docker_log_max_size", "docker", str, "10m", "json-file log rotation: size per file.",
            lambda v: None if re.fullmatch(r"[0-9]{1,9}[kmg]", v) else "must look like 10m"),
    Setting("docker_log_max_file", "docker", int, 3, "json-file log rotation: files kept per container.",
            lambda v: None if 1 <= v <= 100 else "must be 1-100"),
    # gitea: the Compose stack
    Setting("gitea_domain", "gitea", str, REQUIRED, "Public FQDN users reach Gitea at (lower case).", domain_name),
    Setting("gitea_image", "gitea", str, "docker.gitea.com/gitea:1.24.6-rootless",
            "Gitea image (the rootless variant). Pinned: patch releases only without a person.",
            pinned_image),
    Setting("postgres_image", "gitea", str, "docker.io/library/postgres:17.6-trixie",
            "PostgreSQL image. Pin the major: a major bump needs a dump and restore.", pinned_image),
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
            lambda v: None if 0 < v < 2**31 else "must not be root"),
    Setting("postgres_uid", "gitea", int, 999,
            "uid of postgres in the PostgreSQL image (image contract); the deploy refuses a host where a "
            "login account has it.",
            lambda v: None if v > 0 else "must not be root"),
    # nginx + certbot: the HTTPS front door
    Setting("acme_email", "certbot", str, REQUIRED, "ACME account e-mail (expiry notices).", email),
    Setting("acme_server", "certbot", str, LETSENCRYPT,
            f"ACME directory. Let's Encrypt by default; staging: {LETSENCRYPT_STAGING}.", https_url),
    Setting("acme_ca_bundle", "certbot", (str, type(None)), None,
            "PEM of a private ACME server's TLS CA (the lab's pebble); None for Let's Encrypt.",
            pem_certificates),
    Setting("nginx_client_max_body_size", "nginx", str, "512M",
            "Largest request nginx passes to Gitea (pushes, LFS, attachments).", size),
    # backup: restic to S3 and/or a local repository, on a cron schedule (tasks/backup.py,
    # docs/concepts/backup.md). The AWS names come from Terraform's outputs.
    Setting("aws_region", "backup", (str, type(None)), None,
            "AWS region of the backup bucket and the SSM parameters (Terraform output).", aws_region),
    Setting("backup_s3_bucket", "backup", (str, type(None)), None,
            "S3 bucket of the restic repository (Terraform output); None: no S3 repository.", s3_bucket),
    Setting("backup_s3_prefix", "backup", str, "gitea",
            "Key prefix of the restic repository in the bucket (the instance role may use only it).", key_prefix),
    Setting("s3_endpoint", "backup", (str, type(None)), None,
            "Emulated AWS only (the lab's moto): endpoint for S3 and SSM. None: the real AWS endpoints.",
            endpoint_url),
    Setting("backup_aws_access_key_id", "backup", (str, type(None)), None,
            "Emulated AWS only: a static key ID. None in production: restic and boto3 use the instance role.",
            not_a_real_aws_key),
    Setting("backup_aws_secret_access_key", "backup", (str, type(None)), None,
            "Emulated AWS only: the static key's secret (written root-only on the host, never in backup.env).",
            key_secret),
    Setting("ssm_parameter_path", "backup", (str, type(None)), None,
            "SSM Parameter Store path (Terraform output); the restic password is kept at "
            "<path>/restic_password so a replacement host can restore. None: not kept in SSM.", ssm_path),
    Setting("backup_local_repository", "backup", (str, type(None)), "backup/restic",
            "The restic repository on the data volume that takes each snapshot while Gitea is paused (S3 gets "
            "a copy after): relative to data_root, or absolute below it. None: none (the pause then waits on S3).",
            lambda v: absolute_path(v) if v.startswith("/") else relative_path(v)),
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
    # restore: run-time choices of `pyinfra INVENTORY restore.py` (--data restore_snapshot=...)
    Setting("restore_snapshot", "restore", (str, int), "latest", "The snapshot restore.py restores.",
            snapshot_id),
    Setting("restore_force", "restore", bool, False,
            "Let restore.py overwrite a host that already holds repositories or users."),
)

BY_NAME = {s.name: s for s in SETTINGS}


def defaults(concern: str | None = None) -> dict[str, Any]:
    """Default values, all or one concern's; required keys have none."""
    return {
        s.name: s.default
        for s in SETTINGS
        if s.default is not REQUIRED and (concern is None or s.concern == concern)
    }


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
    found.extend(_cross_checks(data))
    found.extend(_backup_cross_checks(data))
    found.extend(_database_checks(data))
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
                else "not a deploy setting (tasks/settings.py), a pyinfra connector key or a global argument")
        found.append(f"{key}: is not a known inventory key: {hint}")
    return found


def _database_checks(data: dict[str, Any]) -> list[str]:
    if data.get("database_endpoint") and not data.get("database_ca_bundle"):
        # verify-full needs the CA: without it the connection would fail, or (weaker modes) trust anyone.
        return ["database_ca_bundle: is required with database_endpoint: the PEM of the CA that signed the "
                "database's certificate (RDS: the region's bundle from AWS's RDS trust store)"]
    return []


def _cross_checks(data: dict[str, Any]) -> list[str]:
    ports = {"admin_ssh_port": data.get("admin_ssh_port", 2222), "git_ssh_port": data.get("git_ssh_port", 22),
             "gitea_http_port": data.get("gitea_http_port", 3000), "http (fixed)": 80, "https (fixed)": 443}
    seen: dict[Any, str] = {}
    found = []
    for key, value in ports.items():
        if value in seen:
            found.append(f"{key}: {value!r} is already used by {seen[value]}")
        seen.setdefault(value, key)
    if data.get("_sudo", True) is False and data.get("ssh_user", "root") != "root":
        found.append(f"_sudo: False, but ssh_user {data.get('ssh_user')!r} is not root: every operation "
                     "needs root (leave _sudo at its default, True)")
    return found


def _backup_cross_checks(data: dict[str, Any]) -> list[str]:
    def get(key: str) -> Any:
        return data.get(key, BY_NAME[key].default)

    found = []
    if not get("backup_s3_bucket") and not get("backup_local_repository"):
        found.append("backup_s3_bucket: no backup repository: set it (production: Terraform's output) "
                     "or backup_local_repository")
    if get("backup_s3_bucket") and not get("aws_region"):
        found.append("aws_region: is required with backup_s3_bucket (Terraform's output)")
    if (get("backup_aws_access_key_id") or get("backup_aws_secret_access_key")) and not get("s3_endpoint"):
        found.append("backup_aws_access_key_id: static AWS keys are for emulated AWS (s3_endpoint) only; "
                     "production uses the instance role")
    if bool(get("backup_aws_access_key_id")) != bool(get("backup_aws_secret_access_key")):
        found.append("backup_aws_secret_access_key: set both static key values, or neither")
    local, root = get("backup_local_repository"), get("data_root")
    if isinstance(local, str) and local.startswith("/") and isinstance(root, str) \
            and not local.startswith(root.rstrip("/") + "/"):
        found.append(f"backup_local_repository: {local!r} must be on the data volume, below {root}")
    keep = [get(f"backup_keep_{k}") for k in ("hourly", "daily", "weekly", "monthly")]
    if all(isinstance(v, int) for v in keep) and not any(keep):
        found.append("backup_keep_hourly: retention keeps nothing: set at least one backup_keep_* above 0")
    if get("node_exporter_port") in (get("gitea_http_port"), get("admin_ssh_port"), get("git_ssh_port"), 80, 443):
        found.append(f"node_exporter_port: {get('node_exporter_port')!r} is already used by another service")
    return found


def validate(data: dict[str, Any], host: str = "") -> None:
    """Raise SettingsError naming every bad key of one host's data."""
    found = problems(data)
    if found:
        where = f" for host {host}" if host else ""
        raise SettingsError(f"invalid inventory data{where}:\n    " + "\n    ".join(found))


# --- inventory-time validation (before pyinfra connects to anything) -------------------------

REPO = Path(__file__).resolve().parents[1]


def group_data(name: str, folder: Path = REPO / "group_data") -> dict[str, Any]:
    """The data a group_data/<name>.py file gives, read the way pyinfra reads it (names with one
    leading underscore, such as `_sudo`, are data: pyinfra takes global arguments from host data)."""
    path = folder / f"{name}.py"
    if not path.exists():
        return {}
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return {k: v for k, v in namespace.items()
            if not k.startswith("__") and not callable(v) and not isinstance(v, type(re))}


def checked_hosts(hosts: list, group: str, group_values: dict | None = None) -> list:
    """Validate an inventory group's hosts with pyinfra's precedence, then return them unchanged.

    Precedence (low to high): settings defaults < group_data/all.py < group_data/<group>.py <
    the group's own data < each host's data. `--data` overrides are checked again in deploy.py.
    """
    base = {**defaults(), **group_data("all"), **group_data(group), **(group_values or {})}
    for host in hosts:
        name, data = host if isinstance(host, tuple) else (host, {})
        validate({**base, **data}, host=name)
    return hosts
