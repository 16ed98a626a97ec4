"""`gitea web` of the stand-in: HTTP on [server] HTTP_ADDR:HTTP_PORT, and, with START_SSH_SERVER, the
SSH server of ssh.py on SSH_LISTEN_PORT (it refuses every key, as Gitea does an unknown one)."""

import base64
import binascii
import datetime
import hmac
import html
import ipaddress
import json
import os
import signal
import socket
import threading
import time
import urllib.parse
from contextlib import closing
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

from . import FAULT, NAME, VERSION, log, mail, schema, ssh, store

MAX_BODY = 1 << 20


def _now_rfc3339():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_networks(ip, networks):
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for n in networks:
        if n == "*":
            return True
        try:
            if addr in ipaddress.ip_network(n, strict=False):
                return True
        except ValueError:
            continue
    return False


class Handler(BaseHTTPRequestHandler):
    server_version = "Gitea-standin-lab"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    settings = None  # set by serve()
    mail_queue = None  # set by serve()
    unhealthy = False  # set by serve() once the fault "unhealthy-after-migrate" has migrated

    # ------------------------------------------------------------ plumbing

    def log_message(self, fmt, *args):  # silence the stdlib's own access log
        pass

    def remote(self):
        """Client address as Gitea sees it: X-Real-IP / X-Forwarded-For only from trusted proxies."""
        ip, port = self.client_address[0], self.client_address[1]
        if _in_networks(ip, self.settings.trusted_proxies):
            real = self.headers.get("X-Real-IP")
            fwd = [p.strip() for p in (self.headers.get("X-Forwarded-For") or "").split(",") if p.strip()]
            if real:
                return real
            if fwd:
                limit = max(self.settings.reverse_proxy_limit, 1)
                return fwd[-limit] if len(fwd) >= limit else fwd[0]
        return f"{ip}:{port}"

    def send(self, status, body=b"", ctype="application/json;charset=utf-8", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Gitea-Standin", "lab only, not Gitea")
        if ctype.startswith("text/html") and self.settings.x_frame_options != "unset":
            # Gitea >= 1.26: [security] X_FRAME_OPTIONS (default SAMEORIGIN) on its web pages
            self.send_header("X-Frame-Options", self.settings.x_frame_options)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._status = status

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj, separators=(",", ":")))

    def api_error(self, status, message):
        self.send_json(status, {"message": message, "url": self.settings.root_url + "api/swagger"})

    def handle_one_request(self):
        self._status = None
        self._t0 = time.monotonic()
        super().handle_one_request()
        if self._status is not None:
            ms = (time.monotonic() - self._t0) * 1000
            phrase = HTTPStatus(self._status).phrase
            log.info(
                f"router: completed {self.command} {self.path} for {self.remote()}, {self._status} {phrase} in {ms:.1f}ms",
                "HTTPRequest",
            )

    def do_GET(self):
        self.route("GET")

    def do_HEAD(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PATCH(self):
        self.route("PATCH")

    def route(self, method):
        path = urllib.parse.urlsplit(self.path).path
        # read the whole body first, answered or not, so a kept-alive connection stays in sync
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return self.api_error(413, "request body too large")
        self._body = self.rfile.read(length) if length else b""
        try:
            if path == "/api/healthz" and method == "GET":
                return self.healthz()
            if not self.settings.install_lock:
                return self.installer_stub(path)
            if path == "/" and method == "GET":
                return self.home()
            if path == "/user/login" and method == "GET":
                return self.login_page()
            if path == "/user/login" and method == "POST":
                return self.login_post()
            if path == mail.SEND_PATH and method == "POST":
                return self.private_send_mail()
            if path == "/metrics" and method == "GET" and self.settings.metrics_enabled:
                return self.metrics()
            if path == "/api/v1/version" and method == "GET":
                return self.send_json(200, {"version": VERSION})
            if path == "/api/v1/user" and method == "GET":
                return self.api_current_user()
            if path == "/api/v1/user/repos" and method == "POST":
                return self.api_create_repo()
            parts = path.split("/")
            if len(parts) == 6 and parts[:4] == ["", "api", "v1", "repos"] and method == "GET":
                return self.api_get_repo(urllib.parse.unquote(parts[4]), urllib.parse.unquote(parts[5]))
            if path.startswith("/api/"):
                return self.api_error(404, "The target couldn't be found (not implemented by the Gitea stand-in)")
            return self.send(404, "404 Not Found (Gitea stand-in, lab only)\n", "text/plain;charset=utf-8")
        except (psycopg2.Error, OSError) as e:
            log.error(f"{method} {path}: " + " ".join(str(e).split()), "router")
            return self.api_error(500, "internal server error (Gitea stand-in)")

    # ------------------------------------------------------------ pages

    def home(self):
        title = html.escape(NAME)
        body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
<p>This is <strong>not Gitea</strong>. It is a lab-only stand-in (version {html.escape(VERSION)}) that answers
a few of Gitea's endpoints so the deployment can be tested where Gitea itself cannot be obtained.</p>
<p>It has no user interface and does not serve git over HTTP or SSH.</p>
</body></html>
"""
        self.send(200, body, "text/html;charset=utf-8")

    def installer_stub(self, path):
        if path == "/":
            self.send(200, f"<!DOCTYPE html><title>{html.escape(NAME)}: installation</title>"
                      "<p>INSTALL_LOCK is not set: Gitea would show its installer here. "
                      "The stand-in has no installer; set [security] INSTALL_LOCK = true.</p>\n",
                      "text/html;charset=utf-8")
        else:
            self.send(404, "404 Not Found (installation stage)\n", "text/plain;charset=utf-8")

    def login_page(self, status=200, error=""):
        title = html.escape(NAME)
        note = f"<p class=\"error\">{html.escape(error)}</p>" if error else ""
        self.send(status, f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign In - {title}</title></head>
<body><h1>{title}: sign in (not Gitea)</h1>{note}
<form method="post" action="/user/login"><input name="user_name"> <input name="password" type="password">
<button>Sign In</button></form></body></html>
""", "text/html;charset=utf-8")

    def login_post(self):
        """Gitea's SignInPost (routers/web/auth/auth.go), minus sessions and CSRF: a failure is
        logged `Failed authentication attempt for USER from IP: ERR` and the form comes back (200)."""
        form = urllib.parse.parse_qs(self._body.decode(errors="replace"))
        username = (form.get("user_name") or [""])[0]
        password = (form.get("password") or [""])[0]
        with closing(store.connect(self.settings)) as conn:
            user = store.get_user(conn, username)
        if user is None or not store.check_password(user, password):
            err = (f"user does not exist [uid: 0, name: {username}]" if user is None
                   else f"user's password is invalid [name: {user['name']}]")
            log.info(f"Failed authentication attempt for {username} from {self.remote()}: {err}", "auth")
            return self.login_page(200, "Username or password is incorrect.")
        self.send(303, "", "text/html;charset=utf-8", {"Location": self.settings.root_url})

    def private_send_mail(self):
        """routers/private/mail.go SendEmail: internal token, then one queued message per address."""
        if not mail.authorised(self.settings, self.headers.get("X-Gitea-Internal-Auth")):
            return self.send(403, "Forbidden\n", "text/plain;charset=utf-8")
        if not self.settings.mailer.enabled:
            return self.send_json(500, {"err": "Mail service is not enabled."})
        body = self.read_json()
        if not isinstance(body, dict):
            return self.send_json(500, {"err": "invalid JSON"})
        with closing(store.connect(self.settings)) as conn:
            users = store.list_users(conn)
        wanted = body.get("To") or []
        if wanted:
            by_name = {u["name"].lower(): u for u in users}
            emails = [by_name[n.lower()]["email"] for n in wanted if n.lower() in by_name and by_name[n.lower()]["email"]]
        else:
            emails = [u["email"] for u in users if u["email"] and u["is_active"]]
        for address in emails:
            self.mail_queue.push(address, str(body.get("Subject") or ""), str(body.get("Message") or ""))
        self.send(200, str(len(emails)), "text/plain;charset=utf-8")

    # ------------------------------------------------------------ health and metrics

    def healthz(self):
        if not self.settings.install_lock:
            # Gitea: no checks before INSTALL_LOCK ("checks" omitted), the same description
            return self._health({"status": "pass", "description": self.settings.app_name})
        db = {"status": "pass", "time": _now_rfc3339()}
        try:
            store.ping(self.settings)
        except psycopg2.Error as e:
            db = {"status": "fail", "time": _now_rfc3339()}
            log.error("database ping failed with error: " + " ".join(str(e).split()), "healthcheck")
        cache = {"status": "pass", "time": _now_rfc3339()}
        status = "pass" if db["status"] == "pass" and not self.unhealthy else "fail"
        # key order and the indent are Gitea's (Go's json.MarshalIndent of its struct/map)
        payload = {"status": status, "description": self.settings.app_name,
                   "checks": {"cache:ping": [cache], "database:ping": [db]}}
        if self.unhealthy:
            # the lab's broken release: the server runs, its health check fails (500) for good
            log.error(f"health check failing: stand-in fault {FAULT}", "healthcheck")
            return self._health(payload, 500)
        self._health(payload)

    def _health(self, payload, code=None):
        code = code or (200 if payload["status"] in ("pass", "warn") else 424)
        self.send(code, json.dumps(payload, indent=2), "application/json")

    def metrics(self):
        token = self.settings.metrics_token
        if token:
            got = (self.headers.get("Authorization") or "").encode()
            if not hmac.compare_digest(got, f"Bearer {token}".encode()):
                return self.send(401, "\n", "text/plain; charset=utf-8")
        with closing(store.connect(self.settings)) as conn:
            users, repos, orgs = store.count_users(conn), store.count_repos(conn), store.count_orgs(conn)
        lines = []
        for name, help_text, value in (
            ("gitea_organizations", "Number of Organizations", orgs),
            ("gitea_repositories", "Number of Repositories", repos),
            ("gitea_users", "Number of Users", users),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        self.send(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------ API

    def authenticate(self):
        """Basic auth like Gitea's API; returns the user row, or None after answering the request."""
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            self.api_error(401, "token is required")
            return None
        try:
            username, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            self.api_error(401, "invalid basic auth header")
            return None
        with closing(store.connect(self.settings)) as conn:
            user = store.get_user(conn, username)
        if user is None or not store.check_password(user, password):
            # services/auth/basic.go: an unknown user is not logged; a wrong password is logged
            # WITHOUT the client's address (so fail2ban's Gitea filter never sees API failures)
            if user is not None:
                log.error(f"UserSignIn: user's password is invalid [name: {user['name']}]", "auth")
            self.api_error(401, "invalid username, password or token")
            return None
        if not user["is_active"]:
            self.api_error(403, "This account is not activated.")
            return None
        if user["must_change_password"]:
            self.api_error(403, "You must change your password. Change it at: "
                           + self.settings.root_url + "user/change_password")
            return None
        return user

    def read_json(self):
        try:
            return json.loads(self._body or b"{}")
        except ValueError:
            return None

    def user_json(self, u):
        return {"id": u["id"], "login": u["name"], "username": u["name"], "email": u["email"],
                "is_admin": u["is_admin"], "active": u["is_active"]}

    def repo_json(self, r, owner):
        s = self.settings
        full = f"{r['owner_name']}/{r['name']}"
        qfull = f"{urllib.parse.quote(r['owner_name'])}/{urllib.parse.quote(r['name'])}"
        if s.ssh_port != 22:
            ssh_url = f"ssh://{s.ssh_user}@{s.ssh_domain}:{s.ssh_port}/{qfull}.git"
        else:
            ssh_url = f"{s.ssh_user}@{s.ssh_domain}:{qfull}.git"
        created = datetime.datetime.fromtimestamp(r["created_unix"], datetime.UTC).isoformat()
        return {
            "id": r["id"], "owner": self.user_json(owner) if owner else {"login": r["owner_name"]},
            "name": r["name"], "full_name": full, "description": r["description"],
            "empty": True, "private": r["is_private"], "fork": False,
            "html_url": s.root_url + qfull, "clone_url": s.root_url + qfull + ".git", "ssh_url": ssh_url,
            "default_branch": r["default_branch"], "created_at": created, "updated_at": created,
        }

    def api_current_user(self):
        user = self.authenticate()
        if user:
            self.send_json(200, self.user_json(user))

    def api_create_repo(self):
        user = self.authenticate()
        if not user:
            return
        body = self.read_json()
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return self.api_error(422, "[Name]: Required")
        with closing(store.connect(self.settings)) as conn:
            try:
                repo = store.create_repo(conn, self.settings, user, body["name"],
                                         body.get("description") or "", body.get("private", False))
            except store.StoreError as e:
                status = 409 if "already exists" in str(e) else 422
                return self.api_error(status, str(e))
        log.info(f"created repository {user['name']}/{repo['name']}", "repo")
        self.send_json(201, self.repo_json(repo, user))

    def api_get_repo(self, owner_name, name):
        viewer = None
        if self.headers.get("Authorization"):
            viewer = self.authenticate()
            if viewer is None:
                return
        elif self.settings.require_signin_view:
            return self.api_error(401, "token is required")
        with closing(store.connect(self.settings)) as conn:
            repo = store.get_repo(conn, owner_name, name)
            owner = store.get_user(conn, repo["owner_name"]) if repo else None
        if repo is None or (repo["is_private"] and not (viewer and (viewer["id"] == repo["owner_id"] or viewer["is_admin"]))):
            return self.api_error(404, "The target couldn't be found.")
        self.send_json(200, self.repo_json(repo, owner))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler):
        host = addr[0]
        if host and ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)


def prepare_dirs(settings):
    for d in (settings.repo_root, settings.lfs_path, settings.attachment_path, settings.avatar_path,
              settings.repo_avatar_path, settings.session_path, settings.log_path):
        os.makedirs(d, exist_ok=True)


def migrate_with_retry(settings, expected):
    """Like Gitea at start: DB_RETRIES attempts DB_RETRY_BACKOFF apart, then give up (exit 1); a
    database a newer release migrated is fatal at once (Gitea's log.Fatal in Migrate)."""
    attempts, delay = max(settings.db_retries, 1), settings.db_retry_backoff
    last = None
    for i in range(attempts):
        try:
            with closing(store.connect(settings)) as conn:
                action, found = store.migrate(conn, expected)
        except schema.SchemaError as e:
            log.fatal(f"Migration Error: {e}", "migrations")
        except psycopg2.Error as e:
            last = " ".join(str(e).split())
            log.info(f"ORM engine initialization attempt #{i + 1}/{attempts} failed: {last}", "db")
            if i + 1 < attempts:
                time.sleep(delay)
            continue
        if action == "migrate":
            log.info(f"Migration: database version {found} -> {expected} ({VERSION})", "migrations")
        elif action == "fresh":
            log.info(f"Fresh database: version {expected} recorded ({VERSION})", "migrations")
        return
    log.fatal(f"ORM engine initialization failed: {last}", "db")


def serve(settings, port=None):
    log.info(f"{NAME} {VERSION}: NOT Gitea; starting the web server", "cmd")
    log.info(f"app.ini: {settings.path}, work path: {settings.work_path}", "cmd")
    if settings.install_lock:
        settings.require_installed()
        try:
            expected = schema.expected_version(VERSION, FAULT)
        except schema.SchemaError as e:
            log.fatal(str(e), "migrations")
        migrate_with_retry(settings, expected)
        prepare_dirs(settings)
        if FAULT == "unhealthy-after-migrate":
            log.warn(f"stand-in fault {FAULT}: database at version {expected}; /api/healthz answers 500", "cmd")
            Handler.unhealthy = True
    else:
        log.warn("INSTALL_LOCK is false: installation stage (the stand-in has no installer)", "cmd")

    Handler.settings = settings
    settings.mailer.warn_insecure()
    Handler.mail_queue = mail.Queue(settings)
    http_port = port or settings.http_port
    httpd = _HTTPServer((settings.http_addr, http_port), Handler)
    servers = [httpd]
    log.info(f"Listen: http://{settings.http_addr}:{http_port}", "cmd")
    log.info(f"AppURL(ROOT_URL): {settings.root_url}", "cmd")
    if settings.start_ssh_server and settings.install_lock:
        servers.append(ssh.server(settings))
        log.info(f"SSH server on :{settings.ssh_listen_port} (knows no keys: every login is refused)", ssh.WHERE)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info(f"Received {signal.Signals(signum).name}: shutting down", "graceful")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True) for s in servers]
    for t in threads:
        t.start()
    while not stop.wait(1.0):
        if not all(t.is_alive() for t in threads):
            log.error("a listener stopped unexpectedly", "graceful")
            break
    for s in servers:
        s.shutdown()
        s.server_close()
    log.info("PID: stopped", "graceful")
