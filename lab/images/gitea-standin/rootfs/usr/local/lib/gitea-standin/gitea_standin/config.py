"""Settings: GITEA__SECTION__KEY(__FILE) -> app.ini, and app.ini -> what the stand-in runs with.

Behaviour copied from Gitea because the deploy depends on it (modules/setting/config_env.go):
- env names: GITEA__<section>__<KEY>, section lower-cased (the key is not), "_0X2E_" style escapes
  decode to bytes (e.g. "." in [repository.local]); an empty section (GITEA____APP_NAME) is the
  default (root) section; GITEA__DEFAULT__APP_NAME becomes a separate, useless [default] section
  and does NOT set the root APP_NAME (as in Gitea: section names are case-sensitive);
  a __FILE suffix reads the value from that file, dropping one trailing "\\n" or "\\r\\n"; an unreadable
  file is logged and skipped (Gitea does not stop there: the key simply stays unset);
- SECRET_KEY/INTERNAL_TOKEN ([security]), JWT_SECRET ([oauth2]) and LFS_JWT_SECRET ([server]) may
  come from <KEY>_URI = file:/path instead; both set, or an unreadable/empty file, is fatal;
- with INSTALL_LOCK = true a missing INTERNAL_TOKEN, JWT_SECRET (and LFS_JWT_SECRET when LFS is on)
  is generated and saved into app.ini, which then gets mode 0600 (Gitea's Save); so /etc/gitea
  must be writable by uid 1000;
- commands that read app.ini refuse to run as root, and with INSTALL_LOCK they refuse to run as any
  user other than RUN_USER.
"""

import base64
import getpass
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import string
import time
import urllib.parse

from . import log
from .ini import ROOT, IniFile, parse_bool

ENV_PREFIX = "GITEA__"
FILE_SUFFIX = "__FILE"
_ESCAPE = re.compile(r"_0[xX](([0-9a-fA-F][0-9a-fA-F])+)_")

ROOT_REFUSAL = (
    "Gitea is not supposed to be run as root. Sorry. If you need to use privileged TCP ports "
    "please instead use setcap and the `cap_net_bind_service` permission"
)


# ---------------------------------------------------------------- environment -> app.ini


def decode_env_key(name):
    """'GITEA__database__PASSWD__FILE' -> ('database', 'PASSWD', True); None if not a config key."""
    if not name.startswith(ENV_PREFIX):
        return None
    use_file = name.endswith(FILE_SUFFIX)
    if use_file:
        name = name[: -len(FILE_SUFFIX)]
    encoded = name[len(ENV_PREFIX) :]
    section, key, in_key, last = "", "", False, 0

    def take(chunk):
        nonlocal section, key, in_key
        if in_key:
            key += chunk
        elif "__" in chunk:
            head, tail = chunk.split("__", 1)
            section += head
            key += tail
            in_key = True
        else:
            section += chunk

    for m in _ESCAPE.finditer(encoded):
        take(encoded[last : m.start()])
        decoded = bytes.fromhex(m.group(1)).decode("utf-8", "replace")
        if in_key:
            key += decoded
        else:
            section += decoded
        last = m.end()
    take(encoded[last:])
    if not key:
        return None
    return section.lower(), key, use_file


def apply_env(ini, environ):
    """Merge GITEA__ variables into `ini`; True when anything changed."""
    changed = False
    for name in sorted(environ):
        decoded = decode_env_key(name)
        if decoded is None:
            continue
        section, key, use_file = decoded
        value = environ[name]
        if use_file:
            try:
                with open(value, "rb") as f:
                    content = f.read()
            except OSError as e:
                log.error(f"Error reading file for {name} : {value}: {e.strerror}", "config")
                continue
            if content.endswith(b"\r\n"):
                content = content[:-2]
            elif content.endswith(b"\n"):
                content = content[:-1]
            value = content.decode("utf-8")
        changed = ini.set(section, key, value) or changed
    return changed


# ---------------------------------------------------------------- generators (gitea generate secret)


def new_secret_key():
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(64))


def new_jwt_secret():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_internal_token():
    """Same shape as Gitea's: an HS256 JWT with only an nbf claim, signed with a throw-away key."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64url(json.dumps({"nbf": int(time.time())}, separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode()
    sig = hmac.new(secrets.token_bytes(32), signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64url(sig)}"


def valid_jwt_secret(value):
    try:
        return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) == 32
    except (ValueError, TypeError):
        return False


# ---------------------------------------------------------------- app.ini -> settings


def _load_secret(ini, section, uri_key, key):
    uri = ini.get(section, uri_key, "") or ""
    verbatim = ini.get(section, key, "") or ""
    if uri and verbatim:
        log.fatal(f"Cannot specify both {uri_key} and {key}", "setting")
    if not uri:
        return verbatim
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "file":
        log.fatal(f"{uri_key}: Unsupported URI-Scheme {parsed.scheme!r} ({uri})", "setting")
    path = parsed.path
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        log.fatal(f"Failed to read {uri_key} ({path}): open {path}: {e.strerror.lower()}", "setting")
    if not value:
        log.fatal(f"Failed to read {uri_key} ({path}): the file is empty", "setting")
    return value


def _seconds(duration):
    """A Go duration like "3s", "500ms", "1m30s" -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration.strip())
    if not parts:
        log.fatal(f"invalid duration {duration!r}", "setting")
    return sum(float(n) * units[u] for n, u in parts)


def _current_user():
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


class Settings:
    """The subset of Gitea's settings the stand-in honours (see the README for the list)."""

    def __init__(self, path, work_path=None):
        self.path = path
        if not os.path.exists(path):
            log.fatal(
                f"Unable to load config file {path!r} for an installed instance: it does not exist "
                "(use --config, or run `gitea web` first)",
                "setting",
            )
        self.ini = IniFile.load(path)
        g = self.ini.get
        self.work_path = work_path or os.environ.get("GITEA_WORK_DIR") or g(ROOT, "WORK_PATH") or "/var/lib/gitea"
        self.app_name = g(ROOT, "APP_NAME") or "Gitea: Git with a cup of tea"
        self.run_user = g(ROOT, "RUN_USER") or _current_user()

        self.protocol = g("server", "PROTOCOL", "http")
        self.domain = g("server", "DOMAIN", "localhost")
        self.http_addr = g("server", "HTTP_ADDR", "0.0.0.0")
        self.http_port = int(g("server", "HTTP_PORT", "3000") or 3000)
        default_root = f"{self.protocol}://{self.domain}:{self.http_port}/"
        if (self.protocol, self.http_port) in (("http", 80), ("https", 443)):
            default_root = f"{self.protocol}://{self.domain}/"
        self.root_url = (g("server", "ROOT_URL") or default_root).rstrip("/") + "/"
        local_host = "localhost" if self.http_addr in ("0.0.0.0", "") else self.http_addr
        if ":" in local_host:
            local_host = f"[{local_host}]"
        self.local_root_url = (g("server", "LOCAL_ROOT_URL")
                               or f"{self.protocol}://{local_host}:{self.http_port}/").rstrip("/") + "/"
        self.ssh_domain = g("server", "SSH_DOMAIN") or self.domain
        self.ssh_port = int(g("server", "SSH_PORT", "22") or 22)
        self.ssh_listen_port = int(g("server", "SSH_LISTEN_PORT") or self.ssh_port)
        self.disable_ssh = parse_bool(g("server", "DISABLE_SSH"), False)
        self.start_ssh_server = parse_bool(g("server", "START_SSH_SERVER"), False) and not self.disable_ssh
        self.ssh_user = g("server", "SSH_USER") or g("server", "BUILTIN_SSH_SERVER_USER") or self.run_user
        self.app_data_path = self._abs(g("server", "APP_DATA_PATH") or "data")
        self.lfs_start_server = parse_bool(g("server", "LFS_START_SERVER"), False)

        self.db_type = g("database", "DB_TYPE", "")
        self.db_host = g("database", "HOST", "127.0.0.1:5432")
        self.db_name = g("database", "NAME", "gitea")
        self.db_user = g("database", "USER", "root")
        self.db_passwd = g("database", "PASSWD", "")
        self.db_ssl_mode = g("database", "SSL_MODE", "disable")
        # Gitea's start-up retry: DB_RETRIES attempts, DB_RETRY_BACKOFF apart (Go duration, "3s")
        self.db_retries = int(g("database", "DB_RETRIES", "10") or 10)
        self.db_retry_backoff = _seconds(g("database", "DB_RETRY_BACKOFF", "3s") or "3s")

        self.install_lock = parse_bool(g("security", "INSTALL_LOCK"), False)
        self.min_password_length = int(g("security", "MIN_PASSWORD_LENGTH", "8") or 8)
        self.trusted_proxies = [
            p.strip()
            for p in (g("security", "REVERSE_PROXY_TRUSTED_PROXIES") or "127.0.0.0/8,::1/128").split(",")
            if p.strip()
        ]
        self.reverse_proxy_limit = int(g("security", "REVERSE_PROXY_LIMIT", "1") or 1)
        # Gitea >= 1.26: [security] X_FRAME_OPTIONS (was [cors]); "unset" sends no header
        self.x_frame_options = g("security", "X_FRAME_OPTIONS") or "SAMEORIGIN"
        self.mailer = Mailer(self.ini, self.app_name)
        self.oauth2_enabled = parse_bool(g("oauth2", "ENABLED"), True)
        self.metrics_enabled = parse_bool(g("metrics", "ENABLED"), False)
        self.metrics_token = g("metrics", "TOKEN", "")
        self.disable_registration = parse_bool(g("service", "DISABLE_REGISTRATION"), False)
        self.require_signin_view = parse_bool(g("service", "REQUIRE_SIGNIN_VIEW"), False)

        self.repo_root = self._abs(g("repository", "ROOT") or os.path.join(self.app_data_path, "gitea-repositories"))
        self.default_branch = g("repository", "DEFAULT_BRANCH", "main")
        lfs_default = g("server", "LFS_CONTENT_PATH") or os.path.join(self.app_data_path, "lfs")
        self.lfs_path = self._abs(g("lfs", "PATH") or lfs_default)
        self.attachment_path = self._abs(g("attachment", "PATH") or os.path.join(self.app_data_path, "attachments"))
        self.avatar_path = self._abs(g("picture", "AVATAR_UPLOAD_PATH") or os.path.join(self.app_data_path, "avatars"))
        self.repo_avatar_path = self._abs(
            g("picture", "REPOSITORY_AVATAR_UPLOAD_PATH") or os.path.join(self.app_data_path, "repo-avatars")
        )
        self.session_path = self._abs(g("session", "PROVIDER_CONFIG") or os.path.join(self.app_data_path, "sessions"))
        self.log_path = self._abs(g("log", "ROOT_PATH") or os.path.join(self.work_path, "log"))

    def _abs(self, p):
        return p if os.path.isabs(p) else os.path.join(self.work_path, p)

    def check_user(self):
        """Gitea's run-mode checks, done by every command that loads app.ini."""
        if os.getuid() == 0:
            log.fatal(ROOT_REFUSAL, "setting")
        if self.install_lock:
            current = _current_user()
            if current != self.run_user:
                log.fatal(f"Expect user '{self.run_user}' but current user is: {current}", "setting")

    def load_secrets(self):
        self.secret_key = _load_secret(self.ini, "security", "SECRET_KEY_URI", "SECRET_KEY")
        if not self.secret_key:
            # Gitea keeps its historical default rather than inventing one (rotating it breaks 2FA)
            self.secret_key = "!#@FDEWREWR&*("
        self.internal_token = _load_secret(self.ini, "security", "INTERNAL_TOKEN_URI", "INTERNAL_TOKEN")
        self.jwt_secret = _load_secret(self.ini, "oauth2", "JWT_SECRET_URI", "JWT_SECRET")
        self.lfs_jwt_secret = _load_secret(self.ini, "server", "LFS_JWT_SECRET_URI", "LFS_JWT_SECRET")
        if not self.install_lock:
            return
        # Gitea generates what is missing and saves it into app.ini (then chmod 0600).
        fresh = IniFile.load(self.path)
        dirty = False
        if not self.internal_token:
            self.internal_token = new_internal_token()
            fresh.set("security", "INTERNAL_TOKEN", self.internal_token)
            dirty = True
        if self.oauth2_enabled and not valid_jwt_secret(self.jwt_secret):
            self.jwt_secret = new_jwt_secret()
            fresh.set("oauth2", "JWT_SECRET", self.jwt_secret)
            dirty = True
        if self.lfs_start_server and not valid_jwt_secret(self.lfs_jwt_secret):
            self.lfs_jwt_secret = new_jwt_secret()
            fresh.set("server", "LFS_JWT_SECRET", self.lfs_jwt_secret)
            dirty = True
        if dirty:
            try:
                fresh.save_to(self.path)
                if os.stat(self.path).st_mode & 0o777 > 0o600:
                    os.chmod(self.path, 0o600)
            except OSError as e:
                log.fatal(f"Error saving generated secrets to {self.path}: {e}", "setting")
            self.ini = fresh

    def require_installed(self):
        if not self.install_lock:
            log.fatal(
                "Unable to load config file for a installed Gitea instance, you should either use "
                '"--config" to set your config file (app.ini), or run "gitea web" command to install Gitea.',
                "setting",
            )
        if self.db_type != "postgres":
            log.fatal(
                f"[database] DB_TYPE = {self.db_type!r}: the stand-in supports only postgres", "setting"
            )


def load(path, work_path=None, check_user=True):
    s = Settings(path, work_path)
    if check_user:
        s.check_user()
    s.load_secrets()
    return s


class Mailer:
    """[mailer] as Gitea's modules/setting/mailer.go loads it (the SMTP part). enabled=False: no mail
    service at all (Gitea's MailService == nil)."""

    def __init__(self, ini, app_name):
        def g(key, default=""):
            return ini.get("mailer", key, default) or default

        self.enabled = parse_bool(g("ENABLED"), False)
        self.name = g("NAME", app_name)
        # kept as written: Gitea's Key.In() result is discarded, an unknown value ends up an SMTP sender
        self.protocol = g("PROTOCOL")
        self.smtp_addr = g("SMTP_ADDR")
        self.smtp_port = g("SMTP_PORT")
        self.user = g("USER")
        self.passwd = g("PASSWD")
        self.enable_helo = parse_bool(g("ENABLE_HELO"), True)
        self.helo_hostname = g("HELO_HOSTNAME")
        self.force_trust_server_cert = parse_bool(g("FORCE_TRUST_SERVER_CERT"), False)
        self.send_as_plain_text = parse_bool(g("SEND_AS_PLAIN_TEXT"), False)
        self.subject_prefix = g("SUBJECT_PREFIX")
        self.from_ = g("FROM", self.user)
        self.envelope_from = g("ENVELOPE_FROM")
        if not self.enabled:
            return
        if not self.smtp_port:
            self.smtp_port = {"smtp": "25", "smtps": "465", "smtp+starttls": "587"}.get(self.protocol, "")
        if not self.protocol:
            if any(c in self.smtp_addr for c in "/\\"):
                self.protocol = "smtp+unix"
            else:
                self.protocol = {"25": "smtp", "465": "smtps", "587": "smtp+starttls"}.get(self.smtp_port, "")
                if not self.protocol:
                    log.error(f"unable to infer unspecified mailer.PROTOCOL from mailer.SMTP_PORT = "
                              f"{self.smtp_port!r}, assume using smtps", "setting")
                    self.protocol = "smtps"
                    self.smtp_port = self.smtp_port or "465"
        self.from_name, self.from_email = "", ""
        if self.from_:
            import email.utils

            name, addr = email.utils.parseaddr(self.from_)
            if not addr or "@" not in addr:
                log.fatal(f"Invalid mailer.FROM ({self.from_}): mail: missing '@' or angle-addr", "setting")
            self.from_name, self.from_email = name, addr
        else:
            log.error("no mailer.FROM provided, email system may not work.", "setting")

    def warn_insecure(self):
        """Gitea's start-up warning for plain SMTP to an address that is not loopback."""
        if not self.enabled or self.protocol != "smtp":
            return
        import ipaddress
        import socket

        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(self.smtp_addr.strip("[]"), None)}
        except OSError as e:
            log.warn(f"could not look up mailer.SMTP_ADDR: {e}", "setting")
            return
        if any(not ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
            log.warn("connecting over insecure SMTP protocol to non-local address is not recommended", "setting")
