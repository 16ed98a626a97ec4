"""Templates render with every key defined (StrictUndefined, as pyinfra renders them) and say
what the deploy promises: no secret values, loopback-only Gitea HTTP, Mozilla TLS, HSTS."""


import json
import re

import jinja2
import pytest
import yaml

from tasks import gitea, settings
from tasks.secrets import LAYOUT
from tests.unit.render import render, render_with, sample_data


def test_compose_file_has_no_secret_values_and_binds_http_to_loopback():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2"))
    db, gitea = compose["services"]["db"], compose["services"]["gitea"]
    assert "ports" not in db  # PostgreSQL is never published
    assert gitea["ports"] == ["127.0.0.1:3000:3000", "22:2222"]
    assert db["image"] == settings.BY_NAME["postgres_image"].default  # Renovate bumps it there alone
    assert gitea["depends_on"]["db"]["condition"] == "service_healthy"
    assert "/api/healthz" in " ".join(gitea["healthcheck"]["test"])
    env = gitea["environment"]
    assert env["GITEA__server__ROOT_URL"] == "https://git.example.com/"
    assert env["GITEA__service__DISABLE_REGISTRATION"] == "true"
    # Secrets only ever as file paths
    for key, value in {**env, **db["environment"]}.items():
        if re.search(r"(PASSWD|PASSWORD|SECRET|TOKEN)(_FILE)?$", key):
            assert key.endswith("_FILE") and value.startswith("/run/secrets/"), key
    assert set(compose["secrets"]) == set(LAYOUT)
    assert all(s["file"].startswith("/srv/gitea/secrets/") for s in compose["secrets"].values())


def test_containers_are_confined_with_the_inventorys_limits():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", gitea_memory_limit="2g", db_pids_limit=300))
    db, gitea = compose["services"]["db"], compose["services"]["gitea"]
    for service in (db, gitea):
        assert service["security_opt"] == ["no-new-privileges:true"] and service["cap_drop"] == ["ALL"]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert "cap_add" not in gitea  # it runs as its own uid and needs none
    assert db["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    assert (gitea["mem_limit"], gitea["pids_limit"], db["mem_limit"], db["pids_limit"]) == ("2g", 1024, "512m", 300)
    assert db["environment"]["PGDATA"] == "/var/lib/postgresql/data"  # where its volume is, whatever the image says


def test_daemon_json_logs_to_the_journal_and_keeps_containers_on_restart():
    daemon = json.loads(render("docker/daemon.json.j2"))
    assert daemon["log-driver"] == "journald" and daemon["log-opts"] == {"tag": "{{.Name}}"}
    assert daemon["live-restore"] is True


def test_sshd_drop_in_keeps_admin_port_and_hardens():
    conf = render("ssh/gitea-deploy.conf.j2", admin_ssh_port=2200)
    lines = {line.split()[0]: line.split()[1] for line in conf.splitlines() if line and not line.startswith("#")}
    assert lines["Port"] == "2200"
    assert lines["PermitRootLogin"] == "no"
    assert lines["PasswordAuthentication"] == "no"
    assert lines["KexAlgorithms"].split(",")[0] == "mlkem768x25519-sha256"
    assert "curve25519-sha256" in lines["KexAlgorithms"].split(",")  # what paramiko (pyinfra) speaks
    assert "aes256-ctr" in lines["Ciphers"].split(",") and "hmac-sha2-256" in lines["MACs"].split(",")
    assert not [a for a in lines["MACs"].split(",") if "sha1" in a or "md5" in a]


def test_sshd_lets_in_only_the_listed_accounts():
    conf = render("ssh/gitea-deploy.conf.j2", ssh_allow_users=["admin", "ops"])
    assert "\nAllowUsers admin ops\n" in conf


def test_https_vhost_proxies_without_uri_and_hides_metrics():
    conf = render("nginx/gitea-https.conf.j2")
    assert "proxy_pass http://127.0.0.1:3000;" in conf
    assert "location = /metrics" in conf
    assert "client_max_body_size 512M;" in conf
    assert "server_name git.example.com;" in conf
    assert "server_tokens off;" in conf


def test_http_vhost_redirects_to_configured_name_not_host_header():
    conf = render("nginx/gitea-http.conf.j2")
    assert "return 301 https://git.example.com$request_uri;" in conf
    assert "/.well-known/acme-challenge/" in conf


def test_tls_snippet_is_mozilla_intermediate():
    conf = render("nginx/gitea-tls.conf.j2")
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "ssl_prefer_server_ciphers off;" in conf
    assert 'Strict-Transport-Security "max-age=63072000" always' in conf
    assert "ssl_stapling" not in conf


def _nginx_directives(conf: str) -> list[tuple[tuple[str, ...], str, str]]:
    """(enclosing blocks, directive name, its arguments) for each simple directive of an nginx file."""
    found, blocks, word, quote = [], [], "", None
    for line in conf.splitlines():
        for ch in line:
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            elif ch in "{;}":
                name, _, args = word.strip().partition(" ")
                if ch == "{":
                    blocks.append(word.strip())
                elif ch == ";":
                    found.append((tuple(blocks), name, args.strip()))
                else:
                    blocks.pop()
                word = ""
                continue
            word += ch
        word += " "
    return found


def test_front_door_headers_once_at_server_level_on_every_response():
    """nginx drops every server-level add_header in a location that has one of its own, and sends
    them on 2xx/3xx only unless `always`; Gitea's own copy (X-Frame-Options on its pages) must
    not double ours. The TLS snippet is included in the same server block."""
    https = _nginx_directives(render("nginx/gitea-https.conf.j2"))
    server = [(name, args) for blocks, name, args in https if blocks == ("server",)]
    assert ("include", "/etc/nginx/snippets/gitea-tls.conf") in server
    server += [(name, args) for _, name, args in _nginx_directives(render("nginx/gitea-tls.conf.j2"))]
    added = [args.split(" ", 1) for name, args in server if name == "add_header"]
    names = [header for header, _ in added]
    assert sorted(names) == sorted({"Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy",
                                    "X-Frame-Options", "Permissions-Policy"})  # each once, no CSP of ours
    assert [h for h, value in added if not value.endswith(" always")] == []
    assert sorted(args for name, args in server if name == "proxy_hide_header") == sorted(names)
    assert [(blocks, name) for blocks, name, _ in https
            if len(blocks) > 1 and name in ("add_header", "proxy_hide_header")] == []


def test_certbot_drop_in_only_sets_ca_when_given():
    pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    with_ca = render("certbot/gitea-deploy.conf.j2", acme_ca_bundle=pem)
    assert "REQUESTS_CA_BUNDLE=/etc/letsencrypt/gitea-deploy-acme-ca.pem" in with_ca
    assert "REQUESTS_CA_BUNDLE" not in render("certbot/gitea-deploy.conf.j2", acme_ca_bundle=None)


def test_undefined_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        render_with("nginx/gitea-https.conf.j2", sample_data(), {})  # cert_dir and tls_snippet missing


def test_an_external_database_replaces_the_db_service():
    """database_endpoint (RDS): no db container, Gitea on the endpoint with verify-full and the CA."""
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", database_endpoint="db.example.com:5432",
                                    database_ca_bundle="-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"))
    assert set(compose["services"]) == {"gitea"}
    gitea = compose["services"]["gitea"]
    assert "depends_on" not in gitea
    env = gitea["environment"]
    assert env["GITEA__database__HOST"] == "db.example.com:5432"
    assert env["GITEA__database__SSL_MODE"] == "verify-full"
    assert env["GITEA__database__PASSWD__FILE"] == "/run/secrets/db_password"
    assert f"/srv/gitea/database-ca.pem:{env['PGSSLROOTCERT']}:ro" in gitea["volumes"]


def test_the_local_database_is_on_the_private_network_without_tls():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2"))
    env = compose["services"]["gitea"]["environment"]
    assert (env["GITEA__database__HOST"], env["GITEA__database__SSL_MODE"]) == ("db:5432", "disable")
    assert "PGSSLROOTCERT" not in env and "ports" not in compose["services"]["db"]


# --- Gitea's app.ini environment: one context function (tasks/gitea.py), gitea_config over it --

def gitea_env(**values) -> dict:
    return yaml.safe_load(render("gitea/compose.yaml.j2", **values))["services"]["gitea"]["environment"]


def test_gitea_environment_is_the_context_functions():
    data = sample_data(gitea_config={"ui": {"DEFAULT_THEME": "gitea-dark"}})
    env = gitea_env(gitea_config=data["gitea_config"])
    assert {k: v for k, v in env.items() if k.startswith("GITEA__")} == gitea.environment(data)
    assert set(env) - set(gitea.environment(data)) == {"USER"}


def test_site_title_is_the_root_section_and_links_come_from_root_url():
    env = gitea_env(gitea_app_name="Example Git")
    assert env["GITEA____APP_NAME"] == "Example Git"
    assert not [k for k in env if k.upper().startswith("GITEA__DEFAULT__")]  # a junk [default] section
    assert env["GITEA__server__PUBLIC_URL_DETECTION"] == "never"
    assert env["GITEA__security__REVERSE_PROXY_TRUSTED_PROXIES"] == "127.0.0.0/8,::1/128,172.30.0.0/24"


def test_operator_config_is_laid_over_the_deploys_defaults_and_mounts_its_secrets():
    compose = yaml.safe_load(render(
        "gitea/compose.yaml.j2",
        gitea_config={"session": {"PROVIDER": "redis", "PROVIDER_CONFIG__FILE": "redis_session"},
                      "security": {"MIN_PASSWORD_LENGTH": 16}, "server": {"LFS_START_SERVER": False},
                      "ui.meta": {"DESCRIPTION": "Costs $5"}, "camo": {"HMAC_KEY__FILE": "camo_hmac"}},
        gitea_secrets={"redis_session": "operator", "camo_hmac": "generate"}))
    env = compose["services"]["gitea"]["environment"]
    assert env["GITEA__session__PROVIDER"] == "redis"
    assert env["GITEA__session__PROVIDER_CONFIG__FILE"] == "/run/secrets/redis_session"
    assert env["GITEA__security__MIN_PASSWORD_LENGTH"] == "16"
    assert env["GITEA__server__LFS_START_SERVER"] == "false"
    assert env["GITEA__ui_0X2E_meta__DESCRIPTION"] == "Costs $$5"  # Compose makes it one $
    assert env["GITEA__server__ROOT_URL"] == "https://git.example.com/"  # the deploy's keys stay
    assert {"redis_session", "camo_hmac"} <= set(compose["services"]["gitea"]["secrets"])
    assert compose["secrets"]["redis_session"] == {"file": "/srv/gitea/secrets/redis_session"}
    assert set(compose["secrets"]) == set(LAYOUT) | {"redis_session", "camo_hmac"}


def test_an_operator_file_replaces_the_deploys_inline_value_of_the_same_key():
    env = gitea_env(gitea_config={"session": {"PROVIDER__FILE": "provider"}}, gitea_secrets={"provider": "operator"})
    assert env["GITEA__session__PROVIDER__FILE"] == "/run/secrets/provider"
    assert "GITEA__session__PROVIDER" not in env  # two variables for one key: which wins is undefined


def test_a_key_the_deploy_owns_is_never_rendered_from_gitea_config():
    # Validation refuses it first (tests/unit/test_gitea_config.py); the renderer refuses it again.
    with pytest.raises(ValueError, match="gitea_config.server.ROOT_URL is set by the deploy"):
        gitea.environment(sample_data(gitea_config={"server": {"ROOT_URL": "https://evil.example.com/"}}))


def test_mail_is_off_until_a_host_is_set():
    env = gitea_env()
    assert env["GITEA__mailer__ENABLED"] == "false"
    assert not [k for k in env if k.startswith("GITEA__mailer__") and k != "GITEA__mailer__ENABLED"]


# What each mailer input renders to, written out (not computed): the derived defaults (the protocol's
# port, gitea@<gitea_domain>) live in tasks/settings/table.py, and moving them must change nothing here.
@pytest.mark.parametrize("values, mailer", [
    ({"mailer_host": "smtp.example.com"},
     {"ENABLED": "true", "PROTOCOL": "smtps", "SMTP_ADDR": "smtp.example.com", "SMTP_PORT": "465",
      "FROM": "gitea@git.example.com"}),
    ({"mailer_host": "smtp.example.com", "mailer_protocol": "smtp+starttls"},
     {"ENABLED": "true", "PROTOCOL": "smtp+starttls", "SMTP_ADDR": "smtp.example.com", "SMTP_PORT": "587",
      "FROM": "gitea@git.example.com"}),
    ({"mailer_host": "10.0.0.25", "mailer_protocol": "smtp"},
     {"ENABLED": "true", "PROTOCOL": "smtp", "SMTP_ADDR": "10.0.0.25", "SMTP_PORT": "25",
      "FROM": "gitea@git.example.com"}),
    ({"mailer_host": "smtp.example.com", "mailer_port": 2465},
     {"ENABLED": "true", "PROTOCOL": "smtps", "SMTP_ADDR": "smtp.example.com", "SMTP_PORT": "2465",
      "FROM": "gitea@git.example.com"}),
    ({"mailer_host": "smtp.example.com", "mailer_from": "gitea@example.com", "gitea_domain": "code.example.org"},
     {"ENABLED": "true", "PROTOCOL": "smtps", "SMTP_ADDR": "smtp.example.com", "SMTP_PORT": "465",
      "FROM": "gitea@example.com"}),
    ({"mailer_host": "smtp.example.com", "gitea_domain": "code.example.org"},
     {"ENABLED": "true", "PROTOCOL": "smtps", "SMTP_ADDR": "smtp.example.com", "SMTP_PORT": "465",
      "FROM": "gitea@code.example.org"}),
    ({"mailer_host": "email-smtp.eu-central-1.amazonaws.com", "mailer_user": "AKIAIOSFODNN7EXAMPLE"},
     {"ENABLED": "true", "PROTOCOL": "smtps", "SMTP_ADDR": "email-smtp.eu-central-1.amazonaws.com",
      "SMTP_PORT": "465", "FROM": "gitea@git.example.com", "USER": "AKIAIOSFODNN7EXAMPLE",
      "PASSWD__FILE": "/run/secrets/mailer_password"}),
    ({"mailer_host": "smtp.example.net", "mailer_protocol": "smtp+starttls", "mailer_from": "Git <git@example.com>"},
     {"ENABLED": "true", "PROTOCOL": "smtp+starttls", "SMTP_ADDR": "smtp.example.net", "SMTP_PORT": "587",
      "FROM": "Git <git@example.com>"}),
    ({"mailer_host": "10.0.0.25", "mailer_protocol": "smtp", "mailer_port": 2525},
     {"ENABLED": "true", "PROTOCOL": "smtp", "SMTP_ADDR": "10.0.0.25", "SMTP_PORT": "2525",
      "FROM": "gitea@git.example.com"}),
])
def test_mailer_settings_render_mailer(values, mailer):
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", **values))
    env = compose["services"]["gitea"]["environment"]
    assert {k.removeprefix("GITEA__mailer__"): v for k, v in env.items() if k.startswith("GITEA__mailer__")} == mailer
    assert ("mailer_password" in compose["secrets"]) == ("USER" in mailer)


def test_the_journal_is_persistent_and_capped():
    conf = render("journald/gitea-deploy.conf.j2", journal_max_use="500M", journal_max_retention="2weeks")
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Journal]", "Storage=persistent", "SystemMaxUse=500M", "MaxRetentionSec=2weeks"]
