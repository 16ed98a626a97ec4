"""tasks/grafana.py: with grafana_enabled, Grafana runs healthy on 127.0.0.1:grafana_port only, refuses
anonymous visitors, takes the admin password from its file and serves the provisioned datasource and
dashboards; without it, no Grafana container runs."""

import json
import shlex

import pytest

from tasks import grafana


def test_a_grafana_container_runs_exactly_with_the_flag(target):
    running = target.sudo("docker ps --format '{{.Names}}'").stdout.split()
    # Off: no container; its data and password file may stay from when it was on
    # (docs/runbooks/monitoring.md).
    grafana = [name for name in running if name.endswith("-grafana-1")]
    assert bool(grafana) == bool(target.data.get("grafana_enabled")), running


@pytest.fixture
def enabled(target):
    """A host with grafana_enabled (the others deselect these checks: tests/host/conftest.py)."""
    return target


def api(target, path: str, auth: bool = True) -> tuple[int, str]:
    """GET Grafana's API on the host's loopback (as the admin, reading the password file as root)."""
    password = f"$(cat {target.data['data_root']}/secrets/{grafana.SECRET})"
    user = f"-u \"admin:{password}\"" if auth else ""
    url = shlex.quote(f"http://127.0.0.1:{target.data['grafana_port']}{path}")
    out = target.sudo(f"curl -sS -o /tmp/grafana-check.json -w '%{{http_code}}' {user} {url}; echo; "
                      f"cat /tmp/grafana-check.json; rm -f /tmp/grafana-check.json").stdout
    code, _, body = out.partition("\n")
    return int(code), body


@pytest.mark.when_set("grafana_enabled")
def test_listens_on_loopback_only(enabled):
    port = enabled.data["grafana_port"]
    listeners = enabled.sudo(f"ss -Htln 'sport = :{port}'").stdout.split("\n")
    addresses = {line.split()[3].rpartition(":")[0] for line in listeners if line.strip()}
    assert addresses == {"127.0.0.1"}


@pytest.mark.when_set("grafana_enabled")
def test_anonymous_access_is_refused(enabled):
    code, _ = api(enabled, "/api/search", auth=False)
    assert code == 401


@pytest.mark.when_set("grafana_enabled")
def test_admin_password_from_its_file_and_the_datasource_answers(enabled):
    code, body = api(enabled, f"/api/datasources/uid/{grafana.DATASOURCE_UID}")
    assert code == 200, body
    assert json.loads(body)["url"] == f"http://127.0.0.1:{enabled.data['prometheus_port']}"
    code, body = api(enabled, f"/api/datasources/uid/{grafana.DATASOURCE_UID}/health")
    assert code == 200 and json.loads(body)["status"] == "OK", body


@pytest.mark.when_set("grafana_enabled")
def test_the_projects_dashboards_are_provisioned(enabled):
    code, body = api(enabled, "/api/search?type=dash-db")
    assert code == 200, body
    wanted = {json.loads(path.read_text())["uid"] for path in grafana.dashboard_files()}
    assert wanted <= {hit["uid"] for hit in json.loads(body)}


@pytest.mark.when_set("grafana_enabled")
def test_runs_unprivileged_with_its_data_owned_by_the_image_uid(enabled):
    root = grafana.root(enabled.data)
    assert enabled.sudo(f"stat -c '%u %a' {root}/data").stdout.strip() == f"{enabled.data['grafana_uid']} 700"
    inspect = json.loads(enabled.sudo("docker inspect gitea-grafana-1").stdout)[0]
    assert "no-new-privileges:true" in inspect["HostConfig"]["SecurityOpt"]
    assert inspect["HostConfig"]["NetworkMode"] == "host"
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana_admin_password" in inspect["Config"]["Env"]
