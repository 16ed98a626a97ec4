"""inventories/prod.py itself, deployed to a fresh lab host: the production path, proven.

The hosts come from a recorded `terraform output -json` of the moto apply
(tests/fixtures/terraform-output.json, kept current by tests/terraform), pointed at a lab host
brought up with the recorded admin port. The only values laid over it are those an environment
may differ in (inventories/sources.py ENVIRONMENT_KEYS: address, SSH key, ACME directory and CA,
images, emulated AWS) plus the operator's e-mails, through GITEA_DEPLOY_OVERRIDES: no lab
inventory is involved. Deploy, zero-change redeploy, then the host checks through the same
inventory (`pytest tests/host --inventory inventories/prod.py`).

Then the same host moves to RDS mode (terraform's database = "rds"): a real PostgreSQL standing in
for RDS (lab/rds.py: its own container on the lab network, TLS only, its own CA) becomes the
database_endpoint and database_ca_bundle, the two values Terraform and the operator give in
production. The deploy refuses until the operator has put the database's password in place, then
runs no db container, Gitea uses the external database over verified TLS, and backup and restore
dump and restore it over the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inventories import sources
from lab import api, environment
from lab.converge import REPO, deploy, host_checks
from lab.rds import connections as rds_connections

pytestmark = pytest.mark.lab

NAME = "gitea-lab-prod"
PROD = "inventories/prod.py"
RECORDED = REPO / "tests/fixtures/terraform-output.json"
HOST = json.loads(RECORDED.read_text())["pyinfra_inventory"]["value"][0]
HOST_ADMIN = "gitadmin"  # tasks/settings/table.py gitea_admin_username


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


# --- RDS mode: an external PostgreSQL ----------------------------------------------------------

RDS = "prod"
COMPOSE = "docker compose -f /srv/gitea/compose.yaml"


@pytest.fixture(scope="module")
def rds(prod_env, tmp_path_factory):
    api.rds_down(RDS)
    db = api.rds_up(RDS)
    overrides = json.loads(Path(prod_env["GITEA_DEPLOY_OVERRIDES"]).read_text())
    overrides.update(database_endpoint=db["endpoint"], database_ca_bundle=db["ca"])
    assert set(overrides) <= sources.ENVIRONMENT_KEYS | sources.OPERATOR_KEYS
    path = tmp_path_factory.mktemp("rds") / "overrides.json"
    path.write_text(json.dumps(overrides))
    yield {"env": {**prod_env, "GITEA_DEPLOY_OVERRIDES": str(path)}, **db}
    api.rds_down(RDS)


def rds_sql(db: dict, sql: str) -> str:
    """A query on the external database, over TLS verified against its CA, from its own container."""
    host = db["endpoint"].rsplit(":", 1)[0]
    cp = api.exec(db["container"], [  # `docker exec`: works on any lab container, not only hosts
        "bash", "-c", 'PGPASSWORD="$(cat /certs/password)" exec psql "$0" -v ON_ERROR_STOP=1 -tAc "$1"',
        f"host={host} user=gitea dbname=gitea sslmode=verify-full sslrootcert=/certs/ca.pem", sql])
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def test_rds_mode_waits_for_the_operators_password(rds):
    """The password is RDS's: the deploy never invents one, and stops saying where it goes."""
    api.exec(NAME, "rm -f /srv/gitea/secrets/db_password", check=True)
    result = deploy(None, inventory=PROD, env=rds["env"])
    assert result["returncode"] != 0
    assert "/srv/gitea/secrets/db_password is missing or empty: put the external database's password" \
        in result["log"], result["log"][-3000:]
    assert "gitea-db-1" in api.exec(NAME, "docker ps --format '{{.Names}}'").stdout  # nothing was switched


def test_rds_mode_runs_gitea_on_the_external_database(rds):
    api.exec(NAME, "umask 077; cat > /srv/gitea/secrets/db_password", input=rds["password"], check=True)
    result = deploy(None, inventory=PROD, env=rds["env"])
    print(f"RDS mode deploy: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-5000:]
    again = deploy(None, inventory=PROD, env=rds["env"])
    assert again["returncode"] == 0 and again["totals"]["success"] == 0, \
        [op["name"] for op in again.get("operations", []) if op["success"]]
    services = api.exec(NAME, f"{COMPOSE} ps --services", check=True).stdout.split()
    assert services == ["gitea"]  # no db container
    # Every connection Gitea made to the external database was TLS (the server logs each), and its
    # data is there.
    gitea = [line for line in rds_connections(RDS) if "application_name=gitea-standin" in line]
    assert gitea and all("SSL enabled" in line for line in gitea), gitea[-3:]
    assert rds_sql(rds, 'SELECT lower_name FROM "user" WHERE is_admin') == HOST_ADMIN


def test_host_checks_pass_in_rds_mode(rds):
    checks = host_checks(NAME, "-rs", inventory=PROD, limit=HOST["name"], env=rds["env"])
    print(checks.stdout[-3000:])
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    assert " passed" in checks.stdout and "skipped" not in checks.stdout


def test_backup_and_restore_reach_the_external_database_over_the_network(rds):
    """gitea-backup dumps the external database (pg_dump from the PostgreSQL image, verify-full);
    gitea-restore puts it back: a user created after the backup is gone, the admin is still there."""
    backup = api.exec(NAME, "gitea-backup", timeout=600)
    assert backup.returncode == 0, backup.stderr[-3000:]
    dump = api.exec(NAME, "stat -c %s /srv/gitea/backup/dump/gitea.pgdump", check=True).stdout
    assert int(dump) > 1000
    dumps = [line for line in rds_connections(RDS) if "application_name=pg_dump" in line]
    assert dumps and all("SSL enabled" in line for line in dumps), dumps[-3:]
    api.exec(NAME, f"{COMPOSE} exec -T gitea gitea admin user create --username after-backup "
                   "--email after@prod-path.test --random-password", check=True)
    assert "after-backup" in rds_sql(rds, 'SELECT lower_name FROM "user"')
    restore = api.exec(NAME, "gitea-restore --force", timeout=900)
    assert restore.returncode == 0, restore.stderr[-3000:]
    users = rds_sql(rds, 'SELECT lower_name FROM "user"').split()
    assert HOST_ADMIN in users and "after-backup" not in users
    restores = [line for line in rds_connections(RDS) if "application_name=pg_restore" in line]
    assert restores and all("SSL enabled" in line for line in restores), restores[-3:]
    assert '"pass"' in api.exec(NAME, "curl -fsS http://127.0.0.1:3000/api/healthz", check=True).stdout
