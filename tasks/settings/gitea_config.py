"""The operator's app.ini passthrough: `gitea_config` and `gitea_secrets`.

    gitea_config = {
        "": {"RUN_MODE": "prod"},                      # "" is app.ini's root section (no [header])
        "repository.pull-request": {"DEFAULT_MERGE_STYLE": "squash"},
        "cache": {"ADAPTER": "redis", "HOST__FILE": "redis_url"},
    }
    gitea_secrets = {"redis_url": "operator"}          # or "generate"

Every entry becomes one `GITEA__<section>__<KEY>` variable of the Gitea container, which Gitea's
image writes into app.ini at every start (modules/setting/config_env.go EnvironmentToConfig, run by
the image's environment-to-ini / `gitea config edit-ini --apply-env`). Checked here, before any host
is touched:

- Names. Gitea decodes the variable name (decodeEnvSectionKey): the text up to the first `__` is the
  section, lower-cased, the rest the key, and `_0X<hex>_` decodes to those bytes. So the root section
  is the empty one, `GITEA____KEY` (`GITEA__DEFAULT__KEY` makes a junk `[default]` section); `.` and
  `-` in a section are written `_0X2E_` / `_0X2D_`; a name holding `__` or `_0x` would decode to
  something else, and a key ending in `__FILE` would be read as a file reference. Sections are lower
  case `a-z 0-9 . - _`, keys upper case `A-Z 0-9 _`; each name is encoded, decoded again the way Gitea
  does it, and refused unless it comes back unchanged.
- Values: str, int, float or bool (bools as true/false, numbers as text). Strings hold no control or
  format characters (no newline can start a new app.ini line), nothing beyond U+FFFF (Compose's YAML
  parser rejects the JSON surrogate pairs), no leading/trailing space or whole-value quotes (go-ini
  strips them when Gitea reads app.ini) and no `\"\"\"` (go-ini's own quoting). `$` is carried: the
  compose template writes it `$$`.
- Keys the deploy owns (OWNED) are refused, each naming the setting that sets it.
- Secrets never inline: a key whose name marks a secret, or a value holding URL credentials, is
  refused; the operator writes `KEY__FILE: "<name>"` and declares `<name>` in gitea_secrets, where it
  comes from: "generate" (random, made once on the host like the deploy's own secrets, never
  regenerated) or "operator" (the operator puts <data_root>/secrets/<name> there; the deploy stops
  until it exists). The container reads it at /run/secrets/<name>.

This module is pure (no pyinfra, nothing from the rest of tasks.settings): validation.py calls
problems(), tasks/gitea.py calls render() for the compose file and tasks/secrets.py reads
gitea_secrets for the files it makes.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

PREFIX = "GITEA__"
FILE_SUFFIX = "__FILE"
SECRETS_IN_CONTAINER = "/run/secrets"
SOURCES = ("generate", "operator")

SECRET_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Sections as Gitea names them ([repository.pull-request], [cron.update_mirrors], [oauth2_client]).
SECTION = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
KEY = re.compile(r"[A-Z0-9]+(?:_[A-Z0-9]+)*")
MAX_VALUE = 4096

# Files the deploy itself keeps in the secrets directory (tasks/secrets.py LAYOUT, the first
# administrator's password and its capture, the backups' restic password, the mailer's password,
# Grafana's admin password): an operator secret of the same name would overwrite or be overwritten
# by one of them.
DEPLOY_SECRETS = frozenset({
    "db_password", "secret_key", "internal_token", "jwt_secret", "lfs_jwt_secret", "metrics_token",
    "admin_password", "restic_password", "mailer_password", "grafana_admin_password",
})

_DB = "database_endpoint, database_ca_bundle (an external PostgreSQL); the stack's own database is fixed"
_FIXED = "the deploy fixes it (the container contract the compose file, nginx and the health check rely on)"
_GENERATED = "a secret the deploy generates once (tasks/secrets.py) and passes as a __FILE"
_MAILER = "the mailer settings (mailer_host, mailer_port, mailer_protocol, mailer_from, mailer_user)"

# (section, KEY) -> what sets it instead. A whole section when KEY is None.
_FRONT_DOOR = "templates/nginx/gitea-https.conf.j2: nginx sends X-Frame-Options and hides Gitea's"

OWNED: dict[tuple[str, str | None], str] = {
    # The root section. APP_NAME is the site title; RUN_USER must be the name the compose file gives the
    # container's uid (USER, Gitea refuses to run otherwise); WORK_PATH is the image's /var/lib/gitea.
    ("", "APP_NAME"): "gitea_app_name",
    ("", "RUN_USER"): _FIXED,
    ("", "WORK_PATH"): _FIXED,
    # The database: its address, TLS mode, CA, name, user and password are the deploy's (the backup and
    # the restore reach the same database with the same values).
    ("database", None): _DB,
    # [server]: the public name and ports nginx, certbot and Terraform agree on; Gitea's own listeners
    # are the container's published 3000 (HTTP, behind nginx: plain http) and 2222 (built-in SSH).
    ("server", "DOMAIN"): "gitea_domain",
    ("server", "ROOT_URL"): "gitea_domain (ROOT_URL is https://<gitea_domain>/)",
    ("server", "SSH_DOMAIN"): "gitea_domain",
    ("server", "SSH_PORT"): "git_ssh_port",
    ("server", "HTTP_PORT"): "gitea_http_port (the host's port; inside the container Gitea listens on 3000)",
    ("server", "HTTP_ADDR"): _FIXED,
    ("server", "PROTOCOL"): _FIXED + ": nginx terminates TLS and talks http to Gitea",
    ("server", "SSH_LISTEN_PORT"): "git_ssh_port (the container's built-in SSH listens on 2222, published there)",
    ("server", "START_SSH_SERVER"): _FIXED + ": git over SSH is Gitea's built-in server",
    # Hooks call Gitea back over it: a wrong one breaks every push (go-gitea/gitea#10698, #22293).
    ("server", "LOCAL_ROOT_URL"): _FIXED + ": git hooks reach Gitea over it",
    # Links are always made from ROOT_URL: nginx is the default server for any Host header.
    ("server", "PUBLIC_URL_DETECTION"): _FIXED + " (never: links always use ROOT_URL, not a client's Host header)",
    ("server", "LFS_JWT_SECRET"): _GENERATED,
    ("server", "LFS_JWT_SECRET_URI"): _GENERATED,
    # [security]: the installer stays locked on a public host; the generated secrets; whom Gitea
    # believes about a client's address (nginx on loopback or the Compose network, one hop).
    ("security", "INSTALL_LOCK"): _FIXED + ": the web installer never opens on a public host",
    ("security", "SECRET_KEY"): _GENERATED,
    ("security", "SECRET_KEY_URI"): _GENERATED,
    ("security", "INTERNAL_TOKEN"): _GENERATED,
    ("security", "INTERNAL_TOKEN_URI"): _GENERATED,
    ("security", "REVERSE_PROXY_TRUSTED_PROXIES"): "compose_subnet (Gitea trusts loopback and the Compose network)",
    ("security", "REVERSE_PROXY_LIMIT"): _FIXED + ": one proxy (nginx) is in front of Gitea",
    ("oauth2", "JWT_SECRET"): _GENERATED,
    ("oauth2", "JWT_SECRET_URI"): _GENERATED,
    # /metrics: the monitoring agent reads the generated token; turning it off would break it.
    ("metrics", "ENABLED"): _FIXED + ": the monitoring agent scrapes /metrics",
    ("metrics", "TOKEN"): _GENERATED,
    ("metrics", "TOKEN_URI"): _GENERATED,
    ("service", "DISABLE_REGISTRATION"): "gitea_disable_registration",
    ("service", "REQUIRE_SIGNIN_VIEW"): "gitea_require_signin_view",
    # [mailer]: what the mailer settings render, and the deprecated names Gitea maps onto them.
    ("mailer", "ENABLED"): _MAILER + " (mail is on when mailer_host is set)",
    ("mailer", "PROTOCOL"): "mailer_protocol",
    ("mailer", "SMTP_ADDR"): "mailer_host",
    ("mailer", "SMTP_PORT"): "mailer_port",
    ("mailer", "FROM"): "mailer_from",
    ("mailer", "USER"): "mailer_user",
    ("mailer", "PASSWD"): "mailer_user (the password is the operator's <data_root>/secrets/mailer_password)",
    ("mailer", "HOST"): "mailer_host and mailer_port (HOST is the deprecated form of SMTP_ADDR:SMTP_PORT)",
    ("mailer", "MAILER_TYPE"): "mailer_protocol (MAILER_TYPE is the deprecated form of PROTOCOL)",
    ("mailer", "IS_TLS_ENABLED"): "mailer_protocol (IS_TLS_ENABLED is the deprecated form of PROTOCOL)",
    # nginx sends X-Frame-Options itself and hides Gitea's (docs/concepts/front-door.md), so Gitea's
    # setting would silently do nothing; [cors] is where it lived before Gitea 1.26.
    ("security", "X_FRAME_OPTIONS"): _FRONT_DOOR,
    ("cors", "X_FRAME_OPTIONS"): _FRONT_DOOR + " ([cors] X_FRAME_OPTIONS moved to [security] in Gitea 1.26)",
}

# A key named like a secret: the last word of the name, or a SECRET anywhere in it
# (MINIO_SECRET_ACCESS_KEY, AZURE_BLOB_ACCOUNT_KEY, [camo] HMAC_KEY, [mailer] PASSWD).
_SECRET_KEY_NAME = re.compile(r"(?:[A-Z0-9]+_)*(?:PASSWD|PASSWORD|SECRET|TOKEN|KEY)|(?:[A-Z0-9]+_)*SECRET(?:_[A-Z0-9]+)*")
# Connection strings: Gitea's formats carry their credentials inside (redis://:pass@host,
# https://user:pass@elastic:9200, a MySQL DSN for sessions), so they always come from a file.
_CONNECTION_STRING = re.compile(r"(?:[A-Z0-9]+_)*CONN_STR")
_CONNECTION_KEYS = {("cache", "HOST"), ("session", "PROVIDER_CONFIG")}
# Named like a secret, but not one: a GPG key ID or "default"/"none".
_NOT_SECRETS = {("repository.signing", "SIGNING_KEY")}
# scheme://user:password@ in any value (a [proxy] PROXY_URL, a webhook proxy...)
_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s]*:[^/?#@\s]*@")


def encode_section(section: str) -> str:
    """The section as Gitea's decoder wants it: every character but a-z 0-9 _ as _0X<hex>_ (UTF-8)."""
    return "".join(c if re.fullmatch(r"[a-z0-9_]", c) else "".join(f"_0X{b:02X}_" for b in c.encode()) for c in section)


def variable(section: str, key: str, file: bool = False) -> str:
    """GITEA__<section>__<KEY>[__FILE]; the root section "" gives GITEA____KEY."""
    return f"{PREFIX}{encode_section(section)}__{key}{FILE_SUFFIX if file else ''}"


_ESCAPE = re.compile(r"_0[xX](([0-9a-fA-F][0-9a-fA-F])+)_")


def decode(name: str) -> tuple[str, str, bool] | None:
    """(section, key, reads a file) as Gitea decodes an environment variable's name
    (modules/setting/config_env.go decodeEnvironmentKey/decodeEnvSectionKey), None if it ignores it."""
    if not name.startswith(PREFIX):
        return None
    use_file = name.endswith(FILE_SUFFIX)
    encoded = name[len(PREFIX):len(name) - len(FILE_SUFFIX) if use_file else None]
    section, key, in_key, last = b"", b"", False, 0
    for match in _ESCAPE.finditer(encoded):
        preceding = encoded[last:match.start()].encode()
        if not in_key and b"__" in preceding:
            head, _, tail = preceding.partition(b"__")
            section, key, in_key = section + head, key + tail, True
        elif in_key:
            key += preceding
        else:
            section += preceding
        decoded = bytes.fromhex(match.group(1))
        if in_key:
            key += decoded
        else:
            section += decoded
        last = match.end()
    remaining = encoded[last:].encode()
    if not in_key and b"__" in remaining:
        head, _, tail = remaining.partition(b"__")
        section, key = section + head, key + tail
    elif in_key:
        key += remaining
    else:
        section += remaining
    if not key:
        return None
    return section.decode(errors="replace").lower(), key.decode(errors="replace"), use_file


def _where(section: str, key: str | None = None) -> str:
    name = '""' if section == "" else section
    return f"gitea_config.{name}" + (f".{key}" if key is not None else "")


def _section_problem(section: Any) -> str | None:
    if not isinstance(section, str):
        return f"gitea_config: section name {section!r} is a {type(section).__name__}, expected a string"
    if section == "":
        return None
    if section.lower() == "default":
        return (f"{_where(section)}: the root section is \"\" (rendered GITEA____KEY); [{section}] would be a "
                "section of its own that Gitea never reads")
    if "__" in section or "_0x" in section.lower() or not SECTION.fullmatch(section):
        return (f"{_where(section)}: is not a Gitea section name: lower case a-z 0-9 separated by single . - _ "
                "(e.g. repository.pull-request), no __ or _0x")
    return None


def _key_problem(section: str, key: str, shown: str) -> str | None:
    if "__" in key or "_0X" in key.upper() or not KEY.fullmatch(key) or len(key) > 100:
        return (f"{_where(section, shown)}: is not a Gitea key name: upper case A-Z 0-9 separated by single _ "
                "(as in Gitea's configuration cheat sheet), no __ or _0X; a secret is KEY__FILE")
    return None


def _value_problem(value: Any) -> str | None:
    """Why a value cannot be carried into app.ini exactly, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}: values are strings, numbers or booleans"
    if len(value) > MAX_VALUE:
        return f"is longer than {MAX_VALUE} characters"
    for char in value:
        if unicodedata.category(char)[0] == "C" or ord(char) > 0xFFFF:
            return (f"holds {char!r}: control and format characters (newlines, tabs) and characters beyond "
                    "U+FFFF are refused")
    if value != value.strip():
        return "has leading or trailing spaces (Gitea's app.ini reader drops them)"
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"`":
        return "is wrapped in quotes as a whole (Gitea's app.ini reader drops them)"
    if '"""' in value:
        return 'holds """ (the quoting Gitea\'s app.ini writer uses for values with a backtick)'
    return None


def is_secret_key(section: str, key: str) -> bool:
    """Whether a value for section.KEY is a secret that must come from a file."""
    if (section, key) in _NOT_SECRETS:
        return False
    return bool(_SECRET_KEY_NAME.fullmatch(key) or _CONNECTION_STRING.fullmatch(key)
                or (section, key) in _CONNECTION_KEYS)


def owned(section: str, key: str) -> str | None:
    """What sets section.KEY instead of gitea_config, or None when the operator may set it."""
    return OWNED.get((section, key)) or OWNED.get((section, None))


def _entry_problems(section: str, key: str, value: Any, secrets: dict) -> list[str]:
    if not isinstance(key, str):
        return [f"{_where(section)}: key {key!r} is a {type(key).__name__}, expected a string"]
    base, file = (key[:-len(FILE_SUFFIX)], True) if key.endswith(FILE_SUFFIX) else (key, False)
    if why := _key_problem(section, base, key):
        return [why]
    where = _where(section, key)
    if instead := owned(section, base):
        return [f"{where}: is set by the deploy: use {instead}"]
    name = variable(section, base, file)
    if decode(name) != (section, base, file):  # the last word: Gitea would read something else
        return [f"{where}: {name} would not decode to [{section}] {base} in Gitea"]
    if file:
        if not isinstance(value, str) or not SECRET_NAME.fullmatch(value):
            return [f"{where}: {value!r} must name a secret file: [a-z][a-z0-9_]{{0,62}}, declared in gitea_secrets"]
        if value not in secrets:
            return [f"{where}: secret {value!r} is not declared in gitea_secrets "
                    f"(gitea_secrets = {{{value!r}: \"generate\" or \"operator\"}})"]
        return []
    if why := _value_problem(value):
        return [f"{where}: {value!r} {why}" if isinstance(value, (str, int, float)) else f"{where}: {why}"]
    if is_secret_key(section, base) and not isinstance(value, bool):
        return [f"{where}: is a secret, never inline: write {base}__FILE: \"<name>\" and declare <name> in "
                "gitea_secrets (\"generate\" or \"operator\": the file <data_root>/secrets/<name>)"]
    if isinstance(value, str) and _URL_CREDENTIALS.search(value):
        return [f"{where}: holds credentials in a URL (user:password@): put the whole value in a secret file, "
                f"{base}__FILE: \"<name>\", declared in gitea_secrets"]
    return []


def secret_problems(secrets: Any) -> list[str]:
    if not isinstance(secrets, dict):
        return []  # the settings table's type check names it
    found = []
    for name, source in secrets.items():
        where = f"gitea_secrets.{name}"
        if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
            found.append(f"gitea_secrets: {name!r} is not a secret name ([a-z][a-z0-9_]{{0,62}})")
        elif name in DEPLOY_SECRETS:
            found.append(f"{where}: is one of the deploy's own secrets ({', '.join(sorted(DEPLOY_SECRETS))}): "
                         "choose another name")
        elif source not in SOURCES:
            found.append(f"{where}: {source!r} must be \"generate\" (made once on the host) or \"operator\" "
                         "(you put <data_root>/secrets/" + name + " there)")
    return found


def problems(config: Any, secrets: Any = None) -> list[str]:
    """Every problem in gitea_config and gitea_secrets, one line each (empty: fine)."""
    secrets = secrets if isinstance(secrets, dict) else {}
    found = secret_problems(secrets)
    if not isinstance(config, dict):
        return found  # the settings table's type check names it
    for section, entries in config.items():
        if why := _section_problem(section):
            found.append(why)
            continue
        if not isinstance(entries, dict):
            found.append(f"{_where(section)}: {entries!r} is a {type(entries).__name__}, expected a mapping "
                         "{KEY: value}")
            continue
        keys = set()
        for key, value in entries.items():
            entry = _entry_problems(section, key, value, secrets)
            found.extend(entry)
            if not entry:
                base = key[:-len(FILE_SUFFIX)] if key.endswith(FILE_SUFFIX) else key
                if base in keys:
                    found.append(f"{_where(section, key)}: {base} is set twice (inline and as __FILE)")
                keys.add(base)
    return found


def text(value: str | int | float | bool) -> str:
    """A value as app.ini text: booleans true/false, numbers in Python's (and Go's) notation."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Rendered:
    # GITEA__* name -> the value Gitea receives (before Compose's `$$` escaping, which the template does)
    environment: dict[str, str] = field(default_factory=dict)
    # (section, KEY) each variable sets, for merging over the deploy's own defaults
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    # secret names to mount at /run/secrets/<name>
    secrets: list[str] = field(default_factory=list)


def render(data: dict) -> Rendered:
    """The variables and Compose secrets the operator's gitea_config / gitea_secrets add, in a stable
    order (sections, then keys, sorted). The data must have passed problems(): this only renders."""
    config, declared = data.get("gitea_config") or {}, data.get("gitea_secrets") or {}
    environment, keys = {}, {}
    for section in sorted(config):
        for key in sorted(config[section]):
            value = config[section][key]
            if key.endswith(FILE_SUFFIX):
                base = key[:-len(FILE_SUFFIX)]
                name, rendered = variable(section, base, file=True), f"{SECRETS_IN_CONTAINER}/{value}"
            else:
                base, name, rendered = key, variable(section, key), text(value)
            environment[name] = rendered
            keys[(section, base)] = name
    return Rendered(environment=environment, keys=keys, secrets=sorted(declared))
