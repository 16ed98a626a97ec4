"""Inventory data is checked before anything is touched: each bad value named with its reason."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks import settings

REPO = Path(__file__).resolve().parents[2]
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
GOOD = {
    **settings.defaults(),
    "gitea_domain": "git.example.com",
    "gitea_admin_email": "admin@example.com",
    "acme_email": "ops@example.com",
    # backups need a repository: production's come from Terraform's outputs
    "backup_s3_bucket": "example-gitea-backups",
    "aws_region": "eu-central-1",
}


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
        ("docker_log_max_file", 0, "docker_log_max_file: 0 must be 1-100"),
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
        ("node_exporter_port", 3000, "node_exporter_port: 3000 is already used by another service"),
        ("node_exporter_textfile_dir", "textfiles", "node_exporter_textfile_dir: 'textfiles' must be an absolute"),
        ("restore_snapshot", "newest", "restore_snapshot: 'newest' must be latest or a snapshot ID"),
        ("restore_snapshot", 12345678, "restore_snapshot: 12345678 is a number: pass the ID as a JSON string"),
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


def test_every_setting_is_documented_and_defaults_pass_their_checks():
    for s in settings.SETTINGS:
        assert s.doc and s.concern, s.name
        if s.default is not settings.REQUIRED and s.check and s.default is not None:
            assert s.check(s.default) is None, s.name


def test_group_data_all_exports_exactly_the_defaults():
    assert settings.group_data("all") == settings.defaults()


def test_bad_inventory_stops_pyinfra_before_any_connection(tmp_path):
    """A bad value in an inventory fails the real CLI with the key named, and no host is
    contacted: the inventory points at a port nothing listens on, and the error is ours."""
    inventory = tmp_path / "broken.py"
    inventory.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tasks.settings import checked_hosts
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
