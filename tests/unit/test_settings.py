"""Inventory data is checked before anything is touched: each bad value named with its reason."""

import subprocess
import sys
import textwrap

import pytest

from inventories import precedence
from tasks import REPO, settings
from tests.unit.render import sample_data

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
# backups need a repository: production's come from Terraform's outputs
GOOD = sample_data(backup_s3_bucket="example-gitea-backups", aws_region="eu-central-1")


def test_good_data_passes():
    assert settings.problems(GOOD) == []
    settings.validate(GOOD)  # does not raise


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("gitea_domain", "not a domain", "gitea_domain: 'not a domain' is not a valid fully qualified domain name"),
        ("gitea_domain", "localhost", "gitea_domain: 'localhost' is not a valid fully qualified domain name"),
        ("gitea_domain", "10.0.0.1", "gitea_domain: '10.0.0.1' is an IP address, not a domain name"),
        ("acme_email", "ops-at-example.com", "acme_email: 'ops-at-example.com' is not a valid e-mail address"),
        ("gitea_image", "gitea/gitea", "gitea_image: 'gitea/gitea' has no tag: pin a version"),
        ("gitea_image", "gitea/gitea:latest", "gitea_image: 'gitea/gitea:latest' tag 'latest' is not a pinned version"),
        ("postgres_image", "registry:5000/postgres", "postgres_image: 'registry:5000/postgres' has no tag"),
        ("admin_ssh_port", 70000, "admin_ssh_port: 70000 is not a TCP port (1-65535)"),
        ("admin_ssh_port", "2222", "admin_ssh_port: '2222' is a str, expected int"),
        ("admin_ssh_port", 22, "git_ssh_port: 22 is already used by admin_ssh_port"),
        ("gitea_http_port", 443, "https (fixed): 443 is already used by gitea_http_port"),
        ("git_ssh_port", True, "git_ssh_port: True is a bool, expected int"),
        ("acme_server", "http://acme.example.com/dir", "acme_server: 'http://acme.example.com/dir' must be an https:// URL"),
        ("acme_ca_bundle", "-----BEGIN PRIVATE KEY-----", "acme_ca_bundle: '-----BEGIN PRIVATE KEY-----' must be PEM certificate text"),
        ("data_root", "srv/gitea", "data_root: 'srv/gitea' must be an absolute path"),
        ("data_root", "/", "data_root: '/' must be an absolute path"),
        ("gitea_admin_username", "admin", "gitea_admin_username: 'admin' is a name Gitea reserves"),
        ("nginx_client_max_body_size", "lots", "nginx_client_max_body_size: 'lots' is not an nginx size"),
        ("compose_subnet", "172.30.0.0/33", "compose_subnet: '172.30.0.0/33' is not a CIDR network"),
        ("fail2ban_maxretry", 0, "fail2ban_maxretry: 0 must be 1-100"),
        # backup
        ("backup_schedule", "60 * * * *", "backup_schedule: '60 * * * *' has a bad minute field '60'"),
        ("backup_schedule", "hourly", "backup_schedule: 'hourly' is not a cron schedule"),
        ("backup_schedule", "*/0 * * * *", "backup_schedule: '*/0 * * * *' has a bad minute field"),
        ("backup_schedule", "0 0 * * 8", "backup_schedule: '0 0 * * 8' has a bad day of week field"),
        ("backup_s3_bucket", "Bad_Bucket", "backup_s3_bucket: 'Bad_Bucket' is not an S3 bucket name"),
        ("backup_s3_bucket", "10.0.0.1", "backup_s3_bucket: '10.0.0.1' is not an S3 bucket name"),
        ("backup_s3_prefix", "/gitea/", "backup_s3_prefix: '/gitea/' must be a relative key prefix"),
        ("aws_region", "Frankfurt", "aws_region: 'Frankfurt' is not an AWS region"),
        ("aws_region", None, "aws_region: is required with backup_s3_bucket"),
        ("s3_endpoint", "127.0.0.1:5050", "s3_endpoint: '127.0.0.1:5050' must be http(s)://host[:port]"),
        ("ssm_parameter_path", "gitea/prod", "ssm_parameter_path: 'gitea/prod' must look like /a/b"),
        ("ssm_parameter_path", "/aws/gitea", "ssm_parameter_path: '/aws/gitea' must look like /a/b"),
        ("backup_aws_access_key_id", "AKIAABCDEFGHIJKLMNOP", "looks like a real AWS access key"),
        ("backup_aws_access_key_id", "lab-key", "static AWS keys are for emulated AWS (s3_endpoint) only"),
        ("backup_aws_secret_access_key", "lab-secret", "set both static key values, or neither"),
        ("backup_local_repository", "../backups", "backup_local_repository: '../backups' must be a path below"),
        ("backup_local_repository", "/var/backups/restic", "must be on the data volume, below /srv/gitea"),
        ("backup_keep_daily", -1, "backup_keep_daily: -1 must be 0-10000"),
        ("backup_keep_hourly", "24", "backup_keep_hourly: '24' is a str, expected int"),
        ("backup_stop_gitea", "yes", "backup_stop_gitea: 'yes' is a str, expected bool"),
        ("backup_read_data_subset", "5", "backup_read_data_subset: '5' must be a percentage"),
        ("backup_read_data_days", 0, "backup_read_data_days: 0 must be 1-366"),
        ("node_exporter_port", 3000, "node_exporter_port: 3000 is already used by gitea_http_port"),
        ("node_exporter_textfile_dir", "textfiles", "node_exporter_textfile_dir: 'textfiles' must be an absolute"),
        ("restore_snapshot", "newest", "restore_snapshot: 'newest' must be latest or a snapshot ID"),
        ("restore_snapshot", 12345678, "restore_snapshot: 12345678 is a number: pass the ID as a JSON string"),
        # whitelists matched in full (issue 8 section 2; more in tests/unit/test_hostile_input.py)
        ("gitea_image", "gitea/gitea:1.27.3\n", "gitea_image: 'gitea/gitea:1.27.3\\n' is not an image reference"),
        ("gitea_image", "gitea/Gitea:1.27.3", "gitea_image: 'gitea/Gitea:1.27.3' is not an image reference"),
        ("gitea_image", "gitea/gitea@sha256:1234", "gitea_image: 'gitea/gitea@sha256:1234' is not an image reference"),
        ("gitea_domain", "git.example.com\n", "gitea_domain: 'git.example.com\\n' is not a valid fully qualified"),
        ("acme_email", "ops@example.com;id", "acme_email: 'ops@example.com;id' is not a valid e-mail address"),
        ("gitea_admin_username", "git--admin", "gitea_admin_username: 'git--admin' is not a valid Gitea username"),
        ("gitea_app_name", "Gitea\nX: y", "gitea_app_name: 'Gitea\\nX: y' holds '\\n': control and format"),
        ("database_endpoint", "db.example.com", "database_endpoint: 'db.example.com' is not host:port"),
        ("database_endpoint", "db.example.com:0", "database_endpoint: 'db.example.com:0' is not host:port"),
        # the app.ini passthrough (full cases: tests/unit/test_gitea_config.py) and mail
        ("gitea_config", [("ui", {})], "gitea_config: [('ui', {})] is a list, expected dict"),
        ("gitea_config", {"server": {"ROOT_URL": "https://x.example.com/"}},
         "gitea_config.server.ROOT_URL: is set by the deploy: use gitea_domain"),
        ("gitea_config", {"cache": {"HOST__FILE": "redis"}}, "secret 'redis' is not declared in gitea_secrets"),
        ("gitea_secrets", {"restic_password": "operator"}, "gitea_secrets.restic_password: is one of the deploy's"),
        ("gitea_secrets", "redis", "gitea_secrets: 'redis' is a str, expected dict"),
        ("mailer_host", "smtp.example.com\n", "mailer_host: 'smtp.example.com\\n' is not a host name or IP"),
        ("mailer_host", "smtp.example.com:465", "is not a host name or IP address"),
        ("mailer_protocol", "ssl", "mailer_protocol: 'ssl' must be one of smtps, smtp+starttls, smtp"),
        ("mailer_port", "465", "mailer_port: '465' is a str, expected int or None"),
        ("mailer_port", 465, "mailer_port: 465 is set but mail is off: set mailer_host too"),
        ("mailer_from", "gitea@example.com", "mailer_from: 'gitea@example.com' is set but mail is off"),
        ("mailer_user", "AKIAEXAMPLE", "mailer_user: 'AKIAEXAMPLE' is set but mail is off"),
        ("mailer_user", "me with spaces", "mailer_user: 'me with spaces' must be 1-256 of letters"),
        # sshd's AllowUsers and the host firewall
        ("ssh_allow_users", ["admin", "ops team"], "ssh_allow_users: ['admin', 'ops team'] item 'ops team' is not a Unix login name"),
        ("ssh_allow_users", ["admin", "admin"], "ssh_allow_users: ['admin', 'admin'] lists an item twice"),
        ("journal_max_use", "1 GB", "journal_max_use: '1 GB' is not a journald size"),
        ("journal_max_retention", "forever", "journal_max_retention: 'forever' is not a systemd time span"),
        ("admin_cidrs", ["my office"], "admin_cidrs: ['my office'] item 'my office' is not a CIDR network"),
    ],
)
def test_bad_value_is_named(key, value, message):
    with pytest.raises(settings.SettingsError) as error:
        settings.validate({**GOOD, key: value}, host="web-1")
    assert "for host web-1" in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize("key", ["gitea_domain", "gitea_admin_email", "acme_email"])
def test_required_key_missing(key):
    data = {k: v for k, v in GOOD.items() if k != key}
    assert any(p.startswith(f"{key}: is required") for p in settings.problems(data))


def test_backups_need_a_repository_and_retention_that_keeps_something():
    no_repository = {**GOOD, "backup_s3_bucket": None, "backup_local_repository": None}
    assert any(p.startswith("backup_s3_bucket: no backup repository") for p in settings.problems(no_repository))
    assert settings.problems({**no_repository, "backup_local_repository": "/srv/gitea/backup/restic"}) == []
    keep_nothing = {**GOOD, **{f"backup_keep_{k}": 0 for k in ("hourly", "daily", "weekly", "monthly")}}
    assert any("retention keeps nothing" in p for p in settings.problems(keep_nothing))


@pytest.mark.parametrize("value, message", [
    ("Git <gitea@example.com", "mailer_from: 'Git <gitea@example.com' must be name@domain or"),
    ("<gitea@example.com>", "is not a valid e-mail address"),
    ('"Git" <gitea@example.com>', "must be name@domain or `Display Name <name@domain>`"),
    ("Git <gitea@example.com>\nBcc: x@evil.example", "must be name@domain or"),
    ("gitea@example.com\r\n", "is not a valid e-mail address"),
])
def test_mailer_from_is_an_address_gitea_parses(value, message):
    found = settings.problems({**GOOD, "mailer_host": "smtp.example.com", "mailer_from": value})
    assert any(message in line for line in found), found


def test_mail_settings_that_go_together():
    mail = {**GOOD, "mailer_host": "email-smtp.eu-central-1.amazonaws.com"}
    assert settings.problems(mail) == []
    assert settings.problems({**mail, "mailer_from": "Example Git <git@example.com>", "mailer_port": 2465,
                              "mailer_user": "AKIAIOSFODNN7EXAMPLE", "mailer_protocol": "smtps"}) == []
    assert settings.problems({**mail, "mailer_user": "relay", "mailer_protocol": "smtp"}) == [
        "mailer_protocol: 'smtp' sends mailer_user's password unencrypted: use smtps or smtp+starttls"]
    assert settings.problems({**mail, "mailer_protocol": "smtp", "mailer_port": 2525}) == []  # a private relay


def test_a_default_that_follows_other_settings_is_the_tables():
    """mailer_port and mailer_from hold None (so "set but mail is off" can be told from a default) and
    their rows compute what None means: no other module holds a default of its own."""
    mail = sample_data(mailer_host="smtp.example.com")
    port, sender = settings.BY_NAME["mailer_port"], settings.BY_NAME["mailer_from"]
    assert port.default is None and sender.default is None and settings.defaults()["mailer_port"] is None
    for protocol, number in (("smtps", 465), ("smtp+starttls", 587), ("smtp", 25)):
        assert settings.effective({**mail, "mailer_protocol": protocol}, "mailer_port") == number
        assert f"{protocol} {number}" in port.doc  # the doc is made from the same table
    assert settings.effective({**mail, "mailer_port": 2525}, "mailer_port") == 2525
    assert settings.effective(mail, "mailer_from") == "gitea@git.example.com"
    assert settings.effective({**mail, "mailer_from": "Git <git@example.com>"}, "mailer_from") == "Git <git@example.com>"
    assert settings.effective(mail, "mailer_host") == "smtp.example.com"  # a row without one: the value
    assert [s.name for s in settings.SETTINGS if s.derived] == ["mailer_port", "mailer_from"]
    assert all(s.default is None for s in settings.SETTINGS if s.derived)  # derived only from None


def test_every_setting_is_documented_and_defaults_pass_their_checks():
    for s in settings.SETTINGS:
        assert s.doc and s.concern, s.name
        if s.default is not settings.REQUIRED and s.check and s.default is not None:
            assert s.check(s.default) is None, s.name


def test_group_data_all_exports_exactly_the_defaults():
    assert precedence.group_data("all") == settings.defaults()


def test_bad_inventory_stops_pyinfra_before_any_connection(tmp_path):
    """A bad value in an inventory fails the real CLI with the key named, and no host is
    contacted: the inventory points at a port nothing listens on, and the error is ours."""
    inventory = tmp_path / "broken.py"
    inventory.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from inventories.precedence import checked_hosts
        hosts = checked_hosts([("web-1", {{
            "ssh_hostname": "127.0.0.1", "ssh_port": 1,
            "gitea_domain": "git.example.com", "gitea_admin_email": "a@example.com",
            "acme_email": "ops@example.com", "gitea_image": "gitea/gitea:latest",
        }})], group="broken")
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "gitea_image: 'gitea/gitea:latest' tag 'latest' is not a pinned version" in output
    assert "Connecting to hosts" not in output


def test_deploy_py_catches_data_overrides(tmp_path):
    """`--data` overrides bypass the inventory check; deploy.py validates again before any op."""
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--dry", "@local", "deploy.py",
         "--data", "gitea_domain=bad_domain", "--data", "acme_email=ops@example.com",
         "--data", "gitea_admin_email=a@example.com"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "gitea_domain: 'bad_domain' is not a valid fully qualified domain name" in output
    assert "Install " not in output  # no operation was prepared


# --- the image reference grammar, unknown keys, RDS mode ---------------------------------------

@pytest.mark.parametrize("image", [
    "docker.gitea.com/gitea:1.27.3-rootless", "docker.io/library/postgres:17.6-trixie",
    "127.0.0.1:5000/lab/gitea-standin:1.27.3", "127.0.0.1:5000/lab/postgres:17", "gitea/gitea:1.27.3",
    "localhost:5000/a/b/c:v1_2.3-x", "registry.example.com/a__b.c-d---e:1", "postgres:17",
    "postgres@sha256:" + "a" * 64, "registry.example.com:443/x/y:1@sha256:" + "0" * 64,
])
def test_pinned_image_accepts_the_oci_grammar(image):
    assert settings.pinned_image(image) is None


@pytest.mark.parametrize("image", [
    "gitea/gitea", "gitea/gitea:latest", "registry:5000/postgres", "gitea/gitea:", "gitea/gitea:.1",
    "gitea/gitea:" + "1" * 129, "gitea/-gitea:1", "gitea/gitea-:1", "gitea/gi..tea:1", "/gitea:1",
    "gitea/gitea:1@sha256:" + "A" * 64, "gitea/gitea@sha512:" + "a" * 128, "exa mple.com/gitea:1",
    "-registry.example.com/gitea:1",
])
def test_pinned_image_refuses_what_is_not_one_pinned_reference(image):
    assert settings.pinned_image(image)


def test_misspelt_key_is_an_error_naming_the_closest_known_key():
    hosts = [("web-1", {"ssh_hostname": "192.0.2.10", "ssh_port": 2222, "ssh_user": "admin",
                        "gitea_domian": "git.example.com", "gitea_admin_email": "a@example.com",
                        "acme_email": "ops@example.com", "backup_s3_bucket": "example-gitea-backups",
                        "aws_region": "eu-central-1"})]
    with pytest.raises(settings.SettingsError) as error:
        precedence.checked_hosts(hosts, group="no-such-group")
    assert "gitea_domian: is not a known inventory key: did you mean gitea_domain?" in str(error.value)
    assert "for host web-1" in str(error.value)


@pytest.mark.parametrize("key, closest", [("_sudo_usr", "_sudo_user"), ("ssh_prot", "ssh_port"),
                                          ("acme_emial", "acme_email"), ("_use_sudo_logn", "_use_sudo_login")])
def test_unknown_keys_suggest_the_closest_known_one(key, closest):
    assert f"{key}: is not a known inventory key: did you mean {closest}?" in settings.problems({**GOOD, key: 1})


def test_unrelated_unknown_key_is_an_error_too():
    [line] = settings.unknown_keys({**GOOD, "zzqqxx": 1})
    assert line.startswith("zzqqxx: is not a known inventory key: not a deploy setting")


# pyinfra's own names (pyinfra/connectors/ssh.py, pyinfra/api/arguments.py): allowed in host data.
PYINFRA_KEYS = [
    "ssh_hostname", "ssh_port", "ssh_user", "ssh_key", "ssh_key_password", "ssh_password",
    "ssh_known_hosts_file", "ssh_strict_host_key_checking", "ssh_forward_agent", "ssh_config_file",
    "ssh_connect_retries", "ssh_connect_retry_min_delay", "ssh_connect_retry_max_delay",
    "ssh_paramiko_connect_kwargs", "ssh_allow_agent", "ssh_look_for_keys", "ssh_file_transfer_protocol",
    "docker_identifier", "docker_platform", "docker_architecture", "chroot_directory",
    "_sudo", "_sudo_user", "_use_sudo_login", "_sudo_password", "_preserve_sudo_env", "_su_user",
    "_use_su_login", "_preserve_su_env", "_su_shell", "_su_password", "_doas", "_doas_user", "_dzdo",
    "_dzdo_user", "_shell_executable", "_chdir", "_env", "_success_exit_codes", "_timeout", "_get_pty",
    "_stdin", "_retries", "_retry_delay", "_retry_until", "_temp_dir", "_ignore_errors",
    "_continue_on_error", "_if", "_parallel", "_run_once", "_serial",
]


def test_pyinfra_connector_keys_and_global_arguments_are_allowed():
    assert set(PYINFRA_KEYS) <= settings.pyinfra_keys()
    assert settings.unknown_keys({**GOOD, **{key: None for key in PYINFRA_KEYS}}) == []
    assert "name" not in settings.pyinfra_keys()  # the one global argument without _: not host data


def test_every_key_the_host_sources_give_is_known():
    from inventories import sources

    assert settings.unknown_keys({key: None for key in sources.HOST_KEYS}) == []


def test_what_pyinfra_puts_in_host_data_is_not_refused(tmp_path):
    """host.data.dict() as deploy.py sees it (group_data/all.py, inventory, --data, pyinfra's own
    additions) holds no key validate() would call unknown."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(textwrap.dedent("""
        hosts = [("@local", {"ssh_user": "admin", "ssh_port": 2222, "ssh_known_hosts_file": "/dev/null",
                              "ssh_strict_host_key_checking": "accept-new", "_sudo": False, "_env": {}})]
    """))
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from pyinfra import host
        from tasks import settings
        print("KEYS", json.dumps(sorted(host.data.dict())))
        print("UNKNOWN", json.dumps(settings.unknown_keys(host.data.dict())))
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--dry", str(inventory), str(probe),
         "--data", "gitea_domain=git.example.com"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    keys = next(line for line in output.splitlines() if line.startswith("KEYS "))
    assert '"gitea_domain"' in keys and '"backup_schedule"' in keys and '"ssh_user"' in keys  # all three sources
    assert "UNKNOWN []" in output, output


def test_allow_users_must_let_the_deploy_itself_in():
    """AllowUsers without ssh_user would lock the deploy (and the operator) out at its next run."""
    with pytest.raises(settings.SettingsError, match="ssh_allow_users: \\['ops'\\] leaves out ssh_user 'admin'"):
        settings.validate({**GOOD, "ssh_user": "admin", "ssh_allow_users": ["ops"]})
    settings.validate({**GOOD, "ssh_user": "admin", "ssh_allow_users": ["ops", "admin"]})  # does not raise


def test_an_external_database_needs_its_ca():
    """verify-full against the operator's CA, or no external database: never a weaker TLS mode."""
    endpoint = "gitea.abc123.eu-central-1.rds.amazonaws.com:5432"
    assert settings.host_port(endpoint) is None
    with pytest.raises(settings.SettingsError, match="database_ca_bundle: is required with database_endpoint"):
        settings.validate({**GOOD, "database_endpoint": endpoint}, host="web-1")
    assert settings.problems({**GOOD, "database_endpoint": endpoint, "database_ca_bundle": PEM}) == []
    assert settings.problems({**GOOD, "database_endpoint": None}) == []


@pytest.mark.parametrize("value", ["10.0.1.5:5432", "[2001:db8::5]:5432", "db.internal.example:65535"])
def test_database_endpoint_format(value):
    assert settings.host_port(value) is None
