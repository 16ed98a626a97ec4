"""Fault to alert, end to end with the real rules, Prometheus and Alertmanager of a converged lab host:
the PostgreSQL container is stopped, and the webhook receiver run by the test (tests/lab/
alert_support.py) gets PostgresqlDown, and not the alerts the dead database causes (inhibition:
GiteaHealthzFailing, HttpsProbeFailing, TargetDown{job="gitea"}...), within a bound; once the
container is back, PostgresqlDown's resolved message arrives. Prints the seconds from the fault to
each message (the issue's benchmark).

GITEA_LAB_ALERT_FAULT_HOST names the lab host (default gitea-lab-faults); it is brought up if missing.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

import pytest

from lab import api
from lab.converge import deploy
from tests.lab import alert_support as support

pytestmark = pytest.mark.lab

NAME = os.environ.get("GITEA_LAB_ALERT_FAULT_HOST") or "gitea-lab-faults"
COMPOSE = "docker compose -f /srv/gitea/compose.yaml"
# PostgresqlDown: its `for: 1m`, a scrape and an evaluation interval, group_wait 30 s, and slack
# for a loaded lab machine.
FIRE_BOUND = 240
# The resolution: the next scrape, then group_interval (5 min) at most, and the same slack.
RESOLVE_BOUND = 480
# What PostgresqlDown inhibits and would be firing by then (GiteaHealthzFailing's `for: 2m`).
CAUSED = {"GiteaHealthzFailing", "HttpsProbeFailing", "TargetDown", "BackupFailed"}


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
def host(lab_engine):
    if NAME not in api.state().get("hosts", {}):
        api.up([NAME])
    support.start_receiver(NAME)
    result = deploy(NAME, "--data", f"alert_webhook_urls={json.dumps([f'http://127.0.0.1:{support.HOOK_PORT}/hook'])}")
    if result["returncode"] != 0 or result["totals"].get("error"):
        pytest.fail(f"{NAME}: the deploy failed\n{result['log'][-4000:]}")
    # Prometheus has evaluated the rules with every target scraped at least once.
    support.wait_for("the Watchdog firing in Prometheus", lambda: "Watchdog" in firing(NAME), timeout=180)
    support.wait_for("pg_up and the HTTPS probe passing, and none of their alerts firing",
                     lambda: healthy(NAME) and not firing(NAME) & ({"PostgresqlDown"} | CAUSED), timeout=300, interval=5)
    yield NAME
    api.exec(NAME, f"{COMPOSE} start db")
    support.stop_receiver(NAME)


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
    assert names - before == {"PostgresqlDown"}, names
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
