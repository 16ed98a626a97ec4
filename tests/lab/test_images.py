"""The lab images keep the contracts production relies on: lab/images/postgres (the official
postgres image's), lab/images/gitea-standin (the rootless Gitea 1.27 image's, clearly not Gitea;
lab/images/gitea-standin/README.md lists the upstream sources each behaviour was checked against)
and lab/images/mail (a real SMTP server that stores what it receives).

Both run on a private docker network with no published ports; every request goes to a container
this module started (curl/psql run inside them). Tests share one stack and run in file order: the
database-outage and clean-stop checks come last.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import threading
import time
import uuid

import pytest

pytestmark = pytest.mark.lab

PREFIX = "gitea-lab-test-"
LABEL = "gitea-deploy.test=test_images"
RUN = uuid.uuid4().hex[:8]
NET = f"{PREFIX}net-{RUN}"
PG = f"{PREFIX}pg-{RUN}"
GITEA = f"{PREFIX}gitea-{RUN}"
MAIL = f"{PREFIX}mail-{RUN}"
APP_NAME = f"Lab Forge {RUN}"            # through GITEA____APP_NAME: the root section
JUNK_APP_NAME = f"Not The Title {RUN}"   # through GITEA__DEFAULT__APP_NAME: a junk [default] section
MAIL_FROM = "forge@lab.test"
MAIL_USER = "mailer"
DB_USER = "gitea"
DB_NAME = "giteadb"  # differs from the user: proves POSTGRES_DB is honoured
GITEA_UID = 1000


def docker(*args: str, check: bool = True, timeout: float = 60, input: str | None = None):
    cp = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


def wait_for(what: str, probe, timeout: float, interval: float = 0.5):
    """Poll `probe` (truthy = done) at most timeout/interval times and at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 1):
        try:
            result = probe()
            if result:
                return result
        except (AssertionError, subprocess.SubprocessError, ValueError) as error:
            last = error
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last error: {last})")


def remove_leftovers():
    """Containers and networks of earlier, interrupted runs of this module (by label)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if nets:
        docker("network", "rm", *nets, check=False)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab_image(lab_engine):
    """THE one place this module gets images from: the lab tool's content-tagged builds."""
    from lab import images

    remove_leftovers()
    return images.ensure


class ProcessSampler:
    """Collects every command line seen in the given containers (`docker top`) until stopped."""

    def __init__(self, *containers: str):
        self.containers = containers
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for _ in range(3000):  # 0.1 s apart: at most ~5 minutes
            if self._stop.is_set():
                return
            for c in self.containers:
                cp = docker("top", c, "-eo", "pid,args", check=False, timeout=10)  # top needs a PID column
                if cp.returncode == 0:
                    self.seen.update(line.split(None, 1)[-1] for line in cp.stdout.splitlines()[1:])
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("secrets")
    values = {
        # '#' and ';' would end an unquoted app.ini value: the stand-in must quote them
        "db_password": "Pw#" + secrets.token_urlsafe(18) + ";x",
        "metrics_token": secrets.token_urlsafe(24),
        "secret_key": secrets.token_urlsafe(40),
        "mailer_password": secrets.token_urlsafe(18),
    }
    pg = d / "postgres"
    gt = d / "gitea"
    pg.mkdir()
    gt.mkdir()
    # postgres: root-only, like a secret file written by the deploy (the entrypoint reads it as root)
    (pg / "password").write_text(values["db_password"] + "\n")
    os.chmod(pg / "password", 0o600)
    for key, value in values.items():
        (gt / key).write_text(value + "\n")
        try:  # the stand-in runs as 1000: its copies belong to it
            os.chown(gt / key, GITEA_UID, GITEA_UID)
            os.chmod(gt / key, 0o400)
        except PermissionError:
            os.chmod(gt / key, 0o644)
    os.chmod(pg, 0o755)
    os.chmod(gt, 0o755)
    return {"dir": d, **values}


@pytest.fixture(scope="module")
def stack(lab_image, secrets_dir):
    pg_image = lab_image("postgres")
    gitea_image = lab_image("gitea-standin")
    mail_image = lab_image("mail")
    docker("network", "create", "--label", LABEL, NET)
    try:
        # the SMTP server takes exactly the login Gitea is given through GITEA__mailer__PASSWD__FILE
        docker("run", "-d", "--name", MAIL, "--network", NET, "--label", LABEL,
               "-e", f"LAB_SMTP_USER={MAIL_USER}", "-e", f"LAB_SMTP_PASSWORD={secrets_dir['mailer_password']}",
               mail_image)
        with ProcessSampler(PG, GITEA) as sampler:
            docker(
                "run", "-d", "--name", PG, "--hostname", PG, "--network", NET, "--label", LABEL,
                "-v", f"{secrets_dir['dir'] / 'postgres'}:/run/secrets/postgres:ro",
                "-e", f"POSTGRES_USER={DB_USER}", "-e", f"POSTGRES_DB={DB_NAME}",
                "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/postgres/password",
                pg_image,
            )
            wait_for("postgres accepting TCP connections",
                     lambda: docker("exec", PG, "pg_isready", "-h", PG, "-U", DB_USER, "-d", DB_NAME,
                                    check=False).returncode == 0, timeout=60)
            env = {
                "GITEA__database__DB_TYPE": "postgres",
                "GITEA__database__HOST": f"{PG}:5432",
                "GITEA__database__NAME": DB_NAME,
                "GITEA__database__USER": DB_USER,
                "GITEA__database__PASSWD__FILE": "/run/secrets/gitea/db_password",
                "GITEA__security__INSTALL_LOCK": "true",
                "GITEA__security__SECRET_KEY_URI": "file:/run/secrets/gitea/secret_key",
                "GITEA__metrics__ENABLED": "true",
                "GITEA__metrics__TOKEN__FILE": "/run/secrets/gitea/metrics_token",
                "GITEA__server__DOMAIN": "git.lab.test",
                "GITEA__server__ROOT_URL": "https://git.lab.test/",
                "GITEA__server__SSH_DOMAIN": "git.lab.test",
                "GITEA__server__SSH_PORT": "22",
                "GITEA__service__DISABLE_REGISTRATION": "true",
                "GITEA____APP_NAME": APP_NAME,
                "GITEA__DEFAULT__APP_NAME": JUNK_APP_NAME,
                "GITEA__mailer__ENABLED": "true",
                "GITEA__mailer__PROTOCOL": "smtp",
                "GITEA__mailer__SMTP_ADDR": MAIL,
                "GITEA__mailer__SMTP_PORT": "25",
                "GITEA__mailer__FROM": f"Lab Forge <{MAIL_FROM}>",
                "GITEA__mailer__USER": MAIL_USER,
                "GITEA__mailer__PASSWD__FILE": "/run/secrets/gitea/mailer_password",
            }
            docker(
                "run", "-d", "--name", GITEA, "--network", NET, "--label", LABEL,
                "-v", f"{secrets_dir['dir'] / 'gitea'}:/run/secrets/gitea:ro",
                *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
                # what the compose file's health check does
                "--health-cmd", "curl -fsS http://127.0.0.1:3000/api/healthz",
                "--health-interval", "1s", "--health-retries", "30",
                gitea_image,
            )
            wait_for("stand-in healthy (docker health check)",
                     lambda: docker("inspect", "-f", "{{.State.Health.Status}}", GITEA).stdout.strip() == "healthy",
                     timeout=90)
        yield {"processes": sampler.seen, **secrets_dir}
    finally:
        for name in (GITEA, PG, MAIL):
            logs = docker("logs", "--tail", "30", name, check=False)
            print(f"--- {name} (last lines)\n{logs.stdout}{logs.stderr}")
        docker("rm", "-f", "-v", GITEA, PG, MAIL, check=False)
        docker("network", "rm", NET, check=False)


# ---------------------------------------------------------------- helpers


def gitea(*args: str, user: str | None = None, check: bool = False):
    extra = ["-u", user] if user else []
    return docker("exec", *extra, GITEA, "gitea", *args, check=check)


def http(path: str, *curl_args: str):
    """(status, headers, body) of a request made inside the stand-in's container."""
    cp = subprocess.run(["docker", "exec", GITEA, "curl", "-sS", "-i", "--max-time", "15", *curl_args,
                         f"http://127.0.0.1:3000{path}"], capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")
    # bytes, not text mode: universal newlines would turn the header's CRLFs into LFs
    head, _, body = cp.stdout.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, body


def psql(sql: str, password: str, user: str = DB_USER, check: bool = True):
    # -h <own network name>: a TCP connection from a non-loopback address, so pg_hba's
    # "host all all all scram-sha-256" rule applies (loopback is trusted, as in the official image)
    return docker("exec", "-e", f"PGPASSWORD={password}", PG, "psql", "-h", PG, "-U", user, "-d", DB_NAME,
                  "-v", "ON_ERROR_STOP=1", "-Atc", sql, check=check)


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics:\n{text}"
    return float(m.group(1))


def mails() -> list[dict]:
    """What the SMTP server stored (lab/images/mail/lab-mail)."""
    return json.loads(docker("exec", MAIL, "lab-mail", "list").stdout)


def make_user(name: str, *extra: str) -> None:
    cp = gitea("admin", "user", "create", "--username", name, "--email", f"{name}@example.test", *extra)
    assert cp.returncode == 0, cp.stderr


# ---------------------------------------------------------------- postgres


def test_postgres_runs_as_999_with_a_private_pgdata(stack):
    assert docker("exec", PG, "id", "-u", "postgres").stdout.strip() == "999"
    assert docker("exec", PG, "id", "-g", "postgres").stdout.strip() == "999"
    stat = docker("exec", PG, "stat", "-c", "%u:%g %a", "/var/lib/postgresql/data").stdout.strip()
    assert stat == "999:999 700"
    top = docker("top", PG, "-eo", "uid,pid,args").stdout.splitlines()[1:]
    assert top and all(line.split()[0] == "999" for line in top), top
    hba = docker("exec", PG, "cat", "/var/lib/postgresql/data/pg_hba.conf").stdout
    assert re.search(r"^host all all all scram-sha-256$", hba, re.M)
    for tool in ("pg_isready", "psql", "pg_dump", "pg_restore"):
        where = docker("exec", PG, "sh", "-c", f"command -v {tool}").stdout.strip()
        assert where == f"/usr/lib/postgresql/17/bin/{tool}"


def test_database_initialised_with_the_file_password_user_and_db(stack):
    out = psql("SELECT current_user, current_database(), current_setting('server_version_num')::int / 10000,"
               " (SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = current_user),"
               " (SELECT datcollate FROM pg_database WHERE datname = current_database())",
               stack["db_password"]).stdout.strip()
    # en_US.utf8 like the official image, so production dumps (which carry the locale) restore here
    assert out == f"{DB_USER}|{DB_NAME}|17|t|en_US.utf8"


def test_wrong_password_is_refused(stack):
    cp = psql("SELECT 1", "not-" + stack["db_password"], check=False)
    assert cp.returncode != 0
    assert "password authentication failed" in cp.stderr


def test_pg_dump_and_pg_restore_work(stack):
    dump = docker("exec", "-e", f"PGPASSWORD={stack['db_password']}", PG, "sh", "-c",
                  f"pg_dump -h {PG} -U {DB_USER} -Fc {DB_NAME} > /tmp/db.dump && pg_restore -l /tmp/db.dump")
    # the stand-in's tables are in it (created by its start-up "migrations")
    assert re.search(r'TABLE public (user|"user") ', dump.stdout), dump.stdout
    assert "TABLE public repository " in dump.stdout


def test_postgres_runs_initdb_scripts_and_args_once(lab_image, tmp_path):
    initdb = tmp_path / "initdb"
    initdb.mkdir()
    (initdb / "01-table.sql").write_text("CREATE TABLE seeded (v text); INSERT INTO seeded VALUES ('sql');\n")
    (initdb / "02-more.sh").write_text('sql <<<"INSERT INTO seeded VALUES (\'sh\');"\n')  # sourced: `sql` exists
    (initdb / "03-ignored.txt").write_text("not run\n")
    for f in initdb.iterdir():
        f.chmod(0o644)
    initdb.chmod(0o755)
    name = f"{PREFIX}pginit-{RUN}"
    docker("run", "-d", "--name", name, "--label", LABEL, "--network", "none",
           "-v", f"{initdb}:/docker-entrypoint-initdb.d:ro", "-e", f"POSTGRES_PASSWORD={RUN}",
           "-e", "POSTGRES_INITDB_ARGS=--data-checksums --locale=C.UTF-8", lab_image("postgres"))
    try:
        wait_for("postgres with init scripts ready",
                 lambda: "ready for start up" in docker("logs", name).stdout
                 and docker("exec", name, "pg_isready", check=False).returncode == 0, timeout=60)
        out = docker("exec", "-u", "postgres", name, "psql", "-Atc",
                     "SELECT string_agg(v, ',' ORDER BY v) FROM seeded; SHOW data_checksums;"
                     " SELECT datcollate FROM pg_database WHERE datname = current_database();"
                     " SELECT current_database()").stdout.split()
        assert out == ["sh,sql", "on", "C.UTF-8", "postgres"]  # default user and db are "postgres"
        assert "ignoring /docker-entrypoint-initdb.d/03-ignored.txt" in docker("logs", name).stdout
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_postgres_without_password_refuses_to_initialise(lab_image):
    cp = docker("run", "--rm", "--label", LABEL, "--network", "none", lab_image("postgres"), check=False, timeout=60)
    assert cp.returncode != 0
    assert "superuser password is not specified" in cp.stderr


def test_postgres_password_and_file_are_exclusive(lab_image):
    cp = docker("run", "--rm", "--label", LABEL, "--network", "none", "-e", "POSTGRES_PASSWORD=x",
                "-e", "POSTGRES_PASSWORD_FILE=/etc/hostname", lab_image("postgres"), check=False, timeout=60)
    assert cp.returncode != 0
    assert "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set" in cp.stderr


def test_no_secret_in_process_lists_or_docker_inspect(stack):
    # command lines seen while both containers started (initdb, setup server, stand-in start)
    # plus the current ones; and PID 1's environment of postgres
    seen = set(stack["processes"])
    for c in (PG, GITEA):
        seen.update(docker("top", c, "-eo", "pid,args").stdout.splitlines()[1:])
        seen.update(docker("exec", c, "ps", "-eo", "args").stdout.splitlines()[1:])
    assert any("initdb" in line for line in stack["processes"]), "the sampler missed initdb entirely"
    pg_env = docker("exec", "-u", "postgres", PG, "cat", "/proc/1/environ").stdout
    inspect = docker("inspect", PG, GITEA).stdout
    for key in ("db_password", "metrics_token", "secret_key", "mailer_password"):
        value = stack[key]
        assert not [line for line in seen if value in line], f"{key} visible in a process list"
        assert value not in inspect, f"{key} visible in docker inspect"
        assert value not in pg_env, f"{key} in postgres' PID 1 environment"


# ---------------------------------------------------------------- the stand-in: configuration


def test_app_ini_written_from_env_and_file_vars(stack):
    stat = docker("exec", GITEA, "stat", "-c", "%u %a", "/etc/gitea/app.ini", "/etc/gitea").stdout.split("\n")
    assert stat[0] == "1000 600"  # tightened when the stand-in saved the secrets it generated
    assert stat[1] == "1000 700"
    ini = docker("exec", GITEA, "cat", "/etc/gitea/app.ini").stdout
    # '#' and ';' start inline comments in app.ini: the value must be quoted to survive
    assert f"PASSWD = `{stack['db_password']}`" in ini
    assert re.search(rf"^TOKEN = {re.escape(stack['metrics_token'])}$", ini, re.M)
    assert "SECRET_KEY_URI = file:/run/secrets/gitea/secret_key" in ini
    assert re.search(r"^INTERNAL_TOKEN = \S+\.\S+\.\S+$", ini, re.M)  # generated and saved, like Gitea
    assert re.search(r"^JWT_SECRET = [A-Za-z0-9_-]{43}$", ini, re.M)


def test_standin_runs_as_1000_and_refuses_root(stack, lab_image):
    top = docker("top", GITEA, "-eo", "uid,pid,args").stdout.splitlines()[1:]
    assert top and all(line.split()[0] == "1000" for line in top), top
    cp = gitea("admin", "user", "list", user="0")
    assert cp.returncode == 1
    # a log.Fatal line: Gitea's CLI logs to stdout, stderr stays empty
    assert "Gitea is not supposed to be run as root" in cp.stdout
    assert cp.stderr == ""
    run = docker("run", "--rm", "--label", LABEL, "--network", "none", "-u", "0", lab_image("gitea-standin"),
                 check=False, timeout=60)
    assert run.returncode == 1
    assert "Gitea is not supposed to be run as root" in run.stdout + run.stderr


def test_default_section_env_var_writes_a_junk_section_not_the_title(stack):
    """Gitea lower-cases the section: GITEA__DEFAULT__APP_NAME lands in a [default] section that
    nothing reads; only GITEA____APP_NAME (empty section) sets the root APP_NAME."""
    ini = docker("exec", GITEA, "cat", "/etc/gitea/app.ini").stdout
    root = ini.split("\n[", 1)[0]
    assert re.search(rf"^APP_NAME = {re.escape(APP_NAME)}$", root, re.M), root
    junk = re.search(r"^\[default\]\n((?:[^\[].*\n?)*)", ini, re.M)
    assert junk and f"APP_NAME = {JUNK_APP_NAME}" in junk.group(1), ini
    assert JUNK_APP_NAME not in http("/api/healthz")[2]


def test_install_stage_healthz_has_app_name_and_no_checks(lab_image):
    """Before INSTALL_LOCK Gitea's healthz still says APP_NAME (the default one here: the [default]
    section does not count) and carries no checks; there is no "Installation stage" text."""
    name = f"{PREFIX}install-{RUN}"
    docker("run", "-d", "--name", name, "--label", LABEL, "--network", "none",
           "-e", f"GITEA__DEFAULT__APP_NAME={JUNK_APP_NAME}", lab_image("gitea-standin"))
    try:
        def answer():
            cp = docker("exec", name, "curl", "-sS", "http://127.0.0.1:3000/api/healthz", check=False)
            return json.loads(cp.stdout) if cp.returncode == 0 else None
        doc = wait_for("install-stage healthz", answer, timeout=30)
        assert doc == {"status": "pass", "description": "Gitea: Git with a cup of tea"}
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_environment_to_ini_is_config_edit_ini(stack):
    """1.25+: environment-to-ini runs `gitea config edit-ini --in-place --apply-env`, which prints
    nothing; the env mapping is config_env.go's (escapes, __FILE, lower-cased section only)."""
    cp = docker("exec", "-e", "GITEA__repository_0X2E_local__LOCAL_COPY_PATH=/tmp/escaped",
                "-e", "GITEA__SERVER__Lab_Key=kept-case", "-e", "GITEA____RUN_MODE=dev",
                "-e", "GITEA__lab__TOKEN__FILE=/run/secrets/gitea/metrics_token", GITEA, "sh", "-c",
                "cp /etc/gitea/app.ini /tmp/t.ini && environment-to-ini --config /tmp/t.ini")
    assert cp.stdout == "" and cp.stderr == ""
    ini = docker("exec", GITEA, "cat", "/tmp/t.ini").stdout
    assert re.search(r"^\[repository\.local\]\nLOCAL_COPY_PATH = /tmp/escaped$", ini, re.M), ini
    server = ini.split("\n[server]\n", 1)[1].split("\n[", 1)[0]
    assert "Lab_Key = kept-case" in server
    assert "[SERVER]" not in ini
    assert re.search(r"^RUN_MODE = dev$", ini.split("\n[", 1)[0], re.M)
    assert re.search(rf"^\[lab\]\nTOKEN = {re.escape(stack['metrics_token'])}$", ini, re.M)
    neither = gitea("config", "edit-ini", "--config", "/tmp/t.ini", "--apply-env")
    assert neither.returncode == 1
    assert "either --in-place or --out must be specified" in neither.stderr
    assert gitea("config", "update-ini", "--config", "/tmp/t.ini", "--apply-env").returncode != 0  # gone in 1.25


def test_lfs_path_is_in_the_lfs_section(stack):
    ini = docker("exec", GITEA, "cat", "/etc/gitea/app.ini").stdout
    assert re.search(r"^\[lfs\]\nPATH = /var/lib/gitea/git/lfs$", ini, re.M), ini
    assert "LFS_CONTENT_PATH" not in ini
    docker("exec", GITEA, "test", "-d", "/var/lib/gitea/git/lfs")


def test_unreadable_secret_uri_stops_the_start(lab_image):
    cp = docker("run", "--rm", "--label", LABEL, "--network", "none",
                "-e", "GITEA__security__INSTALL_LOCK=true", "-e", "GITEA__database__DB_TYPE=postgres",
                "-e", "GITEA__security__SECRET_KEY_URI=file:/nonexistent/secret_key",
                lab_image("gitea-standin"), check=False, timeout=60)
    assert cp.returncode == 1
    assert "Failed to read SECRET_KEY_URI (/nonexistent/secret_key)" in cp.stdout  # logged: stdout
    assert "Failed to read" not in cp.stderr


# ---------------------------------------------------------------- the stand-in: HTTP


def test_healthz_passes_in_giteas_format(stack):
    status, headers, body = http("/api/healthz")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert list(doc) == ["status", "description", "checks"]
    assert doc["status"] == "pass"
    assert doc["description"] == APP_NAME  # the root APP_NAME, set through GITEA____APP_NAME
    assert list(doc["checks"]) == ["cache:ping", "database:ping"]
    for check in doc["checks"].values():
        assert check[0]["status"] == "pass"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", check[0]["time"])


def test_identity_says_standin_not_gitea(stack):
    status, _, body = http("/")
    assert status == 200
    assert "<title>Gitea stand-in (lab only)</title>" in body
    assert "not Gitea" in body
    status, _, body = http("/api/v1/version")
    assert (status, json.loads(body)) == (200, {"version": "1.27.3+standin"})
    assert gitea("--version").stdout.strip() == \
        "Gitea version 1.27.3+standin (lab stand-in, not Gitea) built with Python"


def test_ssh_server_sends_the_standin_banner(stack):
    # base64 keeps the CR intact through text-mode capture; the key exchange follows the first line
    cp = docker("exec", GITEA, "timeout", "5", "bash", "-c",
                "exec 3<>/dev/tcp/127.0.0.1/2222; head -n 1 <&3 | base64 -w0")
    assert base64.b64decode(cp.stdout) == b"SSH-2.0-Gitea-standin-lab\r\n"


# A client offering a key (paramiko: the image has it) and then a password.
SSH_CLIENT = """
import paramiko, sys
t = paramiko.Transport(("127.0.0.1", 2222)); t.connect()
key = paramiko.RSAKey.generate(2048)
try:
    t.auth_publickey("git", key)
except paramiko.AuthenticationException:
    print("key refused")
try:
    t.auth_password("git", "guess")
except paramiko.BadAuthenticationType as e:
    print("password refused, allowed:", ",".join(e.allowed_types))
print("fingerprint", key.fingerprint)
"""


def test_ssh_server_refuses_an_unknown_key_and_logs_it_as_gitea_does(stack):
    out = docker("exec", GITEA, "python3", "-c", SSH_CLIENT).stdout
    assert "key refused\npassword refused, allowed: publickey\n" in out, out  # no password method offered
    fingerprint = out.split("fingerprint ", 1)[1].strip()
    logs = docker("logs", GITEA).stdout
    # modules/ssh/ssh.go publicKeyHandler on an unknown key: two warnings, no user name
    assert re.search(rf"modules/ssh \[W\] Unknown public key: {re.escape(fingerprint)} from 127\.0\.0\.1:\d+\n"
                     rf".* modules/ssh \[W\] Failed authentication attempt from 127\.0\.0\.1:\d+\n", logs), logs[-2000:]


def test_metrics_need_the_token_and_count_from_the_db(stack):
    token = stack["metrics_token"]
    assert http("/metrics")[0] == 401
    assert http("/metrics", "-H", "Authorization: Bearer wrong-token")[0] == 401
    status, headers, before = http("/metrics", "-H", f"Authorization: Bearer {token}")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("gitea_users", "gitea_repositories", "gitea_organizations"):
        assert f"# HELP {name} " in before and f"# TYPE {name} gauge" in before
    make_user(f"metrics{RUN}", "--random-password")
    after = http("/metrics", "-H", f"Authorization: Bearer {token}")[2]
    assert metric(after, "gitea_users") == metric(before, "gitea_users") + 1


# ---------------------------------------------------------------- the stand-in: CLI and API


def test_cli_creates_lists_and_refuses_duplicates(stack):
    name = f"ops{RUN}"
    cp = gitea("admin", "user", "create", "--username", name, "--email", f"{name}@example.test",
               "--admin", "--random-password", "--random-password-length", "20")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert re.fullmatch(r"generated random password is '[A-Za-z0-9]{20}'", lines[0])
    assert lines[1] == f"New user '{name}' has been successfully created!"

    listing = gitea("admin", "user", "list").stdout.splitlines()
    assert listing[0].split() == ["ID", "Username", "Email", "IsActive", "IsAdmin", "2FA"]
    row = [line.split() for line in listing[1:] if line.split()[1] == name]
    assert row and row[0][2:] == [f"{name}@example.test", "true", "true", "false"]
    admins = gitea("admin", "user", "list", "--admin").stdout.splitlines()
    assert admins[0].split() == ["ID", "Username", "Email", "IsActive"]
    assert any(line.split()[1] == name for line in admins[1:])

    dup = gitea("admin", "user", "create", "--username", name, "--email", f"other{RUN}@example.test",
                "--password", "whatever-123")
    assert dup.returncode == 1
    assert f"user already exists [name: {name}]" in dup.stderr
    reserved = gitea("admin", "user", "create", "--username", "admin", "--email", "a@example.test",
                     "--random-password")
    assert reserved.returncode == 1 and "name is reserved [name: admin]" in reserved.stderr


def test_api_creates_a_bare_repository_and_its_row(stack):
    owner, password = f"dev{RUN}", "dev-password-" + RUN
    make_user(owner, "--password", password, "--must-change-password=false")
    body = json.dumps({"name": "Demo-Repo"})
    status, _, out = http("/api/v1/user/repos", "-u", f"{owner}:{password}", "-H",
                          "Content-Type: application/json", "-d", body)
    assert status == 201, out
    repo = json.loads(out)
    assert repo["name"] == "Demo-Repo" and repo["full_name"] == f"{owner}/Demo-Repo"
    assert repo["clone_url"] == f"https://git.lab.test/{owner}/Demo-Repo.git"
    assert repo["ssh_url"] == f"git@git.lab.test:{owner}/Demo-Repo.git"

    path = f"/var/lib/gitea/git/repositories/{owner}/demo-repo.git"
    assert docker("exec", GITEA, "git", "--git-dir", path, "rev-parse", "--is-bare-repository").stdout.strip() == "true"
    for hook in ("pre-receive", "update", "post-receive"):
        docker("exec", GITEA, "test", "-x", f"{path}/hooks/{hook}")
        docker("exec", GITEA, "test", "-x", f"{path}/hooks/{hook}.d/gitea")
    row = psql(f"SELECT r.id, r.name FROM repository r JOIN \"user\" u ON u.id = r.owner_id"
               f" WHERE u.lower_name = '{owner}'", stack["db_password"]).stdout.strip()
    assert row == f"{repo['id']}|Demo-Repo"
    stored = psql(f"SELECT passwd_hash_algo, length(passwd), passwd = '{password}' FROM \"user\""
                  f" WHERE lower_name = '{owner}'", stack["db_password"]).stdout.strip()
    assert stored == "pbkdf2$50000$50|100|f"  # hashed, never plaintext

    assert http("/api/v1/user/repos", "-u", f"{owner}:{password}", "-d", body)[0] == 409
    status, _, out = http("/api/v1/user/repos", "-u", f"{owner}:wrong", "-d", json.dumps({"name": "x"}))
    assert (status, json.loads(out)["message"]) == (401, "invalid username, password or token")
    assert http(f"/api/v1/repos/{owner}/demo-repo")[0] == 200
    assert http(f"/api/v1/repos/{owner}/missing")[0] == 404
    logs = docker("logs", GITEA).stdout
    # services/auth/basic.go: API basic-auth failures are logged without the client's address
    assert f"UserSignIn: user's password is invalid [name: {owner}]" in logs
    assert f"Failed authentication attempt for {owner}" not in logs


def test_failed_web_login_is_logged_with_the_address(stack):
    name = f"nobody{RUN}"
    status, headers, body = http("/user/login", "-d", f"user_name={name}&password=guess")
    assert status == 200 and "<form" in body  # the form again, as Gitea renders it
    assert headers["x-frame-options"] == "SAMEORIGIN"  # [security] X_FRAME_OPTIONS' default
    logs = docker("logs", GITEA).stdout
    assert re.search(rf"Failed authentication attempt for {name} from 127\.0\.0\.1(:\d+)?: "
                     rf"user does not exist \[uid: 0, name: {name}\]", logs), logs[-2000:]


def test_api_refuses_a_user_who_must_change_the_password(stack):
    name = f"fresh{RUN}"
    make_user(name, "--password", "fresh-password-1")  # not the first user: must change by default
    status, _, body = http("/api/v1/user", "-u", f"{name}:fresh-password-1")
    assert status == 403 and "You must change your password" in body
    cp = gitea("admin", "user", "change-password", "--username", name, "--password", "fresh-password-2",
               "--must-change-password=false")
    assert cp.returncode == 0 and cp.stdout.strip() == f"{name}'s password has been successfully updated!"
    assert http("/api/v1/user", "-u", f"{name}:fresh-password-2")[0] == 200


def test_regenerate_hooks_rewrites_missing_hooks(stack):
    root = "/var/lib/gitea/git/repositories"
    docker("exec", GITEA, "sh", "-c", f"rm -rf {root}/*/*.git/hooks/pre-receive {root}/*/*.git/hooks/update.d")
    cp = gitea("admin", "regenerate", "hooks")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == ""  # Gitea's SyncRepositoryHooks prints nothing
    missing = docker("exec", GITEA, "sh", "-c",
                     f"for r in {root}/*/*.git; do for h in pre-receive update.d/gitea; do"
                     f' test -x "$r/hooks/$h" || echo "$r/hooks/$h"; done; done').stdout
    assert missing == ""


def test_generate_secret_formats(stack):
    assert re.fullmatch(r"[A-Za-z0-9]{64}", gitea("generate", "secret", "SECRET_KEY").stdout)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", gitea("generate", "secret", "JWT_SECRET").stdout)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", gitea("generate", "secret", "LFS_JWT_SECRET").stdout)
    assert re.fullmatch(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", gitea("generate", "secret", "INTERNAL_TOKEN").stdout)


# ---------------------------------------------------------------- the stand-in: mail


def test_plain_smtp_to_a_remote_address_is_warned_about(stack):
    assert "connecting over insecure SMTP protocol to non-local address is not recommended" in \
        docker("logs", GITEA).stdout


def test_sendmail_asks_first_and_sends_nothing_on_no(stack):
    before = len(mails())
    cp = docker("exec", "-i", GITEA, "gitea", "admin", "sendmail", "--title", f"Asked {RUN}",
                input="n\n", check=False)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "warning: Content is emptyProceed with sending email? [Y/n] The mail was not sent\n"
    time.sleep(2)
    assert len(mails()) == before


def test_sendmail_mails_every_active_user_through_the_smtp_server(stack):
    make_user(f"reader{RUN}", "--random-password")
    emails = set(psql('SELECT email FROM "user" WHERE type = 0 AND is_active AND email <> \'\'',
                      stack["db_password"]).stdout.split())
    subject = f"Maintenance tonight {RUN}"
    cp = gitea("admin", "sendmail", "--title", subject, "--content", "Back by 22:00.", "--force")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == f"Sent {len(emails)} email(s) to all users\n"
    def all_stored():
        ms = [m for m in mails() if m["subject"] == subject]
        return ms if len(ms) >= len(emails) else None

    got = wait_for("every message stored by the SMTP server", all_stored, timeout=30)
    assert {to for m in got for to in m["envelope_to"]} == emails
    for m in got:
        assert m["envelope_from"] == MAIL_FROM
        assert m["from"] == f"Lab Forge <{MAIL_FROM}>"
        assert m["to"] == m["envelope_to"][0]
        assert m["auth_login"] == MAIL_USER  # the password from GITEA__mailer__PASSWD__FILE worked
        assert "Back by 22:00." in m["body"]


def test_sendmail_needs_the_running_web_process(stack):
    """Like Gitea, the CLI only asks the web process (private API at LOCAL_ROOT_URL) to send."""
    cp = docker("exec", GITEA, "sh", "-c",
                "cp /etc/gitea/app.ini /tmp/off.ini && "
                "GITEA__server__LOCAL_ROOT_URL=http://127.0.0.1:3999/ environment-to-ini --config /tmp/off.ini && "
                "exec gitea -c /tmp/off.ini admin sendmail --title nobody-listens --force", check=False)
    assert cp.returncode == 1
    assert cp.stdout.strip() == "Internal Server Connection Error"
    assert 'Command error: unable to contact gitea "POST http://127.0.0.1:3999/api/internal/mail/send"' in cp.stderr


# ---------------------------------------------------------------- outage and shutdown (last)


def test_healthz_fails_while_the_database_is_down_and_recovers(stack):
    docker("stop", PG, timeout=30)
    status, _, body = http("/api/healthz")
    doc = json.loads(body)
    assert status == 424
    assert doc["status"] == "fail" and doc["checks"]["database:ping"][0]["status"] == "fail"
    docker("start", PG)
    wait_for("healthz back to pass", lambda: http("/api/healthz")[0] == 200, timeout=60)
    # second start of postgres: the existing cluster is kept
    assert "Skipping initialization" in docker("logs", PG).stdout


def test_both_stop_cleanly_within_docker_timeout(stack):
    for name in (GITEA, PG):
        started = time.monotonic()
        docker("stop", name, timeout=30)
        took = time.monotonic() - started
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert took < 8, f"{name} took {took:.1f} s to stop (SIGKILL after 10 s)"
        assert code == "0", f"{name} exited {code}"
    assert "database system is shut down" in docker("logs", "--tail", "5", PG).stderr
