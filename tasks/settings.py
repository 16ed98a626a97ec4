"""Every inventory data key the deploy reads: its type, default, check and meaning.

This is the one place inventory data is defined. `group_data/all.py` exports the defaults,
inventories override them, and `validate()` runs twice: when an inventory file is loaded (before
pyinfra connects to any host) and at the top of deploy.py (which also sees `--data` overrides).
A bad value stops the run with one line per bad key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pyinfra.api.exceptions import PyinfraError

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

REQUIRED = object()  # default for keys every inventory must set


class SettingsError(PyinfraError):
    """Raised as a pyinfra error so the CLI prints one clean line per key, no traceback."""


# --- checks: each returns None when fine, else what is wrong --------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def fqdn(value: str) -> str | None:
    name = value.rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return "is not a valid fully qualified domain name (e.g. git.example.com)"
    if labels[-1].isdigit():
        return "is an IP address, not a domain name"
    return None


def email(value: str) -> str | None:
    local, _, domain = value.partition("@")
    if not local or " " in value or fqdn(domain):
        return "is not a valid e-mail address"
    return None


def port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "is not a TCP port (1-65535)"


def https_url(value: str) -> str | None:
    return None if re.match(r"^https://[^/\s]+(/\S*)?$", value) else "must be an https:// URL"


def pinned_image(value: str) -> str | None:
    """An image reference that names one version: a digest, or a tag other than latest."""
    if "@sha256:" in value:
        return None
    name = value.rsplit("/", 1)[-1]
    if ":" not in name:
        return "has no tag: pin a version (e.g. gitea/gitea:1.24.6-rootless), never latest"
    tag = name.rsplit(":", 1)[1]
    if tag == "latest" or not re.match(r"^[\w][\w.-]{0,127}$", tag):
        return f"tag {tag!r} is not a pinned version"
    return None


def absolute_path(value: str) -> str | None:
    path = Path(value)
    if not path.is_absolute() or ".." in path.parts or value in ("/", ""):
        return "must be an absolute path below / (not / itself, no ..)"
    return None


def pem_certificates(value: str | None) -> str | None:
    if value is None:
        return None
    if "-----BEGIN CERTIFICATE-----" not in value or "PRIVATE KEY" in value:
        return "must be PEM certificate text (no private keys)"
    return None


def size(value: str) -> str | None:
    return None if re.match(r"^[0-9]+[kKmMgG]?$", value) else "is not an nginx size (e.g. 512M)"


def username(value: str) -> str | None:
    # Gitea reserves these names; creating them fails late inside the container.
    if value.lower() in {"admin", "api", "assets", "user", "explore", "org", "repo", "login"}:
        return "is a name Gitea reserves"
    return None if re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$", value) else "is not a valid Gitea username"


def cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        return "is not a CIDR network (e.g. 172.30.0.0/24)"
    return None


def one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


@dataclass(frozen=True)
class Setting:
    name: str
    concern: str  # the task module that reads it
    type: type | tuple[type, ...]
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None


SETTINGS: tuple[Setting, ...] = (
    # base: the host itself
    Setting("admin_ssh_port", "base", int, 2222,
            "Port of the administrator's OpenSSH (git SSH takes 22). Set by cloud-init / the lab "
            "before the first deploy; the deploy keeps it.", port),
    Setting("timezone", "base", str, "UTC", "System time zone.",
            lambda v: None if re.match(r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", v) else "is not a time zone name"),
    # docker: the engine
    Setting("docker_log_max_size", "docker", str, "10m", "json-file log rotation: size per file.",
            lambda v: None if re.match(r"^[0-9]+[kmg]$", v) else "must look like 10m"),
    Setting("docker_log_max_file", "docker", int, 3, "json-file log rotation: files kept per container.",
            lambda v: None if 1 <= v <= 100 else "must be 1-100"),
    # gitea: the Compose stack
    Setting("gitea_domain", "gitea", str, REQUIRED, "Public FQDN users reach Gitea at.", fqdn),
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
    Setting("gitea_app_name", "gitea", str, "Gitea", "Site title."),
    Setting("gitea_disable_registration", "gitea", bool, True, "Only admins create accounts."),
    Setting("gitea_require_signin_view", "gitea", bool, False, "Hide everything from anonymous visitors."),
    Setting("gitea_admin_username", "gitea", str, "gitadmin", "The first administrator account.", username),
    Setting("gitea_admin_email", "gitea", str, REQUIRED, "The first administrator's e-mail.", email),
    Setting("gitea_uid", "gitea", int, 1000, "uid the rootless Gitea image runs as (image contract).",
            lambda v: None if v > 0 else "must not be root"),
    Setting("postgres_uid", "gitea", int, 999, "uid of postgres in the PostgreSQL image (image contract).",
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
    return found


def _cross_checks(data: dict[str, Any]) -> list[str]:
    ports = {"admin_ssh_port": data.get("admin_ssh_port", 2222), "git_ssh_port": data.get("git_ssh_port", 22),
             "gitea_http_port": data.get("gitea_http_port", 3000), "http (fixed)": 80, "https (fixed)": 443}
    seen: dict[Any, str] = {}
    found = []
    for key, value in ports.items():
        if value in seen:
            found.append(f"{key}: {value!r} is already used by {seen[value]}")
        seen.setdefault(value, key)
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
    """The data a group_data/<name>.py file gives, read the way pyinfra reads it."""
    path = folder / f"{name}.py"
    if not path.exists():
        return {}
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not callable(v) and not isinstance(v, type(re))}


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
