"""Fault to alert, end to end with the real rules, Prometheus and Alertmanager of a converged lab host,
each fault induced on the host as it would happen, each alert read at the webhook receiver run by the
test (tests/lab/alert_support.py) within a bound:

- the PostgreSQL container is stopped: PostgresqlDown arrives, and not the alerts the dead database
  causes (inhibition: GiteaHealthzFailing, HttpsProbeFailing, TargetDown{job="gitea"}...); once the
  container is back, its resolved message arrives;
- cron is stopped and the backup job's metrics say its last success was three intervals ago (the
  state hours without backups leave): BackupTooOld arrives;
- a systemd unit fails: SystemdUnitFailed arrives, naming it.

Prints the seconds from each fault to its message (the issue's benchmark). The host is
tests/lab/conftest.py's alert_host, shared with test_alert_delivery.py.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

from lab import api
from lab.converge import deploy
from tests.lab import alert_support as support

pytestmark = pytest.mark.lab

COMPOSE = "docker compose -f /srv/gitea/compose.yaml"
# PostgresqlDown: its `for: 1m`, a scrape and an evaluation interval, group_wait 30 s, and slack
# for a loaded lab machine.
FIRE_BOUND = 240
# The resolution: the next scrape, then group_interval (5 min) at most, and the same slack.
RESOLVE_BOUND = 480
# What PostgresqlDown inhibits and would be firing by then (GiteaHealthzFailing's `for: 2m`).
CAUSED = {"GiteaHealthzFailing", "HttpsProbeFailing", "TargetDown", "BackupFailed"}
# BackupTooOld: `for: 5m`, then scrape, evaluation and group_wait; SystemdUnitFailed: `for: 2m`.
BACKUP_BOUND = 540
UNIT_BOUND = 360
# In node_exporter_textfile_dir (its default): the job's metrics, and the deploy's schedule interval.
METRICS = "/var/lib/prometheus/node-exporter/gitea_backup.prom"
SCHEDULE = "/var/lib/prometheus/node-exporter/gitea_deploy_backup_schedule.prom"
FAILING_UNIT = "gitea-deploy-fault-test.service"


def prometheus(host: str, path: str) -> dict:
    port = 9090  # prometheus_port's default (tasks/settings/table.py)
    cp = api.exec(host, ["curl", "-fsS", "-G", f"http://127.0.0.1:{port}{path}"])
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)["data"]


def prometheus_alerts(host: str) -> list[dict]:
    return prometheus(host, "/api/v1/alerts")["alerts"]


def healthy(host: str) -> bool:
    """The database is up and the public HTTPS probe passes: a baseline the fault can break."""
    expr = 'min(pg_up) == 1 and min(probe_success{job="blackbox_https"}) == 1'
    return bool(prometheus(host, f"/api/v1/query?query={quote(expr)}")["result"])


def firing(host: str) -> set[str]:
    return {a["labels"]["alertname"] for a in prometheus_alerts(host) if a["state"] == "firing"}


@pytest.fixture(scope="module")
def host(alert_host):
    name = alert_host
    support.start_receiver(name)
    result = deploy(name, "--data", f"alert_webhook_urls={json.dumps([f'http://127.0.0.1:{support.HOOK_PORT}/hook'])}")
    if result["returncode"] != 0 or result["totals"].get("error"):
        pytest.fail(f"{name}: the deploy failed\n{result['log'][-4000:]}")
    # Prometheus has evaluated the rules with every target scraped at least once.
    support.wait_for("the Watchdog firing in Prometheus", lambda: "Watchdog" in firing(name), timeout=180)
    support.wait_for("pg_up and the HTTPS probe passing, and none of their alerts firing",
                     lambda: healthy(name) and not firing(name) & ({"PostgresqlDown"} | CAUSED), timeout=300, interval=5)
    yield name
    api.exec(name, f"{COMPOSE} start db")
    api.exec(name, f"systemctl reset-failed {FAILING_UNIT} 2>/dev/null; systemctl start cron")
    support.stop_receiver(name)


def messages_since(host: str, since: float) -> list[dict]:
    return [m for m in support.received(host, "/hook") if m["at"] >= since]


def test_stopped_database_alerts_once_and_resolves(host):
    before = firing(host)  # a fresh host may already fire (e.g. BackupTooOld before its first backup)
    assert not before & ({"PostgresqlDown"} | CAUSED), before
    fault = time.time()
    assert api.exec(host, f"{COMPOSE} stop db").returncode == 0

    def down_message():
        return [m for m in messages_since(host, fault) if "PostgresqlDown" in support.firing_names(m)]

    first = support.wait_for("PostgresqlDown at the webhook", down_message, timeout=FIRE_BOUND, interval=2)[0]
    fired_after = first["at"] - fault
    print(f"\nfault to webhook: PostgresqlDown {fired_after:.0f} s after `compose stop db`")
    assert first["body"]["groupLabels"]["alertname"] == "PostgresqlDown"

    # Give the caused alerts time to fire in Prometheus (GiteaHealthzFailing: for 2m) and to be
    # held back by Alertmanager; none reaches the webhook.
    support.wait_for("GiteaHealthzFailing firing in Prometheus", lambda: "GiteaHealthzFailing" in firing(host),
                     timeout=FIRE_BOUND, interval=5)
    time.sleep(45)  # past group_wait for any group the caused alerts would have opened
    names = {n for m in messages_since(host, fault) for n in support.firing_names(m)}
    # None of what the dead database causes got through. Anything else that fired meanwhile is not
    # this incident's (a loaded lab machine may fail a unit): named, with its labels, in the output.
    assert "PostgresqlDown" in names and not names & CAUSED, names
    others = [a["labels"] for m in messages_since(host, fault) for a in m["body"]["alerts"]
              if a["status"] == "firing" and a["labels"]["alertname"] not in {"PostgresqlDown", *before}]
    if others:
        print(f"also firing during the fault, not caused by it: {others}")
    inhibited = api.exec(host, ["amtool", "alert", "query", "--inhibited", "-o", "json"])
    held = {a["labels"]["alertname"] for a in json.loads(inhibited.stdout) if a["status"]["inhibitedBy"]}
    assert "GiteaHealthzFailing" in held, held

    back = time.time()
    assert api.exec(host, f"{COMPOSE} start db").returncode == 0

    def resolved():
        return [m for m in messages_since(host, back)
                if any(a["labels"]["alertname"] == "PostgresqlDown" and a["status"] == "resolved"
                       for a in m["body"]["alerts"])]

    done = support.wait_for("PostgresqlDown resolved at the webhook", resolved, timeout=RESOLVE_BOUND, interval=5)[0]
    print(f"recovery to webhook: PostgresqlDown resolved {done['at'] - back:.0f} s after `compose start db`")
    assert fired_after < FIRE_BOUND


def alert_message(host: str, alertname: str, since: float):
    """The first webhook message since `since` that reports `alertname` firing, or None."""
    found = [m for m in messages_since(host, since) if alertname in support.firing_names(m)]
    return found[0] if found else None


def test_stale_backups_and_a_failed_unit_each_reach_the_webhook(host):
    """Two faults at once (neither inhibits the other): backups that stopped hours ago, and a unit
    that failed. The backup job's own metrics file is what goes stale: cron stopped (nothing runs
    the job), its last success set three schedule intervals back, exactly as hours without a
    backup leave it."""
    interval = int(api.exec(host, ["awk", "/^gitea_deploy_backup_interval_seconds /{print $2}", SCHEDULE],
                            check=True).stdout.strip())
    original = api.exec(host, ["cat", METRICS], check=True).stdout
    assert "gitea_backup_last_success_timestamp_seconds{" in original, original[:400]
    stale = time.time() - 3 * interval
    lines = [f"{line.rsplit(' ', 1)[0]} {stale:.0f}" if line.startswith("gitea_backup_last_success_timestamp_seconds{")
             else line for line in original.splitlines()]
    fault = time.time()
    assert api.exec(host, "systemctl stop cron").returncode == 0
    # Replaced by rename, as the job itself writes it: the collector never reads half a file.
    api.exec(host, ["sh", "-c", f"cat > {METRICS}.tmp && mv {METRICS}.tmp {METRICS}"],
             input="\n".join(lines) + "\n", check=True)
    failed = api.exec(host, ["systemd-run", f"--unit={FAILING_UNIT}", "--property=Description=gitea-deploy fault test",
                             "/bin/false"])
    assert failed.returncode == 0, failed.stderr

    unit = support.wait_for("SystemdUnitFailed at the webhook", lambda: alert_message(host, "SystemdUnitFailed", fault),
                            timeout=UNIT_BOUND, interval=5)
    print(f"\nfault to webhook: SystemdUnitFailed {unit['at'] - fault:.0f} s after the unit failed")
    assert FAILING_UNIT in {a["labels"].get("name") for a in unit["body"]["alerts"] if a["status"] == "firing"}

    backup = support.wait_for("BackupTooOld at the webhook", lambda: alert_message(host, "BackupTooOld", fault),
                              timeout=BACKUP_BOUND, interval=5)
    print(f"fault to webhook: BackupTooOld {backup['at'] - fault:.0f} s after the backups went stale")
    assert {a["labels"].get("repository") for a in backup["body"]["alerts"] if a["status"] == "firing"}

    # Put back what the host had: the metrics file, cron, and no failed unit.
    api.exec(host, ["sh", "-c", f"cat > {METRICS}.tmp && mv {METRICS}.tmp {METRICS}"], input=original, check=True)
    api.exec(host, f"systemctl reset-failed {FAILING_UNIT}; systemctl start cron", check=True)
