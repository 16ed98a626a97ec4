"""Notifications are delivered, grouped and inhibited as designed: a lab host converged with every
receiver kind pointed at what the test reads (tests/lab/alert_support.py): a webhook receiver on the
host's 127.0.0.1, the dead-man's switch on the same receiver, SNS in the host's moto with an SQS
queue subscribed, e-mail through the lab's mail server (lab/mail.py). Alerts are posted to the
host's Alertmanager API with amtool, as Prometheus would post them.

The host is tests/lab/conftest.py's alert_host (GITEA_LAB_ALERT_HOST, default gitea-lab-alerts),
shared with test_alert_faults.py; each module deploys it with the receivers it reads.
"""

from __future__ import annotations

import time
import uuid

import pytest

from lab import api, mail
from lab.converge import deploy
from tests.lab import alert_support as support

pytestmark = pytest.mark.lab

GROUP_WAIT = 30  # tasks/alerting.py TIMING
BOUND = GROUP_WAIT + 60  # what a notification may take from the post, on a loaded lab machine


@pytest.fixture(scope="module")
def host(alert_host):
    mail.ensure()
    support.start_receiver(alert_host)
    support.subscribe_queue(alert_host)
    result = deploy(alert_host, *support.receivers_data())
    if result["returncode"] != 0 or result["totals"].get("error"):
        pytest.fail(f"{alert_host}: the deploy failed\n{result['log'][-4000:]}")
    yield alert_host
    support.stop_receiver(alert_host)


@pytest.fixture(scope="module")
def incident(host):
    """One incident as a dead database raises it: PostgresqlDown (twice: two instances of one job,
    one group), then what it causes, which inhibition must hold back; and the Watchdog."""
    tag = uuid.uuid4().hex[:8]  # the lab's mail server is shared: this run's mail carries it
    started = time.time()
    for instance in ("db-a", "db-b"):
        support.post_alert(host, "alertname=PostgresqlDown", "severity=critical", "job=postgres",
                           f"instance={instance}", f"incident={tag}", summary="PostgreSQL is down")
    for labels in (["alertname=GiteaHealthzFailing", "severity=critical", "job=blackbox"],
                   ["alertname=HttpsProbeFailing", "severity=critical", "job=blackbox_https"],
                   ["alertname=TargetDown", "severity=critical", "job=gitea"],
                   ["alertname=BackupFailed", "severity=critical", "job=node"]):
        support.post_alert(host, *labels, f"incident={tag}", summary="caused by the database")
    # Labelled with the incident: the host's own Prometheus fires Watchdog too, and an alert the
    # switch was already told about is only repeated every 5 minutes; a new one in its group goes
    # out at the next group_interval (1 minute).
    support.post_alert(host, "alertname=Watchdog", "severity=none", f"incident={tag}", summary="always firing")
    hooks = support.wait_for("PostgresqlDown on the webhook", lambda: ours(host, tag, started), timeout=BOUND)
    # The held-back alerts would have had a group of their own within group_wait: wait it out.
    time.sleep(GROUP_WAIT + 5)
    return {"tag": tag, "started": started, "first": hooks[0]}


def ours(host: str, tag: str, since: float) -> list[dict]:
    """The webhook messages with an alert of this incident (the host's own Prometheus may send
    others: a fresh host's BackupTooOld)."""
    return [m for m in support.received(host, "/hook") if m["at"] >= since
            and any(a["labels"].get("incident") == tag for a in m["body"]["alerts"])]


def test_one_incident_is_one_webhook_message(host, incident):
    """PostgresqlDown's two instances arrive together, in one message grouped by alertname and
    job; the four alerts it inhibits never arrive."""
    since = ours(host, incident["tag"], incident["started"])
    assert len(since) == 1, [support.firing_names(m) for m in since]
    body = since[0]["body"]
    assert body["receiver"] == "operators-critical" and body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "PostgresqlDown", "job": "postgres"}
    assert sorted(a["labels"]["instance"] for a in body["alerts"]) == ["db-a", "db-b"]
    assert {a["labels"]["incident"] for a in body["alerts"]} == {incident["tag"]}
    print(f"\nwebhook: PostgresqlDown {since[0]['at'] - incident['started']:.1f} s after the post")


def test_inhibited_alerts_are_held_back_not_lost(host, incident):
    """The API still lists them, marked inhibited by PostgresqlDown."""
    cp = api.exec(host, ["amtool", "alert", "query", "--inhibited", "-o", "json", f"incident={incident['tag']}"])
    assert cp.returncode == 0, cp.stderr
    alerts = support.json.loads(cp.stdout)
    inhibited = sorted(a["labels"]["alertname"] for a in alerts if a["status"]["inhibitedBy"])
    assert inhibited == ["BackupFailed", "GiteaHealthzFailing", "HttpsProbeFailing", "TargetDown"], alerts


def test_watchdog_reaches_only_the_dead_mans_switch(host, incident):
    def tagged(message: dict) -> bool:
        return any(a["labels"].get("incident") == incident["tag"] for a in message["body"]["alerts"])

    # Within the dead-man route's group_interval (1 minute) of the post, past any tick already due.
    pings = support.wait_for("Watchdog at the dead-man's switch",
                             lambda: [m for m in support.received(host, "/deadman") if tagged(m)], timeout=BOUND + 60)
    # Grouped by alertname only, so the host's own Watchdog may share this message.
    assert set(support.firing_names(pings[0])) == {"Watchdog"} and pings[0]["body"]["receiver"] == "deadmans-switch"
    assert not [m for m in support.received(host, "/hook") if "Watchdog" in support.firing_names(m)]


def test_sns_publishes_the_critical_alert_to_the_topic(host, incident):
    """Alertmanager signs with SigV4 (the lab's static keys, from its credentials file) and
    publishes to moto's SNS; the queue subscribed to the topic holds the message."""
    found: list[dict] = []

    def arrived():
        found.extend(m for m in support.queued(host) if incident["tag"] in m["body"])
        return found

    messages = support.wait_for("this incident's message in the SQS queue", arrived, timeout=BOUND)
    text = " ".join(m["body"] for m in messages)
    assert "PostgresqlDown" in text and "GiteaHealthzFailing" not in text, text[:2000]


def test_email_reaches_the_mail_server(host, incident):
    got = support.wait_for("the alert e-mail", lambda: [
        m for m in mail.messages() if m["envelope_to"] == [support.ALERT_MAIL] and incident["tag"] in m["body"]],
        timeout=BOUND)
    assert len(got) == 1 and "PostgresqlDown" in got[0]["subject"], got
    assert got[0]["envelope_from"] == "gitea@git.lab.test"


def test_redeploy_with_every_receiver_changes_nothing(host):
    """The secrets, their group and the reload marker are all seen as done (tests/lab/
    test_zero_change.py covers a host without receivers)."""
    result = deploy(host, *support.receivers_data())
    assert result["returncode"] == 0, result["log"][-4000:]
    assert result["totals"]["success"] == 0, [op["name"] for op in result["operations"] if op["success"]]


def test_a_receiver_removed_takes_its_secret_along(host):
    """Last: without the webhook and the dead-man's switch, their URL files are gone and the
    configuration names no file that is missing."""
    result = deploy(host, "--data", "alert_email_to=[]")
    assert result["returncode"] == 0, result["log"][-4000:]
    left = api.exec(host, "ls -A /etc/prometheus/alertmanager-secrets").stdout.split()
    assert left == [], left  # SNS is off too (no topic): no keys
    assert "url_file" not in api.exec(host, "cat /etc/prometheus/alertmanager.yml").stdout
