"""The routing tree of alertmanager.yml, judged by Debian 13's own amtool (0.28.1, the lab's amtool
image: lab/images/amtool): `amtool check-config` accepts what alertmanager_config() builds, and
`amtool config routes test` says which receiver each alert reaches. Needs Docker (the image), not a
lab host."""

from __future__ import annotations

import subprocess

import pytest

from tasks import alerting
from tests.unit.render import sample_data

pytestmark = pytest.mark.lab

# Every channel set, so each receiver has something to deliver to.
DATA = sample_data(
    alert_email_to=["ops@example.com"], mailer_host="smtp.example.com", mailer_user="alerts",
    alert_webhook_urls=["https://hooks.example.com/services/x"],
    alert_sns_topic_arn="arn:aws:sns:eu-central-1:123456789012:gitea-alerts", aws_region="eu-central-1",
    deadmans_switch_url="https://hc-ping.com/00000000-0000-0000-0000-000000000000",
)


@pytest.fixture(scope="module")
def amtool(lab_engine, tmp_path_factory):
    from lab import images

    image = images.ensure("amtool")
    folder = tmp_path_factory.mktemp("alertmanager")
    (folder / "alertmanager.yml").write_text(alerting.dump(alerting.alertmanager_config(DATA)))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{folder}:/c:ro", image, *args],
                              capture_output=True, text=True, timeout=120)

    return run


def test_amtool_accepts_the_config(amtool):
    cp = amtool("check-config", "/c/alertmanager.yml")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "SUCCESS" in cp.stdout and "8 inhibit rules" in cp.stdout and "3 receivers" in cp.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    # The dead-man's switch gets Watchdog, and nothing else does: not even with severity critical.
    (["alertname=Watchdog", "severity=none"], "deadmans-switch"),
    (["alertname=Watchdog", "severity=critical"], "deadmans-switch"),
    (["alertname=PostgresqlDown", "severity=critical", "job=postgres"], "operators-critical"),
    (["alertname=TargetDown", "severity=critical", "job=node"], "operators-critical"),
    (["alertname=CertificateExpiresIn7Days", "severity=critical"], "operators-critical"),
    (["alertname=CertificateExpiresIn20Days", "severity=warning"], "operators"),
    (["alertname=HostDiskSpaceLow", "severity=warning"], "operators"),
    (["alertname=SomethingNew"], "operators"),  # no severity: the root's receiver
])
def test_each_alert_reaches_its_receiver(amtool, labels, receiver):
    cp = amtool("config", "routes", "test", "--config.file=/c/alertmanager.yml", f"--verify.receivers={receiver}",
                *labels)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip() == receiver  # exactly one receiver: no `continue` sends it twice


def test_a_wrong_expectation_fails(amtool):
    """The route test can fail: Watchdog never reaches the operators."""
    cp = amtool("config", "routes", "test", "--config.file=/c/alertmanager.yml", "--verify.receivers=operators",
                "alertname=Watchdog", "severity=none")
    assert cp.returncode != 0 and cp.stdout.strip().startswith("deadmans-switch"), cp.stdout + cp.stderr


def test_the_tree_reads_as_documented(amtool):
    """`amtool config routes` (docs/concepts/alerting.md shows this tree)."""
    cp = amtool("config", "routes", "--config.file=/c/alertmanager.yml")
    assert cp.returncode == 0, cp.stderr
    lines = [line.strip() for line in cp.stdout.strip().splitlines()]
    assert lines == ["Routing tree:", ".", "└── default-route  receiver: operators",
                     '├── {alertname="Watchdog"}  receiver: deadmans-switch',
                     '└── {severity="critical"}  receiver: operators-critical'], cp.stdout


def test_rules_with_rebased_runbook_links_still_pass_promtool(lab_engine, tmp_path):
    """alert_runbook_base_url makes the stage dump the rules again (yaml.safe_dump): what it installs
    then must still be what Debian's promtool accepts, every link rebased."""
    from lab import images

    base = "https://git.example.com/ops/gitea-deploy/src/branch/main"
    files = alerting.rule_files(sample_data(alert_runbook_base_url=base))
    if not files:
        pytest.skip("no rule files in files/alerting/rules/ yet")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        links = [line.split(": ", 1)[1] for line in text.splitlines() if "runbook_url:" in line]
        assert links and all(link.startswith(f"{base}/docs/runbooks/alerts.md#") for link in links), links
    cp = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{tmp_path}:/r:ro",
                         images.ensure("promtool"), "check", "rules", *(f"/r/{n}" for n in files)],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0 and "SUCCESS" in cp.stdout, cp.stdout + cp.stderr
