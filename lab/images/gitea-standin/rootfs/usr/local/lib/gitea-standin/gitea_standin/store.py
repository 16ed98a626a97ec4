"""Database and on-disk state: tables named and shaped like Gitea's ("version", "user",
"repository"), passwords hashed like Gitea's pbkdf2 (sha256, 50000 rounds, 50 bytes, hex), bare
repositories at <ROOT>/<owner lower>/<name lower>.git with Gitea-style delegating hooks."""

import hashlib
import hmac
import os
import re
import secrets
import shlex
import string
import subprocess
import time
from contextlib import closing

import psycopg2
import psycopg2.errors

from . import schema

HASH_ALGO = "pbkdf2$50000$50"

# Gitea refuses these user names (models/user: reservedUsernames / reservedUserPatterns).
RESERVED_NAMES = {
    ".", "..", ".well-known", "admin", "api", "assets", "attachments", "avatar", "avatars", "captcha",
    "commits", "debug", "error", "explore", "favicon.ico", "ghost", "issues", "login",
    "manifest.json", "metrics", "milestones", "new", "notifications", "org", "pulls", "raw", "repo",
    "repo-avatars", "robots.txt", "search", "serviceworker.js", "ssh_info", "swagger.v1.json", "user",
    "v2", "gitea-actions",
}
RESERVED_SUFFIXES = (".keys", ".gpg", ".rss", ".atom", ".png")
RESERVED_REPO_NAMES = {".", "..", "-"}
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NAME_BAD = re.compile(r"[-._]{2,}|[-._]$")
_REPO_OK = re.compile(r"^[A-Za-z0-9_.-]+$")
_EMAIL_OK = re.compile(r"^[^@\s]+@[^@\s]+$")

# Gitea's models/migrations Version: one row, the last migration applied (see schema.py).
VERSION_TABLE = 'CREATE TABLE IF NOT EXISTS "version" (id BIGSERIAL PRIMARY KEY, version BIGINT)'
# Every stand-in release has the same tables: migrating only moves the version row.
MIGRATIONS = """
CREATE TABLE IF NOT EXISTS "user" (
    id BIGSERIAL PRIMARY KEY,
    lower_name VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(255) NOT NULL UNIQUE,
    full_name VARCHAR(255) NOT NULL DEFAULT '',
    email VARCHAR(255) NOT NULL,
    passwd VARCHAR(255) NOT NULL DEFAULT '',
    passwd_hash_algo VARCHAR(255) NOT NULL DEFAULT '',
    salt VARCHAR(32) NOT NULL DEFAULT '',
    type INTEGER NOT NULL DEFAULT 0,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    created_unix BIGINT,
    updated_unix BIGINT
);
CREATE TABLE IF NOT EXISTS repository (
    id BIGSERIAL PRIMARY KEY,
    owner_id BIGINT NOT NULL,
    owner_name VARCHAR(255) NOT NULL,
    lower_name VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    default_branch VARCHAR(255) NOT NULL DEFAULT 'main',
    is_private BOOLEAN NOT NULL DEFAULT FALSE,
    created_unix BIGINT,
    updated_unix BIGINT,
    UNIQUE (owner_id, lower_name)
);
"""


class StoreError(Exception):
    """An error with Gitea's wording, reported by the CLI as 'Command error: ...'."""


def connect(settings, timeout=5):
    host = settings.db_host or "127.0.0.1:5432"
    port = "5432"
    if host.startswith("/"):
        # unix socket directory, optionally "dir:port" like Gitea
        if ":" in host:
            host, port = host.rsplit(":", 1)
    elif host.startswith("["):
        h, _, rest = host[1:].partition("]")
        host, port = h, rest.lstrip(":") or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    return psycopg2.connect(
        host=host,
        port=port,
        dbname=settings.db_name,
        user=settings.db_user,
        password=settings.db_passwd,
        sslmode=settings.db_ssl_mode or "disable",
        connect_timeout=timeout,
        application_name="gitea-standin",
    )


def ping(settings, timeout=3):
    with closing(connect(settings, timeout)) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()


def migrate(conn, expected):
    """Start-up migration to database version `expected`, as Gitea's: a database at a higher
    version raises schema.SchemaError before anything but the version table is touched.
    Returns (what was done, the version found): ("fresh" | "current" | "migrate", int | None)."""
    with conn, conn.cursor() as cur:
        # one migrator at a time (web and a CLI call may race on a fresh database)
        cur.execute("SELECT pg_advisory_xact_lock(74617)")
        cur.execute(VERSION_TABLE)
        cur.execute('SELECT id, version FROM "version" ORDER BY id LIMIT 1')
        row = cur.fetchone()
        found = None if row is None else row[1] or 0
        action = schema.plan(found, expected)
        cur.execute(MIGRATIONS)
        if row is None:
            cur.execute('INSERT INTO "version" (version) VALUES (%s)', (expected,))
        elif action == "migrate":
            cur.execute('UPDATE "version" SET version = %s WHERE id = %s', (expected, row[0]))
    return action, found


def database_version(conn):
    """The version row's number (None: no row yet)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.\"version\"') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute('SELECT version FROM "version" ORDER BY id LIMIT 1')
        row = cur.fetchone()
        return None if row is None else row[0]


def check_schema(conn):
    """CLI commands do not migrate (Gitea's do not either): fail like a missing table would."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.\"user\"') IS NOT NULL")
        if not cur.fetchone()[0]:
            raise StoreError('pq: relation "user" does not exist (has `gitea web` ever started against this database?)')


# ---------------------------------------------------------------- users


def hash_password(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 50000, 50).hex()


def check_password(row, password):
    algo = row["passwd_hash_algo"]
    m = re.fullmatch(r"pbkdf2\$(\d+)\$(\d+)", algo or "")
    if not m:
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), row["salt"].encode(), int(m[1]), int(m[2])).hex()
    return hmac.compare_digest(got, row["passwd"])


def random_password(length=12):
    # Gitea's generator with the default PASSWORD_COMPLEXITY=off: letters and digits
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def validate_username(name):
    if not _NAME_OK.match(name) or _NAME_BAD.search(name):
        raise StoreError(f"name is invalid [{name}]: must be valid alpha or numeric or dash(-_) or dot characters")
    lower = name.lower()
    if lower in RESERVED_NAMES:
        raise StoreError(f"name is reserved [name: {name}]")
    for suffix in RESERVED_SUFFIXES:
        if lower.endswith(suffix):
            raise StoreError(f"name pattern is not allowed [pattern: *{suffix}]")


_USER_COLS = "id, lower_name, name, email, passwd, passwd_hash_algo, salt, type, is_active, is_admin, must_change_password"


def _user_dict(row):
    keys = [c.strip() for c in _USER_COLS.split(",")]
    return dict(zip(keys, row, strict=False)) if row else None


def get_user(conn, name):
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT {_USER_COLS} FROM "user" WHERE lower_name = %s', (name.lower(),))
        return _user_dict(cur.fetchone())


def list_users(conn):
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT {_USER_COLS} FROM "user" WHERE type = 0 ORDER BY id')
        return [_user_dict(r) for r in cur.fetchall()]


def count_users(conn):
    with conn, conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM "user" WHERE type = 0')
        return cur.fetchone()[0]


def create_user(conn, name, email, password, is_admin, must_change_password):
    validate_username(name)
    if not _EMAIL_OK.match(email or ""):
        raise StoreError(f"e-mail invalid [email: {email}]")
    salt = secrets.token_hex(16)
    now = int(time.time())
    with conn, conn.cursor() as cur:
        cur.execute('LOCK TABLE "user" IN SHARE ROW EXCLUSIVE MODE')
        cur.execute('SELECT 1 FROM "user" WHERE lower_name = %s', (name.lower(),))
        if cur.fetchone():
            raise StoreError(f"user already exists [name: {name}]")
        cur.execute('SELECT 1 FROM "user" WHERE lower(email) = %s', (email.lower(),))
        if cur.fetchone():
            raise StoreError(f"e-mail already in use [email: {email}]")
        cur.execute(
            'INSERT INTO "user" (lower_name, name, email, passwd, passwd_hash_algo, salt, type, is_active,'
            " is_admin, must_change_password, created_unix, updated_unix)"
            " VALUES (%s, %s, %s, %s, %s, %s, 0, TRUE, %s, %s, %s, %s) RETURNING id",
            (name.lower(), name, email, hash_password(password, salt), HASH_ALGO, salt, is_admin,
             must_change_password, now, now),
        )
        return cur.fetchone()[0]


def change_password(conn, name, password, must_change_password):
    salt = secrets.token_hex(16)
    with conn, conn.cursor() as cur:
        cur.execute(
            'UPDATE "user" SET passwd = %s, passwd_hash_algo = %s, salt = %s, must_change_password = %s,'
            " updated_unix = %s WHERE lower_name = %s RETURNING name",
            (hash_password(password, salt), HASH_ALGO, salt, must_change_password, int(time.time()), name.lower()),
        )
        row = cur.fetchone()
    if not row:
        raise StoreError(f"user does not exist [uid: 0, name: {name}]")
    return row[0]


# ---------------------------------------------------------------- repositories


def repo_path(settings, owner, name):
    return os.path.join(settings.repo_root, owner.lower(), name.lower() + ".git")


def _repo_dict(row):
    keys = ("id", "owner_id", "owner_name", "lower_name", "name", "description", "default_branch",
            "is_private", "created_unix", "updated_unix")
    return dict(zip(keys, row, strict=False)) if row else None


_REPO_COLS = "id, owner_id, owner_name, lower_name, name, description, default_branch, is_private, created_unix, updated_unix"


def get_repo(conn, owner, name):
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {_REPO_COLS} FROM repository WHERE lower(owner_name) = %s AND lower_name = %s",
            (owner.lower(), name.lower()),
        )
        return _repo_dict(cur.fetchone())


def count_repos(conn):
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM repository")
        return cur.fetchone()[0]


def count_orgs(conn):
    with conn, conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM "user" WHERE type = 1')
        return cur.fetchone()[0]


def all_repos(conn):
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_REPO_COLS} FROM repository ORDER BY id")
        return [_repo_dict(r) for r in cur.fetchall()]


def validate_repo_name(name):
    if not name or not _REPO_OK.match(name) or name in RESERVED_REPO_NAMES or name.lower().endswith((".git", ".wiki", ".rss", ".atom")):
        raise StoreError(f"name is invalid [{name}]: must be valid alpha or numeric or dash(-_) or dot characters")


def create_repo(conn, settings, owner, name, description="", private=False):
    """Row and bare repository together; the row is only committed once `git init` worked."""
    validate_repo_name(name)
    path = repo_path(settings, owner["name"], name)
    now = int(time.time())
    with conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE repository IN SHARE ROW EXCLUSIVE MODE")
        cur.execute("SELECT 1 FROM repository WHERE owner_id = %s AND lower_name = %s", (owner["id"], name.lower()))
        if cur.fetchone() or os.path.exists(path):
            raise StoreError("The repository with the same name already exists.")
        cur.execute(
            "INSERT INTO repository (owner_id, owner_name, lower_name, name, description, default_branch,"
            " is_private, created_unix, updated_unix) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (owner["id"], owner["name"], name.lower(), name, description or "", settings.default_branch,
             bool(private), now, now),
        )
        repo_id = cur.fetchone()[0]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(
            ["git", "init", "--bare", "--quiet", f"--initial-branch={settings.default_branch}", path],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        write_hooks(settings, path)
    return get_repo(conn, owner["name"], name) | {"id": repo_id}


# ---------------------------------------------------------------- hooks

HOOK_NAMES = ("pre-receive", "update", "post-receive")

_DELEGATOR = """#!/usr/bin/env bash
# AUTO GENERATED BY THE GITEA STAND-IN (lab only), DO NOT MODIFY
# Runs every executable in hooks/<name>.d/, like the hooks Gitea writes.
data=$(cat)
exitcodes=""
hookname=$(basename "$0")
GIT_DIR=${GIT_DIR:-$(dirname "$0")/..}
for hook in "${GIT_DIR}/hooks/${hookname}.d/"*; do
  test -x "${hook}" && test -f "${hook}" || continue
  echo "${data}" | "${hook}"
  exitcodes="${exitcodes} $?"
done
for i in ${exitcodes}; do
  [ "${i}" -eq 0 ] || exit "${i}"
done
"""

_UPDATE_DELEGATOR = """#!/usr/bin/env bash
# AUTO GENERATED BY THE GITEA STAND-IN (lab only), DO NOT MODIFY
exitcodes=""
hookname=$(basename "$0")
GIT_DIR=${GIT_DIR:-$(dirname "$0")/..}
for hook in "${GIT_DIR}/hooks/${hookname}.d/"*; do
  test -x "${hook}" && test -f "${hook}" || continue
  "${hook}" "$1" "$2" "$3"
  exitcodes="${exitcodes} $?"
done
for i in ${exitcodes}; do
  [ "${i}" -eq 0 ] || exit "${i}"
done
"""


def write_hooks(settings, path):
    app = "/usr/local/bin/gitea"
    conf = shlex.quote(settings.path)
    hooks_dir = os.path.join(path, "hooks")
    os.makedirs(hooks_dir, exist_ok=True)
    for name in HOOK_NAMES:
        args = ' "$1" "$2" "$3"' if name == "update" else ""
        delegate = f"#!/usr/bin/env bash\n{shlex.quote(app)} hook --config={conf} {name}{args}\n"
        _write_exec(os.path.join(hooks_dir, name), _UPDATE_DELEGATOR if name == "update" else _DELEGATOR)
        os.makedirs(os.path.join(hooks_dir, name + ".d"), exist_ok=True)
        _write_exec(os.path.join(hooks_dir, name + ".d", "gitea"), delegate)


def _write_exec(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
