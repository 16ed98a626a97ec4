"""inventories/prod.py itself, deployed to a fresh lab host: the production path, proven.

The hosts come from a recorded `terraform output -json` of the moto apply
(tests/fixtures/terraform-output.json, kept current by tests/terraform), pointed at a lab host
brought up with the recorded admin port. The only values laid over it are those an environment
may differ in (inventories/sources.py ENVIRONMENT_KEYS: address, SSH key, ACME directory and CA,
images, emulated AWS) plus the operator's e-mails, through GITEA_DEPLOY_OVERRIDES: no lab
inventory is involved. Deploy, zero-change redeploy, then the host checks through the same
inventory (`pytest tests/host --inventory inventories/prod.py`).
"""

from __future__ import annotations

import json

import pytest

from inventories import sources
from lab import api, environment
from lab.converge import REPO, deploy, host_checks

pytestmark = pytest.mark.lab

NAME = "gitea-lab-prod"
PROD = "inventories/prod.py"
RECORDED = REPO / "tests/fixtures/terraform-output.json"
HOST = json.loads(RECORDED.read_text())["pyinfra_inventory"]["value"][0]


@pytest.fixture(scope="module")
def prod_env(lab_engine, tmp_path_factory):
    api.down([NAME])  # a stale host from an interrupted run
    st = api.up([NAME], admin_port=HOST["admin_ssh_port"])
    h = st["hosts"][NAME]
    assert h["admin_ssh_port"] == HOST["admin_ssh_port"]
    overrides = {**environment.overrides(st, NAME), "ssh_hostname": h["ip"],
                 "acme_email": "ops@prod-path.test", "gitea_admin_email": "gitadmin@prod-path.test"}
    assert set(overrides) <= sources.ENVIRONMENT_KEYS | sources.OPERATOR_KEYS
    path = tmp_path_factory.mktemp("prod") / "overrides.json"
    path.write_text(json.dumps(overrides))
    yield {"GITEA_DEPLOY_TERRAFORM_OUTPUT": str(RECORDED), "GITEA_DEPLOY_OVERRIDES": str(path)}
    api.down([NAME])


def test_prod_inventory_deploys_a_bare_host(prod_env):
    result = deploy(None, inventory=PROD, env=prod_env)
    print(f"prod inventory, fresh deploy: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-5000:]
    assert result["totals"]["error"] == 0 and result["totals"]["success"] > 20


def test_prod_inventory_second_deploy_changes_nothing(prod_env):
    result = deploy(None, inventory=PROD, env=prod_env)
    print(f"prod inventory, second deploy: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-5000:]
    assert result["totals"]["success"] == 0, [op["name"] for op in result.get("operations", []) if op["success"]]


def test_host_checks_pass_through_the_prod_inventory(prod_env):
    checks = host_checks(NAME, "-rs", inventory=PROD, limit=HOST["name"], env=prod_env)
    print(checks.stdout[-3000:])
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    assert " passed" in checks.stdout and "skipped" not in checks.stdout


def test_an_empty_secret_is_repaired_not_kept(prod_env):
    """A secret file left empty (a write that died) is made again by the next deploy, with its mode."""
    path = "/srv/gitea/secrets/metrics_token"
    api.exec(NAME, f"truncate -s 0 {path}", check=True)
    result = deploy(None, inventory=PROD, env=prod_env)
    assert result["returncode"] == 0, result["log"][-4000:]
    size, mode = api.exec(NAME, f"stat -c '%s %a' {path}", check=True).stdout.split()
    assert int(size) >= 32 and mode == "400"
