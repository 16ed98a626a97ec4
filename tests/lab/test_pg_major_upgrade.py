"""The PostgreSQL major upgrade end to end (issue 12), on a lab host of its own: deployed on the
lab's PostgreSQL 15 (bookworm's package, lab/config.py STANDIN_POSTGRES_TAGS) with seeded data, then
`gitea-pg-upgrade` as the runbook has the operator run it (docs/runbooks/upgrade.md, "PostgreSQL
major").

In file order, sharing the host:
  1. deployed on 15 with seeded data; a pin of 17 is refused by the deploy (the data is 15);
  2. an image that does not pull is refused with nothing changed;
  3. an upgrade stopped by SIGTERM once it has moved the old cluster aside puts it back: still 15,
     the same data, healthy, no plan file or moved directory left;
  4. the upgrade to 17: the same data, the exporter's role with it, a pre-pg-upgrade snapshot, the
     seconds it took and how long users saw Gitea down (printed; tests/bench/updates.py collects them);
  5. the operator's new pin (the same image) deploys with zero changes.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from lab import api, registry
from lab.converge import deploy
from tests.lab import stack_support as stack
from tests.lab.stack_support import COMPOSE, ok

pytestmark = pytest.mark.lab

NAME = os.environ.get("GITEA_LAB_PGMAJOR_HOST") or "gitea-lab-pgmajor"
OLD, NEW = registry.postgres_reference("15"), registry.postgres_reference("17")
PLAN = "/var/lib/gitea-backup/pg-upgrade.json"
FIGURES: dict[str, float] = {}
SEED: dict[str, str] = {}


def sh(script: str, **kw) -> subprocess.CompletedProcess:
    return stack.sh(NAME, script, **kw)


def on_disk() -> tuple[str, str, str]:
    """The data directory's major, the compose file's digest, the db container's image."""
    return (sh("cat /srv/gitea/postgres/PG_VERSION").stdout.strip(), sh("sha256sum /srv/gitea/compose.yaml").stdout,
            stack.running(NAME).get("db", ""))


def as_before() -> None:
    """Still PostgreSQL 15 with the seed's data, healthy, nothing of the attempt left behind."""
    assert on_disk() == SEED["on_disk"]
    assert stack.seeded(NAME) == SEED["data"]
    assert sh(f"test ! -e {PLAN} && ! ls -d /srv/gitea/postgres.* /srv/gitea/compose.pg* 2>/dev/null",
              check=False).returncode == 0
    assert sh("curl -fsS http://127.0.0.1:3000/api/healthz").stdout.count('"pass"') >= 1


@pytest.fixture(scope="module")
def host(lab_engine):
    api.down([NAME])  # a stale host from an interrupted run
    api.up([NAME])
    ok(deploy(NAME, "--data", f"postgres_image={OLD}"))
    yield NAME
    for key, value in FIGURES.items():
        print(f"pg major upgrade: {key}: {value:.1f}")
    api.down([NAME])


def test_deployed_on_the_old_major_with_data_and_a_new_pin_refused(host):
    SEED["data"] = stack.seed(NAME)
    SEED["on_disk"] = on_disk()
    assert SEED["on_disk"][0] == "15" and SEED["on_disk"][2] == OLD
    result = deploy(NAME, "--data", f"postgres_image={NEW}")
    assert result["returncode"] != 0 and "a major upgrade is a dump and restore" in result["log"], result["log"][-3000:]
    as_before()


def test_an_image_that_does_not_pull_is_refused(host):
    cp = sh(f"gitea-pg-upgrade upgrade {registry.postgres_reference('99')}", check=False)
    assert cp.returncode == 1 and "nothing was changed" in cp.stderr, cp.stderr[-2000:]
    as_before()


def test_a_stopped_upgrade_puts_the_old_cluster_back(host):
    """SIGTERM once the plan is written (the old cluster is being moved aside, the new one made)."""
    sh(f"(set +e; gitea-pg-upgrade upgrade {NEW} > /root/pg-upgrade.log 2>&1; echo $? > /root/pg-upgrade.rc) "
       "</dev/null >/dev/null 2>&1 &")
    sh(f"for i in $(seq 600); do [ -e {PLAN} ] && break; sleep 0.1; done; [ -e {PLAN} ]", timeout=120)
    sh("pkill -TERM -f '^/usr/bin/python3 /usr/local/sbin/gitea-pg-upgrade'")
    sh("for i in $(seq 300); do [ -s /root/pg-upgrade.rc ] && break; sleep 1; done", timeout=330)
    out = sh("cat /root/pg-upgrade.log /root/pg-upgrade.rc").stdout
    assert out.split()[-1] == "143" and "putting PostgreSQL 15 back" in out, out[-3000:]
    assert "is back on" in out, out[-3000:]
    as_before()


def test_the_upgrade_moves_the_data_to_the_new_major(host):
    before = sh("gitea-backup restic local snapshots --json --tag pre-pg-upgrade | python3 -c "
                "'import json,sys; print(len(json.load(sys.stdin)))'").stdout.strip()
    started = time.monotonic()
    with stack.Poller(NAME) as poll:
        cp = sh(f"gitea-pg-upgrade upgrade {NEW}", check=False)
    FIGURES["upgrade 15 -> 17 (s)"] = time.monotonic() - started
    FIGURES["Gitea down for users during it (s)"] = poll.longest
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert f"now pin postgres_image={NEW}" in cp.stderr
    major, _, image = on_disk()
    assert (major, image) == ("17", NEW)
    assert stack.seeded(NAME) == SEED["data"]
    after = sh("gitea-backup restic local snapshots --json --tag pre-pg-upgrade | python3 -c "
               "'import json,sys; print(len(json.load(sys.stdin)))'").stdout.strip()
    assert int(after) == int(before) + 1
    # The exporter's role came over with its password and pg_monitor membership.
    sh("for i in $(seq 60); do curl -fsS http://127.0.0.1:9187/metrics | grep -qx 'pg_up 1' && exit 0; sleep 1; done;"
       " exit 1", timeout=90)
    # The old cluster and compose file stay for the operator to remove.
    assert sh("cat /srv/gitea/postgres.15-*/PG_VERSION").stdout.strip() == "15"
    assert sh(f"{COMPOSE} exec -T db psql -U gitea -d gitea -tAc 'SHOW server_version_num'").stdout.startswith("17")


def test_the_new_pin_deploys_with_zero_changes(host):
    result = deploy(NAME, "--data", f"postgres_image={NEW}")
    ok(result)
    assert result["totals"].get("success", 0) == 0, result["totals"]
