"""tasks/monitoring.py without a host: prometheus.yml and blackbox.yml as dicts and as the YAML the
deploy writes, the unit drop-ins, the container metrics program, the settings' checks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tasks import REPO, monitoring
from tasks.settings import SettingsError, validate
from tests.unit.load import load_file
from tests.unit.render import render, sample_data

JOBS = ["prometheus", "node", "gitea", "postgres", "nginx", "blackbox", "alertmanager", "blackbox_https",
        "blackbox_git_ssh"]


def jobs(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_config_has_exactly_the_agreed_jobs_all_on_loopback():
    config = monitoring.prometheus_config(sample_data())
    assert list(jobs(config)) == JOBS
    for name, job in jobs(config).items():
        (targets,) = [s["targets"] for s in job["static_configs"]]
        if name.startswith("blackbox_"):
            # A probe: its target is the public name; the scrape goes to the exporter on loopback.
            assert job["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "127.0.0.1:9115"}
        else:
            assert [t.split(":")[0] for t in targets] == ["127.0.0.1"], (name, targets)
    assert jobs(config)["node"]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    assert jobs(config)["alertmanager"]["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]


def test_gitea_is_scraped_on_its_own_port_with_the_token_file_at_most_once_a_minute():
    gitea = jobs(monitoring.prometheus_config(sample_data(gitea_http_port=3100)))["gitea"]
    assert gitea["static_configs"] == [{"targets": ["127.0.0.1:3100"]}]
    assert gitea["metrics_path"] == "/metrics"
    assert gitea["authorization"] == {"type": "Bearer", "credentials_file": monitoring.TOKEN_FILE}
    assert gitea["scrape_interval"] == "60s"  # the default 30s would count rows twice a minute
    config = monitoring.prometheus_config(sample_data(prometheus_scrape_interval="2m"))
    assert config["global"]["scrape_interval"] == "2m" and jobs(config)["gitea"]["scrape_interval"] == "2m"


def test_probes_go_through_the_public_name():
    probes = jobs(monitoring.prometheus_config(sample_data(git_ssh_port=2200)))
    assert probes["blackbox_https"]["static_configs"] == [{"targets": ["https://git.example.com/api/healthz"]}]
    assert probes["blackbox_https"]["params"] == {"module": [monitoring.HTTPS_MODULE]}
    assert probes["blackbox_git_ssh"]["static_configs"] == [{"targets": ["git.example.com:2200"]}]
    assert probes["blackbox_git_ssh"]["params"] == {"module": [monitoring.SSH_MODULE]}
    # The blackbox exporter alone resolves the name to this host.
    assert render("monitoring/blackbox-hosts.j2").splitlines()[-1] == "127.0.0.1 localhost git.example.com"
    unit = render("monitoring/blackbox-exporter.conf.j2")
    assert f"BindReadOnlyPaths={monitoring.BLACKBOX_HOSTS}:/etc/hosts" in unit.splitlines()


def test_an_external_database_has_no_postgres_job_or_exporter():
    data = sample_data(database_endpoint="db.example.com:5432", database_ca_bundle="-----BEGIN CERTIFICATE-----")
    assert "postgres" not in jobs(monitoring.prometheus_config(data))
    assert monitoring.POSTGRES_EXPORTER not in monitoring.packages(data)
    assert monitoring.POSTGRES_EXPORTER in monitoring.packages(sample_data())


def test_blackbox_modules_verify_the_certificate_and_the_ssh_banner():
    modules = monitoring.blackbox_config(sample_data())["modules"]
    https = modules[monitoring.HTTPS_MODULE]
    assert https["prober"] == "http"
    assert https["http"]["tls_config"] == {"insecure_skip_verify": False}  # the system's CAs
    assert https["http"]["fail_if_not_ssl"] is True and https["http"]["valid_status_codes"] == [200]
    ssh = modules[monitoring.SSH_MODULE]
    assert ssh["prober"] == "tcp" and ssh["tcp"]["query_response"] == [{"expect": "^SSH-2.0-"}]
    with_ca = monitoring.blackbox_config(sample_data(monitoring_tls_ca_bundle="-----BEGIN CERTIFICATE-----\n"))
    assert with_ca["modules"][monitoring.HTTPS_MODULE]["http"]["tls_config"]["ca_file"] == monitoring.PROBE_CA_FILE


def test_the_yaml_written_reads_back_as_the_dict():
    config = monitoring.prometheus_config(sample_data())
    text = monitoring.serialized(config)
    assert yaml.safe_load(text) == config
    # The regexp's backslash survives the round trip.
    modules = monitoring.blackbox_config(sample_data())
    assert yaml.safe_load(monitoring.serialized(modules)) == modules


@pytest.mark.parametrize("name", ["monitoring/prometheus.conf.j2", "monitoring/postgres-exporter.conf.j2",
                                  "monitoring/nginx-exporter.conf.j2", "monitoring/blackbox-exporter.conf.j2"])
def test_every_daemon_listens_on_loopback_only(name):
    unit = render(name, prometheus_port=9091, postgres_exporter_port=9188, nginx_exporter_port=9114,
                  blackbox_exporter_port=9116)
    exec_start = [row for row in unit.splitlines() if row.startswith("ExecStart=/")]
    assert len(exec_start) == 1 and "ExecStart=\n" in unit
    listen = [arg for arg in exec_start[0].split() if arg.startswith("--web.listen-address=")]
    assert len(listen) == 1
    assert listen[0].split("=", 1)[1] in {"127.0.0.1:9091", "127.0.0.1:9188", "127.0.0.1:9114", "127.0.0.1:9116"}


def test_prometheus_flags_carry_the_retention():
    unit = render("monitoring/prometheus.conf.j2", prometheus_retention_time="90d", prometheus_retention_size="5GB")
    assert "--storage.tsdb.retention.time=90d --storage.tsdb.retention.size=5GB " in unit


def test_the_postgres_exporter_reads_its_password_from_a_file_at_the_fixed_address():
    unit = render("monitoring/postgres-exporter.conf.j2", compose_subnet="10.9.8.0/24")
    assert "Environment=DATA_SOURCE_URI=10.9.8.254:5432/postgres?sslmode=disable" in unit.splitlines()
    assert f"Environment=DATA_SOURCE_PASS_FILE={monitoring.MONITOR_PASSWORD_FILE}" in unit.splitlines()
    compose = render("gitea/compose.yaml.j2", compose_subnet="10.9.8.0/24")
    assert yaml.safe_load(compose)["services"]["db"]["networks"] == {"gitea": {"ipv4_address": "10.9.8.254"}}
    assert "ports" not in yaml.safe_load(compose)["services"]["db"]


def test_the_role_sql_keeps_the_password_off_every_command_line():
    command = monitoring.monitor_role_command("docker compose -f /srv/gitea/compose.yaml ",
                                              "/srv/gitea/secrets/monitor_db_password")
    assert "pw=$(cat /srv/gitea/secrets/monitor_db_password)" in command
    assert "printf 'ALTER ROLE gitea_monitor WITH LOGIN NOSUPERUSER" in command
    assert "GRANT pg_monitor TO gitea_monitor" in command
    assert command.endswith("| docker compose -f /srv/gitea/compose.yaml exec -T db psql -v ON_ERROR_STOP=1 -q -U gitea -d gitea")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("prometheus_scrape_interval", "1s", "must lie between 5 s and 300 s"),
    ("prometheus_scrape_interval", "30", "is not a Prometheus duration"),
    ("prometheus_scrape_interval", "30s --web.enable-admin-api", "is not a Prometheus duration"),
    ("prometheus_retention_time", "12h", "must lie between 86400 s"),
    ("prometheus_retention_time", "30d\n", "is not a Prometheus duration"),
    ("prometheus_retention_size", "2G", "is not a Prometheus size"),
    ("prometheus_retention_size", "50MB", "must be at least 100MB"),
    ("monitoring_tls_ca_bundle", "-----BEGIN PRIVATE KEY-----", "must be PEM certificate text"),
    ("prometheus_port", 9100, "prometheus_port: 9100 is already used by node_exporter_port"),
    ("nginx_status_port", 3000, "nginx_status_port: 3000 is already used by gitea_http_port"),
    ("compose_subnet", "172.30.0.0/29", "must be an IPv4 network of /28 or larger"),
])
def test_bad_monitoring_settings_are_refused(key, value, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(sample_data(**{key: value}))


def test_the_defaults_pass():
    validate(sample_data())


def _metrics_program():
    return load_file("files/monitoring/gitea-deploy-container-metrics", "container_metrics")


def test_container_metrics_follow_the_textfile_contract(tmp_path):
    program = _metrics_program()
    text = program.render([
        {"Name": "/gitea-gitea-1", "RestartCount": 3, "State": {"Running": True}},
        {"Name": "/gitea-db-1", "RestartCount": 0, "State": {"Running": False}},
    ])
    assert 'gitea_deploy_container_restart_count{container="gitea-gitea-1"} 3' in text.splitlines()
    assert 'gitea_deploy_container_running{container="gitea-db-1"} 0' in text.splitlines()
    assert "# TYPE gitea_deploy_container_running gauge" in text
    program.write_atomically(str(tmp_path), text)
    assert [p.name for p in tmp_path.iterdir()] == [program.FILE_NAME]  # no temporary file left
    assert (tmp_path / program.FILE_NAME).read_text() == text
    # promtool-free check of the exposition format: node_exporter's parser is the same text format.
    parsed = [line.split(" ") for line in text.splitlines() if not line.startswith("#")]
    assert all(len(p) == 2 and p[1].isdigit() for p in parsed)


def test_container_metrics_program_says_how_to_call_it():
    run = subprocess.run([sys.executable, str(REPO / "files/monitoring/gitea-deploy-container-metrics")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "TEXTFILE_DIR" in run.stderr
