"""Input that cannot break the host (issue 8, section 2).

Every hostile value is refused by tasks/settings/table.py before pyinfra connects, with the key named;
every legal-but-awkward value is carried exactly: parsed back out of the rendered compose file,
nginx config and cron line, or received as single arguments by stand-ins for the programs the
deploy's shell commands run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyinfra.api.command import StringCommand
from pyinfra.connectors.util import make_unix_command

from tasks import certbot, common, gitea, secrets, settings, snapshot
from tasks.settings import gitea_config
from tests.conftest import skip_because
from tests.unit.render import render, sample_data

GOOD = sample_data(backup_s3_bucket="example-gitea-backups", aws_region="eu-central-1")

# (key, hostile value): each must be refused with a line naming the key.
HOSTILE = [
    ("gitea_domain", "git.example.com\n"),
    ("gitea_domain", "git.example.com\nserver_name evil.example.com"),
    ("gitea_domain", "git.example.com;id"),
    ("gitea_domain", "$(id).example.com"),
    ("gitea_domain", "git.example.com'"),
    ("gitea_domain", "git example.com"),
    ("gitea_domain", "git.example.com."),
    ("gitea_domain", "Git.Example.com"),  # certbot's lineage and nginx would disagree
    ("acme_email", "ops@example.com\n"),
    ("acme_email", 'o"brien@example.com'),
    ("acme_email", "$(reboot)@example.com"),
    ("acme_email", "`id`@example.com"),
    ("acme_email", "ops@example.com --server https://evil.example.com/dir"),
    ("acme_email", "-x@example.com"),
    ("gitea_admin_email", "admin@example.com;id"),
    ("gitea_admin_email", "a@b@example.com"),
    ("acme_server", "https://acme.example.com/dir\n"),
    ("acme_server", "https://acme.example.com/$(id)"),
    ("acme_server", "https://acme.example.com/dir' --email x"),
    ("acme_server", "https://acme.example.com/dir?x=`id`"),
    ("acme_server", "https://acme.example.com:99999/dir"),
    ("s3_endpoint", "http://127.0.0.1:5050\n"),
    ("s3_endpoint", "http://127.0.0.1:5050/$(id)"),
    ("data_root", "/srv/gitea\n"),
    ("data_root", "/srv/gitea; rm -rf /"),
    ("data_root", "/srv/$(id)"),
    ("data_root", "/srv/gi'tea"),
    ("data_root", "/srv/gitea:/etc"),  # a second volume spec
    ("data_root", "/srv/./gitea"),
    ("data_root", "/srv/gi tea"),
    ("node_exporter_textfile_dir", "/var/lib/x --web.listen-address=0.0.0.0:9100"),
    ("node_exporter_textfile_dir", "/var/lib/%i"),  # a systemd specifier
    ("backup_schedule", "15 * * * *\n* * * * * root id"),
    ("backup_schedule", "15 * * * * root id"),
    ("backup_schedule", "15 * * * *\n"),
    ("backup_schedule", "@hourly\n"),
    ("backup_schedule", "15\t*\t*\t*\t*"),
    ("gitea_image", "docker.gitea.com/gitea:1.27.3-rootless\n"),
    ("gitea_image", "docker.gitea.com/gitea:1.27.3 --privileged"),
    ("gitea_image", "gitea/gitea:$(id)"),
    ("gitea_image", 'gitea/gitea:1.27"'),
    ("gitea_image", "gitea/Gitea:1.27"),
    ("gitea_image", "gitea//gitea:1.27"),
    ("gitea_image", "gitea/gitea:latest"),
    ("gitea_image", "gitea/gitea"),
    ("postgres_image", "postgres@sha256:abc"),
    ("postgres_image", "postgres:-17"),
    ("gitea_app_name", "Gitea\nGITEA__security__INSTALL_LOCK: false"),
    ("gitea_app_name", "Git\ttea"),
    ("gitea_app_name", "Gitea\x00"),
    ("gitea_app_name", "\u202eaetiG"),  # right-to-left override (a format character)
    ("gitea_app_name", "Gitea \U0001F600"),  # beyond U+FFFF: Compose's YAML refuses the escape
    ("gitea_app_name", " Gitea"),
    ("gitea_app_name", '"Gitea"'),  # go-ini (Gitea's app.ini) strips quotes around a whole value
    ("gitea_admin_username", "gitadmin\n"),
    ("gitea_admin_username", "git admin"),
    ("gitea_admin_username", "git'admin"),
    ("gitea_admin_username", "--admin"),
    ("nginx_client_max_body_size", "512M\n"),
    ("nginx_client_max_body_size", "512M; include /etc/shadow"),
    ("compose_subnet", "172.30.0.0/24\n"),
    ("timezone", "UTC\n"),
    ("timezone", "../../../etc/passwd"),
    ("aws_region", "eu-central-1\n"),
    ("backup_s3_bucket", "example-gitea-backups\n"),
    ("backup_s3_prefix", "gitea\n"),
    ("ssm_parameter_path", "/gitea/prod\n"),
    ("backup_aws_access_key_id", "lab-key\n[evil]"),
    ("backup_aws_secret_access_key", "secret\naws_session_token = x"),
    ("backup_read_data_subset", "5%\n"),
    ("restore_snapshot", "latest\n"),
    ("database_endpoint", "db.example.com:5432\n"),
    ("database_endpoint", "db.example.com"),
    ("database_endpoint", "db.example.com:5432;id"),
    ("metrics_namespace", "GiteaDeploy/gitea\n"),
    ("metrics_namespace", "GiteaDeploy/gitea\"}"),
    ("heartbeat_metric", "Heartbeat\n"),
    ("heartbeat_metric", "Heartbeat\"}"),
    ("alert_webhook_urls", ["https://hooks.example.com/x\n"]),
    ("alert_webhook_urls", ["https://hooks.example.com/x?a=`id`"]),
    ("alert_webhook_urls", ["https://hooks.example.com/x y"]),
    ("alert_webhook_urls", ["https://hooks.example.com/'x'"]),
    ("alert_webhook_urls", ["http://10.0.0.5/hook"]),  # plain http leaving the host
    ("deadmans_switch_url", "https://hc-ping.com/uuid\n"),
    ("deadmans_switch_url", "https://hc-ping.com/$(id)"),
    ("alert_email_to", ["ops@example.com\nBcc: x@example.com"]),
    ("alert_email_to", ["ops@example.com, evil@example.com"]),  # one address per item
    ("alert_sns_topic_arn", "arn:aws:sns:us-east-1:123456789012:t\n"),
    ("alert_runbook_base_url", "https://git.example.com/$(id)"),
]


@pytest.mark.parametrize("key, value", HOSTILE, ids=[f"{k}={v!r}" for k, v in HOSTILE])
def test_hostile_value_is_refused_naming_the_key(key, value):
    data = {**GOOD, key: value}
    if key == "alert_email_to":  # mail needs its relay
        data["mailer_host"] = "smtp.example.com"
    if key.startswith("backup_aws_"):  # static keys are for emulated AWS: give them a place to be
        data = {**GOOD, "s3_endpoint": "http://127.0.0.1:5050", "backup_aws_access_key_id": "lab-key",
                "backup_aws_secret_access_key": "lab-secret", key: value}
    found = settings.problems(data)
    assert any(line.startswith(f"{key}: ") for line in found), found
    with pytest.raises(settings.SettingsError, match=key):
        settings.validate(data, host="web-1")


# Good values of the settings that default to None (acme_ca_bundle is PEM text: lines by nature).
SAMPLES = {"s3_endpoint": "http://127.0.0.1:5050", "backup_aws_access_key_id": "lab-key",
           "backup_aws_secret_access_key": "lab-secret", "ssm_parameter_path": "/gitea/prod",
           "backup_local_repository": "/srv/gitea/backup/restic", "database_endpoint": "db.example.com:5432",
           "mailer_host": "smtp.example.com", "mailer_from": "Git <gitea@example.com>", "mailer_user": "AKIAEXAMPLE",
           "metrics_namespace": "GiteaDeploy/gitea",
           "alert_sns_topic_arn": "arn:aws:sns:eu-central-1:123456789012:gitea-alerts",
           "alert_sns_api_url": "http://127.0.0.1:5050", "deadmans_switch_url": "https://hc-ping.com/5b2b4d1c",
           "alert_runbook_base_url": "https://git.example.com/ops/gitea-deploy/src/branch/main"}


def test_no_check_lets_a_newline_through():
    """re.match(r"^...$") admits "value\n"; every check must refuse a newline wherever it is."""
    checked = set()
    for s in settings.SETTINGS:
        good = SAMPLES.get(s.name, GOOD.get(s.name, s.default))
        if not isinstance(good, str) or s.check is None or s.name == "acme_ca_bundle":
            continue
        assert s.check(good) is None, s.name
        for bad in (good + "\n", "\n" + good, good[:1] + "\n" + good[1:]):
            assert s.check(bad), f"{s.name} accepts {bad!r}"
        checked.add(s.name)
    assert set(SAMPLES) | {"gitea_domain", "acme_email", "gitea_image", "data_root"} <= checked


# --- the compose file carries awkward values exactly ----------------------------------------

APP_NAMES = [
    "Bob's \"Git\"",
    "Git: #1 & <Co> | 100%",
    "$HOME ${USER} $$ $(id) `id`",
    "key: value # not a comment",
    "*alias",
    "&anchor",
    "- item",
    "{\"json\": [1, 2]}",
    "yes",
    "null",
    "~",
    "0o17",
    "back\\slash \\n",
    "Ünïcödé – ĝit ✓",
    "'",
]


def compose_interpolate(value: str) -> str:
    """What Compose makes of a literal in a compose file: `$$` is one `$` (values here hold no
    other `$`: the test also checks that)."""
    assert "$" not in value.replace("$$", "")
    return value.replace("$$", "$")


def compose_env(**data) -> dict:
    return yaml.safe_load(render("gitea/compose.yaml.j2", **data))["services"]["gitea"]["environment"]


@pytest.mark.parametrize("name", APP_NAMES)
def test_awkward_app_name_is_accepted_and_round_trips_through_compose(name):
    assert settings.problems({**GOOD, "gitea_app_name": name}) == []
    env = compose_env(gitea_app_name=name)
    assert compose_interpolate(env["GITEA____APP_NAME"]) == name
    # The value opened no key of its own: the environment is the one the default renders.
    assert set(env) == set(compose_env())


@pytest.mark.parametrize("value", [v for v in APP_NAMES if gitea_config.problems({"ui.meta": {"DESCRIPTION": v}}) == []])
def test_awkward_gitea_config_value_round_trips_through_compose(value):
    """Any app.ini value from gitea_config arrives exactly: quotes, #, :, YAML syntax, `$`."""
    config = {"ui.meta": {"DESCRIPTION": value}}
    assert settings.problems({**GOOD, "gitea_config": config}) == []
    env = compose_env(gitea_config=config)
    assert compose_interpolate(env["GITEA__ui_0X2E_meta__DESCRIPTION"]) == value
    assert set(env) == set(compose_env()) | {"GITEA__ui_0X2E_meta__DESCRIPTION"}


@pytest.mark.parametrize("config", [
    {"ui": {"X": "a\nGITEA__security__INSTALL_LOCK: false"}},    # a new line, a new variable
    {"ui": {"X\nGITEA__security__INSTALL_LOCK": "false"}},       # the same through the key
    {"ui\nGITEA__security": {"INSTALL_LOCK": "false"}},           # ...and through the section
    {"ui": {"X: y\n  Z": "1"}},
    {"ui": {"X__FILE": "../../etc/shadow"}},                     # a file outside the secrets
])
def test_hostile_gitea_config_is_refused(config):
    found = settings.problems({**GOOD, "gitea_config": config, "gitea_secrets": {}})
    assert found and all(line.startswith("gitea_config") for line in found), found


@pytest.mark.parametrize("image", [
    "127.0.0.1:5000/lab/gitea-standin:1.27.3",
    "registry.example.com:5000/team/gitea__x-y.z:1.27.3-rootless",
    "[::1]:5000/gitea:1.27.3",
    "docker.gitea.com/gitea@sha256:" + "0123456789abcdef" * 4,
    "docker.gitea.com/gitea:1.27.3-rootless@sha256:" + "f" * 64,
])
def test_legal_image_references_are_accepted_and_carried_exactly(image):
    assert settings.pinned_image(image) is None
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", gitea_image=image, postgres_image=image))
    assert compose["services"]["gitea"]["image"] == image
    assert compose["services"]["db"]["image"] == image


def test_awkward_data_root_is_carried_exactly_into_volumes_and_secrets():
    root = "/srv/gitea-data_1.0+blue@eu"
    assert settings.absolute_path(root) is None
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", data_root=root))
    assert compose["services"]["db"]["volumes"] == [f"{root}/postgres:/var/lib/postgresql/data"]
    assert compose["services"]["gitea"]["volumes"] == [f"{root}/gitea/data:/var/lib/gitea",
                                                       f"{root}/gitea/config:/etc/gitea"]
    assert all(s["file"].startswith(f"{root}/secrets/") for s in compose["secrets"].values())


# --- nginx and cron: one token, exactly the value --------------------------------------------

def directive(conf: str, name: str) -> list[list[str]]:
    return [line.strip().rstrip(";").split()[1:] for line in conf.splitlines()
            if line.strip().split()[:1] == [name]]


@pytest.mark.parametrize("domain", ["git.example.com", "git-1.example-2.co.uk", "xn--bcher-kva.example", "a.b"])
def test_nginx_server_name_is_exactly_the_domain(domain):
    assert settings.domain_name(domain) is None
    https = render("nginx/gitea-https.conf.j2", gitea_domain=domain)
    assert directive(https, "server_name") == [[domain]]
    assert directive(https, "ssl_certificate") == [[f"/etc/letsencrypt/live/{domain}/fullchain.pem"]]
    http = render("nginx/gitea-http.conf.j2", gitea_domain=domain)
    assert directive(http, "return") == [["301", f"https://{domain}$request_uri"]]
    assert https.count("{") == https.count("}") and http.count("{") == http.count("}")


@pytest.mark.parametrize("schedule", ["15 * * * *", "*/15 0-23/2 1,15 * 1-5", "0  3 * * 0", "@hourly"])
def test_cron_line_holds_exactly_the_schedule(schedule):
    assert settings.cron_schedule(schedule) is None
    lines = [line for line in render("backup/gitea-backup.j2", backup_schedule=schedule).splitlines()
             if line.strip() and not line.startswith("#") and not line.split()[0].count("=")]
    assert len(lines) == 1, lines
    fields = schedule.split()
    tokens = lines[0].split()
    assert tokens[:len(fields)] == fields and tokens[len(fields)] == "root"


# --- shell commands: each value arrives as one argument ---------------------------------------

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["compose"] and "create" in sys.argv:
    print("New user 'x' has been successfully created!")
    print("generated random password is 'pa55-w0rd'")
"""


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """certbot, docker and chown that only record their argv (one JSON list per call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("certbot", "docker", "chown"):
        path = bin_dir / name
        path.write_text(RECORDER.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ARGV_LOG", str(log))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


def run_like_pyinfra(command: str, shell: str = "sh", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command the way pyinfra does on the host: `sh -c '<command>'`, given to a shell.
    (The admin command uses `set -o pipefail`, which Debian 13's dash has; bash stands in here.)"""
    wrapped = make_unix_command(StringCommand(command), _shell_executable=shell).get_raw_value()
    return subprocess.run(wrapped, shell=True, capture_output=True, text=True, timeout=30, cwd=cwd)


AWKWARD_EMAILS = ["o'brien@example.com", "a&b|c*{x}~#%=?^@example.com", "first.last+git@sub.example.co"]


@pytest.mark.parametrize("email", AWKWARD_EMAILS)
def test_certbot_receives_each_value_as_one_argument(stand_ins, email, tmp_path):
    assert settings.email(email) is None
    server = "https://127.0.0.1:14000/dir"
    result = run_like_pyinfra(certbot.certonly_command(email, server, "git.example.com", certbot.CA_BUNDLE),
                              cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [argv] = stand_ins()
    assert argv == ["certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
                    "--email", email, "--server", server, "--webroot", "-w", certbot.WEBROOT,
                    "-d", "git.example.com", "--cert-name", "git.example.com",
                    "--deploy-hook", "systemctl reload nginx"]
    assert not list(tmp_path.glob("*brien*"))


@pytest.mark.parametrize("email", AWKWARD_EMAILS)
def test_admin_creation_receives_the_email_as_one_argument_and_keeps_the_password(stand_ins, email, tmp_path):
    assert settings.email(email) is None
    compose_file = tmp_path / "compose.yaml"
    password_file = tmp_path / "secrets dir" / "admin's password"  # beyond the whitelist: quoting alone
    password_file.parent.mkdir()
    compose_cmd = f"docker compose -f {shlex.quote(str(compose_file))} "
    result = run_like_pyinfra(gitea.create_admin_command(compose_cmd, "git.admin-1", email, str(password_file)),
                              shell="bash", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [argv] = stand_ins()
    assert argv == ["docker", "compose", "-f", str(compose_file), "exec", "-T", "gitea", "gitea", "admin",
                    "user", "create", "--username", "git.admin-1", "--email", email, "--admin",
                    "--random-password", "--must-change-password"]
    assert password_file.read_text() == "pa55-w0rd\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600


def test_chown_and_the_paths_look_quote_the_path(stand_ins, tmp_path, monkeypatch):
    hostile = tmp_path / "a b'$(touch pwned)`touch pwned2`;x"
    hostile.write_text("")
    recorded = []
    monkeypatch.setattr(common.server, "shell", lambda **kwargs: recorded.append(kwargs))
    common.chown(str(hostile), 1000, 999)
    [op] = recorded
    assert run_like_pyinfra(op["commands"][0], cwd=tmp_path).returncode == 0
    assert stand_ins() == [["chown", "1000:999", str(hostile)]]
    # The batched look chown's `_if` reads (tasks/snapshot.py), hashing the file too.
    look = snapshot.ManagedPaths()
    fact = subprocess.run(look.command(paths=(str(hostile),), hashed=(str(hostile),)), shell=True,
                          capture_output=True, text=True, cwd=tmp_path)
    seen = look.process(fact.stdout.splitlines())[str(hostile)]
    assert (seen.kind, seen.uid, seen.gid, seen.size) == ("file", os.getuid(), os.getgid(), 0)
    assert seen.digest == hashlib.sha1(b"").hexdigest()
    assert not list(tmp_path.glob("pwned*"))


def test_generated_secret_goes_to_exactly_the_quoted_path(tmp_path, monkeypatch):
    recorded = []
    monkeypatch.setattr(secrets.server, "shell", lambda **kwargs: recorded.append(kwargs))
    target = tmp_path / "secret's $(touch pwned) file"
    secrets.generate_once(str(target))
    [op] = recorded
    result = run_like_pyinfra(op["commands"][0], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    value = target.read_text()
    assert len(value) == 43 and "=" not in value and "\n" not in value  # 32 bytes, base64url
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("pwned*"))


def test_sample_data_of_the_renders_is_itself_valid():
    """The render helper's data is a valid inventory: the tests above render what could deploy."""
    data = sample_data(backup_s3_bucket="example-gitea-backups", aws_region="eu-central-1")
    assert settings.problems(data) == []


def test_recursive_chown_owns_the_directory_last_and_never_follows_links(tmp_path):
    """A changed container uid re-owns its tree. The directory itself is the guard's witness, so it
    must change last: a run that dies midway is finished by the next. Links are not followed."""
    if os.getuid() != 0:
        skip_because("chown to other uids needs root (the README's set-up, and CI, run as root)")
    tree, outside = tmp_path / "gitea", tmp_path / "outside"
    (tree / "data" / "git").mkdir(parents=True)
    (tree / "data" / "git" / "HEAD").write_text("ref")
    outside.write_text("not Gitea's")
    (tree / "data" / "link").symlink_to(outside)
    for path in (tree, tree / "data", tree / "data" / "git", tree / "data" / "git" / "HEAD"):
        os.chown(path, 1000, 1000)
    command = common.chown_command(str(tree), 61000, 61000, recursive=True)
    # Interrupted: the first chown of the tree fails (killed); the directory keeps its old owner.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "chown").write_text("#!/bin/sh\n[ \"$1\" = -h ] && exit 1\nexec /bin/chown \"$@\"\n")
    (fake / "chown").chmod(0o755)
    failed = subprocess.run(["sh", "-c", command], env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
                            capture_output=True, text=True)
    assert failed.returncode != 0 and tree.stat().st_uid == 1000
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path in (tree, tree / "data", tree / "data" / "git", tree / "data" / "git" / "HEAD"):
        assert (path.stat().st_uid, path.stat().st_gid) == (61000, 61000), path
    assert (tree / "data" / "link").lstat().st_uid == 61000 and outside.stat().st_uid == os.getuid()
