"""inventories/prod.py loaded as pyinfra loads it, from a recorded `terraform output -json`:
what production needs to connect (the user, sudo) comes from the same place as in the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from inventories import sources
from tasks import REPO
from tasks.settings import SettingsError

RECORDED = REPO / "tests/fixtures/terraform-output.json"
EMAILS = {"acme_email": "ops@example.com", "gitea_admin_email": "admin@example.com"}


# pyinfra_cli monkey-patches the whole process with gevent when imported: loading an inventory
# in the test process would change subprocess (and more) for every test after this one.
_LOAD = """
import json, sys
from pyinfra.api import State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory
try:
    with ctx_state.use(State()):
        inventory = make_inventory(sys.argv[1], cwd=sys.argv[2])
except PyinfraError as error:
    print(error, file=sys.stderr)
    sys.exit(3)
with ctx_inventory.use(inventory):
    print(json.dumps({h.name: h.data.dict() for h in inventory}, default=str))
"""


def load_inventory(path: str, monkeypatch, **env: str) -> dict[str, dict]:
    """The inventory as pyinfra loads it (in a child process); its SettingsError raised here."""
    cp = subprocess.run([sys.executable, "-c", _LOAD, path, str(REPO)], capture_output=True, text=True,
                        timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    if cp.returncode == 3:
        raise SettingsError(cp.stderr.strip())
    assert cp.returncode == 0, cp.stderr[-3000:]
    return json.loads(cp.stdout)


def overrides(tmp_path, values: dict) -> str:
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps(values))
    return str(path)


def test_prod_inventory_connects_as_admin_with_sudo(tmp_path, monkeypatch):
    hosts = load_inventory("inventories/prod.py", monkeypatch, GITEA_DEPLOY_TERRAFORM_OUTPUT=str(RECORDED),
                           GITEA_DEPLOY_OVERRIDES=overrides(tmp_path, EMAILS))
    recorded = json.loads(RECORDED.read_text())["pyinfra_inventory"]["value"][0]
    data = hosts[recorded["name"]]
    assert data["_sudo"] is True  # without it the first write fails: only the lab used to set it
    assert data["ssh_user"] == "admin"
    assert (data["ssh_hostname"], data["ssh_port"]) == (recorded["ssh_hostname"], recorded["admin_ssh_port"])
    assert data["gitea_domain"] == recorded["gitea_domain"]


def test_prod_inventory_refuses_to_run_without_the_operators_values(monkeypatch):
    with pytest.raises(SettingsError, match="acme_email: is required"):
        load_inventory("inventories/prod.py", monkeypatch, GITEA_DEPLOY_TERRAFORM_OUTPUT=str(RECORDED))


def test_overrides_address_and_keys_only(tmp_path, monkeypatch):
    hosts = load_inventory("inventories/prod.py", monkeypatch, GITEA_DEPLOY_TERRAFORM_OUTPUT=str(RECORDED),
                           GITEA_DEPLOY_OVERRIDES=overrides(tmp_path, {**EMAILS, "ssh_hostname": "127.0.0.9",
                                                                        "ssh_port": "2345"}))
    (data,) = hosts.values()
    assert data["ssh_hostname"] == "127.0.0.9" and data["ssh_port"] == 2345


@pytest.mark.parametrize("key", ["gitea_domain", "backup_s3_bucket", "_sudo", "data_root"])
def test_overrides_of_anything_else_are_refused(tmp_path, monkeypatch, key):
    with pytest.raises(SettingsError, match=f"overrides may not set {key}"):
        load_inventory("inventories/prod.py", monkeypatch, GITEA_DEPLOY_TERRAFORM_OUTPUT=str(RECORDED),
                       GITEA_DEPLOY_OVERRIDES=overrides(tmp_path, {**EMAILS, key: "x"}))


def test_a_missing_recording_says_so(monkeypatch):
    with pytest.raises(SettingsError, match="does not exist"):
        load_inventory("inventories/prod.py", monkeypatch, GITEA_DEPLOY_TERRAFORM_OUTPUT="/nonexistent/out.json")


def test_with_overrides_normalises_ports():
    hosts = sources.with_overrides([("h", {"ssh_port": 22, "admin_ssh_port": 22})], {"ssh_port": "2222"})
    assert hosts == [("h", {"ssh_port": 2222, "admin_ssh_port": 22})]


def test_lab_host_entry_records_the_admin_port():
    """`lab up --admin-port N`: the state records N, so inventories/lab.py connects to it."""
    from lab import hosts as lab_hosts

    info = {"Name": "/h", "NetworkSettings": {"Networks": {"gitea-lab": {"IPAddress": "172.18.0.9"}}},
            "HostConfig": {"PortBindings": {f"{p}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(20000 + p)}]
                                            for p in (2345, 443, 80, 22)}}}
    entry = lab_hosts.entry("h", info, 2345)
    assert entry["admin_ssh_port"] == 2345 and entry["ssh_port"] == 22345


def test_an_rds_endpoint_without_its_ca_stops_the_prod_inventory_before_any_host(tmp_path, monkeypatch):
    """database = "rds" in Terraform gives the host a database_endpoint; without the CA to verify the
    database's certificate the deploy stops, never connecting with weaker TLS or a local database."""
    outputs = json.loads(RECORDED.read_text())
    outputs["pyinfra_inventory"]["value"][0]["database_endpoint"] = "gitea-db.abc123.eu-central-1.rds.amazonaws.com:5432"
    recording = tmp_path / "rds-output.json"
    recording.write_text(json.dumps(outputs))
    with pytest.raises(SettingsError, match="database_ca_bundle: is required with database_endpoint"):
        load_inventory("inventories/prod.py", monkeypatch, GITEA_DEPLOY_TERRAFORM_OUTPUT=str(recording),
                       GITEA_DEPLOY_OVERRIDES=overrides(tmp_path, EMAILS))
