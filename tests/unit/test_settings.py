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
