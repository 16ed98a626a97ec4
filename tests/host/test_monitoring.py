"""tasks/monitoring.py: Prometheus and the exporters run, on loopback only, and every target of
every scrape job is up; the configuration passes promtool; the secrets are root's and prometheus's."""

from __future__ import annotations

import json
import time

import pytest

from tasks import monitoring

SERVICES = {  # unit -> the port setting it must listen on (127.0.0.1 only)
    "prometheus": "prometheus_port",
    "prometheus-postgres-exporter": "postgres_exporter_port",
    "prometheus-nginx-exporter": "nginx_exporter_port",
    "prometheus-blackbox-exporter": "blackbox_exporter_port",
}
# The first scrape of every job follows a (re)start by up to one scrape interval.
UP_WAIT = 120


def expected_services(target) -> dict[str, str]:
    external = bool(target.data.get("database_endpoint"))
    return {unit: port for unit, port in SERVICES.items()
            if not (external and unit == "prometheus-postgres-exporter")}


def listeners(target) -> dict[str, set[str]]:
    """unit (by its process's cgroup) -> the TCP addresses it listens on."""
    found: dict[str, set[str]] = {}
    for line in target.sudo("ss -Hltnp").stdout.splitlines():
        fields = line.split()
        for pid in [p.split("=", 1)[1].rstrip(")") for p in fields[-1].split(",") if p.startswith("pid=")]:
            unit = target.sudo(f"ps -o unit= -p {int(pid)}").stdout.strip().removesuffix(".service")
            found.setdefault(unit, set()).add(fields[3])
    return found


def prometheus_api(target, path: str) -> dict:
    out = target.sudo(f"curl -fsS http://127.0.0.1:{target.data['prometheus_port']}{path}").stdout
    return json.loads(out)


def test_every_daemon_runs_and_listens_on_loopback_only(target):
    found = listeners(target)
    for unit, port in expected_services(target).items():
        assert target.service(unit) == (True, True), unit
        assert found.get(unit) == {f"127.0.0.1:{target.data[port]}"}, (unit, found.get(unit))
    # nginx's stub_status server: loopback too (its 80/443 are public by design).
    status = f"127.0.0.1:{target.data['nginx_status_port']}"
    assert status in found.get("nginx", set())
    assert not any(a.endswith(f":{target.data['nginx_status_port']}") and a != status for a in found.get("nginx", ()))


def test_every_target_of_every_job_is_up(target):
    """Prometheus's own view: each job of prometheus.yml has its targets, all healthy."""
    jobs = {job["job_name"] for job in monitoring.prometheus_config(target.data)["scrape_configs"]}
    deadline = time.monotonic() + UP_WAIT
    while True:
        active = prometheus_api(target, "/api/v1/targets?state=active")["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): (t["health"], t["lastError"]) for t in active}
        seen = {job for job, _ in health}
        down = {k: v for k, v in health.items() if v[0] != "up"}
        if seen == jobs and not down:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"jobs {sorted(jobs)}, seen {sorted(seen)}; not up: {down}")
        time.sleep(5)
    # `up` is what alerting reads: 1 for each target.
    result = prometheus_api(target, "/api/v1/query?query=up")["data"]["result"]
    # At least these: a job just removed from prometheus.yml (postgres, on a switch to an external
    # database) keeps its last `up` for the query's lookback.
    assert jobs <= {r["metric"]["job"] for r in result if r["value"][1] == "1"}


def test_the_probes_check_what_users_get(target):
    """The HTTPS probe verified the certificate (its expiry is known) and Gitea said pass; the git
    SSH probe read the banner."""
    values = {}
    for metric in ("probe_success", "probe_ssl_earliest_cert_expiry"):  # one query each: `or` would
        for r in prometheus_api(target, f"/api/v1/query?query={metric}")["data"]["result"]:  # merge them
            values[(metric, r["metric"]["job"])] = float(r["value"][1])
    assert values[("probe_success", "blackbox_https")] == 1
    assert values[("probe_success", "blackbox_git_ssh")] == 1
    assert values[("probe_ssl_earliest_cert_expiry", "blackbox_https")] > time.time() + 86400


def test_prometheus_config_passes_promtool(target):
    out = target.sudo(f"promtool check config {monitoring.CONFIG_FILE}")
    assert out.rc == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_node_exporter_has_the_systemd_collector_and_the_container_metrics(target):
    text = target.sudo(f"curl -fsS http://127.0.0.1:{target.data['node_exporter_port']}/metrics").stdout
    assert 'node_scrape_collector_success{collector="systemd"} 1' in text
    assert 'node_systemd_unit_state{name="prometheus.service",state="active",type="simple"} 1' in text
    running = [line for line in text.splitlines() if line.startswith("gitea_deploy_container_running{")]
    assert any('container="gitea-gitea-1"} 1' in line for line in running), running
    assert any(line.startswith('gitea_deploy_container_restart_count{container="gitea-gitea-1"}')
               for line in text.splitlines())
    # The apt collector writes where node_exporter reads.
    assert "node_reboot_required " in text or "apt_upgrades_pending" in text


def test_secrets_are_readable_by_root_and_prometheus_only(target):
    files = [monitoring.TOKEN_FILE]
    if not target.data.get("database_endpoint"):
        files.append(monitoring.MONITOR_PASSWORD_FILE)
    out = target.sudo(f"stat -c '%n %U:%G %a' {monitoring.SECRETS_DIR} {' '.join(files)}").stdout.splitlines()
    assert out[0] == f"{monitoring.SECRETS_DIR} root:prometheus 750"
    assert out[1:] == [f"{f} root:prometheus 440" for f in files]
    # No other user gets in: `nobody` cannot read them.
    assert target.sudo(f"runuser -u nobody -- cat {files[0]}").rc != 0
    # The token is Gitea's: Prometheus's copy holds the same value.
    same = target.sudo(f"cmp {target.data['data_root']}/secrets/metrics_token {monitoring.TOKEN_FILE}")
    assert same.rc == 0


# Where the deploy installs the PostgreSQL exporter: not with an external database (RDS).
@pytest.mark.applies.with_args(lambda data: monitoring.POSTGRES_EXPORTER in monitoring.exporters(data))
def test_the_exporter_role_is_least_privilege(target):
    sql = ("select rolsuper, rolcreatedb, rolcreaterole, pg_has_role('gitea_monitor', 'pg_monitor', 'member') "
           "from pg_roles where rolname = 'gitea_monitor'")
    out = target.compose(f"exec -T db psql -U gitea -d gitea -tAc \"{sql}\"")
    assert out.stdout.strip() == "f|f|f|t", out.stdout + out.stderr
    # The database stays unpublished: no host port leads to 5432.
    assert target.compose("port db 5432").stdout.strip() in ("", ":0")
