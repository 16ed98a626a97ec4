"""The checks settings use: each takes a value and returns None when it is fine, else what is wrong.

Checks are whitelists matched in full (`re.fullmatch`: `$` would admit a trailing newline): no
newline, quote, `$`, backtick or `$()` reaches a domain, URL, path, cron field, image reference or
user name. Values that may legally hold awkward characters (an e-mail like o'brien@example.com, the
site title) are quoted where they are used: `shlex.quote` in shell commands, `tojson` in YAML/JSON.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from typing import Any

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
        return "has no tag: pin a version (e.g. gitea/gitea:1.27.3-rootless), never latest"
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


def path_below_root(value: str) -> str | None:
    """A path on the data volume: relative to data_root, or absolute (the cross-checks keep it below)."""
    return absolute_path(value) if value.startswith("/") else relative_path(value)


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
    for text, (what, low, high) in zip(fields, _CRON_FIELDS, strict=True):
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


def cloudwatch_namespace(value: str) -> str | None:
    # CloudWatch's own rule (letters, digits and . - _ / # : up to 255; AWS/ is reserved), less the
    # space: the same value is an IAM condition and an EC2 tag, where a space only invites mistakes.
    if re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", value) and not value.startswith("AWS/"):
        return None
    return "is not a CloudWatch namespace (1-255 of letters, digits and . - _ / # :, not starting with AWS/)"


def cloudwatch_metric(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]{0,254}", value):
        return None
    return "is not a metric name (a letter, then up to 254 of letters, digits and . _ -)"


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


def update_window(value: str) -> str | None:
    """files/updates/gitea_window.py's grammar (the host's gitea-update reads the same)."""
    from tasks import host_module

    try:
        host_module("gitea_window").parse_window(value)
    except ValueError as error:
        return str(error).replace(f"update window {value!r} ", "").replace(f"update window {value!r}: ", "")
    return None


def time_zone(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+)*", value) else "is not a time zone name"


def journal_size(value: str) -> str | None:
    """A size as journald.conf takes it (SystemMaxUse=): digits and K, M, G or T."""
    return None if re.fullmatch(r"[1-9][0-9]{0,5}[KMGT]", value) else "is not a journald size (e.g. 1G, 500M)"


def time_span(value: str) -> str | None:
    """A systemd time span for MaxRetentionSec= (one number and unit: 30d, 2weeks, 1month, 1year)."""
    if re.fullmatch(r"[1-9][0-9]{0,4}(d|day|days|w|week|weeks|month|months|y|year|years)", value):
        return None
    return "is not a systemd time span in days, weeks, months or years (e.g. 1month, 30d)"


def unix_account(value: str) -> str | None:
    """A login name as Debian's adduser admits it (a word sshd's AllowUsers takes as is)."""
    return None if re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value) else "is not a Unix login name (a-z 0-9 _ -)"


def not_root(value: int) -> str | None:
    """A container uid: never 0, within the kernel's uid range."""
    return None if 0 < value < 2**31 else "must not be root"


# mailer checks (Gitea's [mailer])

def mail_host(value: str) -> str | None:
    """The SMTP server: a DNS name (one label allowed: a Compose service) or an IP address."""
    if _url_host(value) or _ip_address(value):
        return None
    return "is not a host name or IP address (e.g. email-smtp.eu-central-1.amazonaws.com)"


_DISPLAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 '-]{0,62}")


def mail_from(value: str) -> str | None:
    """An address, optionally with a display name: gitea@example.com or `Example Git <gitea@example.com>`
    (Gitea parses it with Go's net/mail; the name is kept to letters, digits, space, ' and -)."""
    name, _, address = value.partition(" <")
    if address:
        if not (address.endswith(">") and _DISPLAY_NAME.fullmatch(name) and name == name.strip()):
            return "must be name@domain or `Display Name <name@domain>` (the name of letters, digits, space, ' -)"
        value = address[:-1]
    return email(value)


def smtp_user(value: str) -> str | None:
    # SES's SMTP user names look like access key IDs, other providers use an address.
    if re.fullmatch(r"[A-Za-z0-9@._+=:%/-]{1,256}", value):
        return None
    return "must be 1-256 of letters, digits and @ . _ + = : % / -"


# monitoring checks (Prometheus's own formats: they reach its command line and config)

_DURATION = re.compile(r"([0-9]{1,6})(ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(value: str) -> float:
    """Seconds of a one-unit Prometheus duration ("30s", "15d"); ValueError for anything else."""
    match = _DURATION.fullmatch(value)
    if not match:
        raise ValueError(value)
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def prometheus_duration(low: float, high: float) -> Callable[[str], str | None]:
    """A Prometheus duration of one unit (30s, 15d), between low and high seconds."""

    def check(value: str) -> str | None:
        try:
            seconds = duration_seconds(value)
        except ValueError:
            return "is not a Prometheus duration (a number and one unit of ms s m h d w y, e.g. 30s)"
        return None if low <= seconds <= high else f"must lie between {low:g} s and {high:g} s"

    return check


def prometheus_size(value: str) -> str | None:
    """--storage.tsdb.retention.size: a number and a unit, at least 100MB (Prometheus's TSDB keeps
    whole blocks: below that it would delete its newest data)."""
    match = re.fullmatch(r"([0-9]{1,6})(MB|GB|TB)", value)
    if not match:
        return "is not a Prometheus size (a number and MB, GB or TB, e.g. 2GB)"
    megabytes = int(match.group(1)) * {"MB": 1, "GB": 1024, "TB": 1024 * 1024}[match.group(2)]
    return None if megabytes >= 100 else "must be at least 100MB"


# alerting checks (Alertmanager's receivers, tasks/alerting.py)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_QUERY = re.compile(r"[A-Za-z0-9._~%/+=:@,&-]*")


def alert_url(value: str) -> str | None:
    """Where Alertmanager posts: https, or plain http to this host's loopback only (a local relay, a
    test's catcher); a notification that leaves the host is encrypted. A query (webhook tokens) of
    URL-safe characters is allowed: the URL is only ever written to a file (url_file)."""
    url, _, query = value.partition("?")
    match = _URL.fullmatch(url)
    if match and _QUERY.fullmatch(query):
        if _url(url, ("https",), path=True):
            return None
        if _url(url, ("http",), path=True) and match["host"] in _LOOPBACK_HOSTS:
            return None
    return ("must be an https:// URL (http:// only to 127.0.0.1, localhost or [::1]); path and query of "
            "letters, digits and ._~%/+=:@,&-")


def each(check: Callable[[Any], str | None]) -> Callable[[list], str | None]:
    """A check of a list setting: every item passes `check`; the first that does not is named."""
    def check_all(values: list) -> str | None:
        for item in values:
            if not isinstance(item, str) or (why := check(item)):
                return f"item {item!r} {why or 'is not a string'}"
        return None if len(set(values)) == len(values) else "lists an item twice"
    return check_all


def sns_topic_arn(value: str) -> str | None:
    if re.fullmatch(r"arn:aws(-[a-z]+)*:sns:[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]:[0-9]{12}:[A-Za-z0-9_-]{1,256}",
                    value):
        return None
    return "is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
