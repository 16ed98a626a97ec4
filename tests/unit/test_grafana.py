"""tasks/grafana.py and files/grafana/dashboards/: the provisioning Grafana gets parses and points
at the provisioned datasource, every panel has a query over the exporters' metrics and the
contract's job names, and the compose service is loopback-only with its password as a file."""

import re

import pytest
import yaml

from tasks import grafana, settings
from tests.dashboard_queries import dashboards, queries, substitute
from tests.unit.render import render, sample_data

# HELPERS.md's scrape jobs (the monitoring stage's Prometheus).
JOBS = {"prometheus", "node", "gitea", "postgres", "nginx", "blackbox", "blackbox_https", "blackbox_git_ssh",
        "alertmanager"}
EXPECTED = {"host", "postgresql", "nginx", "probes", "backups", "gitea"}


def test_datasource_and_provider_yaml_parse_and_point_at_the_host():
    files = grafana.provisioning_files(sample_data(prometheus_port=9191))
    (source,) = yaml.safe_load(files["provisioning/datasources/gitea-deploy.yaml"])["datasources"]
    assert source["uid"] == grafana.DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://127.0.0.1:9191"
    (provider,) = yaml.safe_load(files["provisioning/dashboards/gitea-deploy.yaml"])["providers"]
    assert provider["options"]["path"] == grafana.DASHBOARDS_IN_CONTAINER
    assert provider["allowUiUpdates"] is False
    # Every dashboard file is among what the deploy writes, byte for byte.
    assert {f"dashboards/{p.name}" for p in grafana.dashboard_files()} <= set(files)


def test_the_six_dashboards_exist_with_unique_uids():
    boards = dashboards()
    assert set(boards) == EXPECTED
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), board["uid"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_panel_has_a_query_on_the_provisioned_datasource(name):
    board = dashboards()[name]
    assert board["panels"], name
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == grafana.DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == grafana.DATASOURCE_UID, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == grafana.DATASOURCE_UID


def test_every_variable_is_known():
    for board in dashboards().values():
        for _, expr in queries(board):
            assert "$" not in substitute(expr, board)


def test_queries_name_only_the_contracts_jobs():
    for name, board in dashboards().items():
        for title, expr in queries(board):
            for job in re.findall(r'job=~?"([^"]+)"', expr):
                assert set(job.split("|")) <= JOBS, f"{name}/{title}: job {job!r}"


def test_no_grafana_without_the_flag():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2"))
    assert "grafana" not in compose["services"]
    assert grafana.SECRET not in compose["secrets"]


def test_grafana_service_is_loopback_only_with_its_password_as_a_file():
    compose = yaml.safe_load(render("gitea/compose.yaml.j2", grafana_enabled=True, grafana_port=3101))
    service = compose["services"]["grafana"]
    assert service["image"] == settings.BY_NAME["grafana_image"].default  # Renovate bumps it there alone
    # On the host's network, so nothing is published, and Grafana itself binds loopback.
    assert service["network_mode"] == "host" and "ports" not in service and "networks" not in service
    env = service["environment"]
    assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1" and env["GF_SERVER_HTTP_PORT"] == "3101"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"/run/secrets/{grafana.SECRET}"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert service["secrets"] == [grafana.SECRET]
    assert grafana.SECRET not in compose["services"]["gitea"]["secrets"]
    assert compose["secrets"][grafana.SECRET]["file"] == f"/srv/gitea/secrets/{grafana.SECRET}"
    assert "/srv/gitea/grafana/data:/var/lib/grafana" in service["volumes"]
    assert "3101/api/health" in " ".join(service["healthcheck"]["test"])


def test_a_changed_dashboard_changes_the_service_definition(tmp_path, monkeypatch):
    """The digest label makes Compose's config hash follow the provisioning: `up` recreates Grafana."""
    data = sample_data(grafana_enabled=True)
    before = grafana.context(data)["digest"]
    for path in grafana.dashboard_files():
        (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(grafana, "DASHBOARDS", tmp_path)
    assert grafana.context(data)["digest"] == before
    (tmp_path / "host.json").write_text((tmp_path / "host.json").read_text().replace("CPU busy", "CPU"))
    assert grafana.context(data)["digest"] != before
    assert grafana.context(sample_data(grafana_enabled=True, prometheus_port=9999))["digest"] != before


def test_sshd_forwards_locally_to_exactly_the_monitoring_uis():
    conf = render("ssh/gitea-deploy.conf.j2", prometheus_port=9190, alertmanager_port=9193, grafana_port=3101)
    lines = dict(line.split(" ", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert lines["AllowTcpForwarding"] == "local"
    assert lines["PermitOpen"].split() == ["127.0.0.1:9190", "127.0.0.1:9193", "127.0.0.1:3101"]
    assert lines["PermitListen"] == "none"
    assert lines["AllowStreamLocalForwarding"] == "no"
    assert lines["AllowAgentForwarding"] == "no" and lines["X11Forwarding"] == "no" and lines["PermitTunnel"] == "no"


def test_with_grafana_the_deploy_writes_its_files_before_the_compose_file(tmp_path):
    """The whole deploy (pyinfra's @fake host) with grafana_enabled: the password is generated in
    the secrets stage, and every provisioning file is written before the compose file that carries
    their digest, so a run killed in between still recreates Grafana next time."""
    from tests.unit.test_fake_deploy import fake_deploy

    results, _ = fake_deploy(tmp_path, grafana_enabled=True)
    names = [op["name"] for op in results["operations"]]
    assert "Secrets | Generate grafana_admin_password once" in names
    compose = names.index("Gitea stack | Compose file")
    written = [n for n in names if n.startswith("Gitea stack | Grafana ")]
    expected = {f"Gitea stack | Grafana {path}" for path in grafana.provisioning_files(sample_data())}
    assert expected <= set(written)
    assert all(names.index(n) < compose for n in written)
