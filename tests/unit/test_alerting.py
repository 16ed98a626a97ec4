"""tasks/alerting.py without a host: what alertmanager.yml, the unit's arguments, the secret files
and the rule files hold for given settings, and the alerting settings' checks."""

from __future__ import annotations

import pytest
import yaml

from tasks import alerting
from tasks.settings import problems
from tests.unit.render import sample_data

SNS = {"alert_sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:gitea-alerts", "aws_region": "us-east-1"}
MAIL = {"alert_email_to": ["ops@example.com"], "mailer_host": "smtp.example.com"}


def receiver(config: dict, name: str) -> dict:
    return next(r for r in config["receivers"] if r["name"] == name)


def test_no_receiver_set_still_gives_a_complete_tree():
    """Alerts are still kept (API, amtool) but reach no one; the tree and inhibitions are there."""
    config = alerting.alertmanager_config(sample_data())
    assert [r["name"] for r in config["receivers"]] == ["operators", "operators-critical", "deadmans-switch"]
    assert all(set(r) == {"name"} for r in config["receivers"])
    assert config["route"]["receiver"] == "operators"
    assert config["route"]["group_by"] == ["alertname", "job"]


def test_watchdog_goes_only_to_the_dead_mans_switch_first_and_often():
    config = alerting.alertmanager_config(sample_data(deadmans_switch_url="https://hc-ping.com/abc-123"))
    first = config["route"]["routes"][0]
    assert first["matchers"] == ['alertname="Watchdog"'] and first["receiver"] == "deadmans-switch"
    assert not first.get("continue")  # the first match ends the walk: no operator sees Watchdog
    assert first["group_wait"] == "0s" and first["repeat_interval"] == "5m"
    assert receiver(config, "deadmans-switch")["webhook_configs"] == [
        {"url_file": "/etc/prometheus/alertmanager-secrets/deadmans-switch.url", "send_resolved": False}]


def test_urls_are_in_secret_files_never_in_the_config():
    urls = ["https://hooks.example.com/services/T0/B0/s3cr3t", "http://127.0.0.1:8080/hook?token=xyz"]
    data = sample_data(alert_webhook_urls=urls, deadmans_switch_url="https://hc-ping.com/uuid-token")
    text = alerting.dump(alerting.alertmanager_config(data))
    for secret in ("s3cr3t", "xyz", "uuid-token"):
        assert secret not in text
    files = alerting.secret_files(data)
    assert files == {"/etc/prometheus/alertmanager-secrets/webhook-0.url": urls[0],
                     "/etc/prometheus/alertmanager-secrets/webhook-1.url": urls[1],
                     "/etc/prometheus/alertmanager-secrets/deadmans-switch.url": "https://hc-ping.com/uuid-token"}
    hooks = receiver(yaml.safe_load(text), "operators")["webhook_configs"]
    assert [h["url_file"] for h in hooks] == list(files)[:2] and all(h["send_resolved"] for h in hooks)


def test_sns_pages_only_critical_alerts_signed_in_the_region():
    config = alerting.alertmanager_config(sample_data(**SNS))
    assert "sns_configs" not in receiver(config, "operators")
    (sns,) = receiver(config, "operators-critical")["sns_configs"]
    assert sns["topic_arn"] == SNS["alert_sns_topic_arn"] and sns["sigv4"] == {"region": "us-east-1"}
    assert "api_url" not in sns and "access_key" not in sns["sigv4"]  # production: the instance role
    critical = config["route"]["routes"][1]
    assert critical == {"receiver": "operators-critical", "matchers": ['severity="critical"'], "repeat_interval": "4h"}


def test_emulated_sns_gets_its_endpoint_and_static_keys_by_file():
    data = sample_data(**SNS, alert_sns_api_url="http://127.0.0.1:5050", backup_aws_access_key_id="lab-key",
                       backup_aws_secret_access_key="lab-secret")
    (sns,) = receiver(alerting.alertmanager_config(data), "operators-critical")["sns_configs"]
    assert sns["api_url"] == "http://127.0.0.1:5050"
    assert "lab-secret" not in alerting.dump(alerting.alertmanager_config(data))
    assert "lab-secret" not in alerting.defaults_file(data)
    assert "AWS_SHARED_CREDENTIALS_FILE=/etc/prometheus/alertmanager-secrets/aws-credentials" in alerting.defaults_file(data)
    assert "aws_secret_access_key = lab-secret" in alerting.secret_files(data)[alerting.aws_credentials_file()]


@pytest.mark.parametrize(("protocol", "port", "require_tls", "tls"), [
    ("smtps", None, False, True),           # implicit TLS on 465 (Alertmanager's rule)
    ("smtp+starttls", None, True, True),
    ("smtp", 25, False, False),             # the lab's relay: no TLS, no password
])
def test_email_follows_the_mailer_settings(protocol, port, require_tls, tls):
    user = None if protocol == "smtp" else "mailer"
    data = sample_data(**MAIL, mailer_protocol=protocol, mailer_port=port, mailer_user=user)
    (mail,) = receiver(alerting.alertmanager_config(data), "operators")["email_configs"]
    expected_port = {"smtps": 465, "smtp+starttls": 587, "smtp": 25}[protocol]
    assert mail["smarthost"] == f"smtp.example.com:{expected_port}"
    assert mail["require_tls"] is require_tls and ("tls_config" in mail) is tls
    assert mail["from"] == "gitea@git.example.com" and mail["to"] == "ops@example.com"
    if user:
        assert mail["auth_username"] == "mailer"
        assert mail["auth_password_file"] == "/etc/prometheus/alertmanager-secrets/smtp-password"
        assert alerting.smtp_password(data) == ("/srv/gitea/secrets/mailer_password", mail["auth_password_file"])
    else:
        assert "auth_password_file" not in mail and alerting.smtp_password(data) is None


def test_arguments_keep_alertmanager_on_loopback_without_cluster():
    text = alerting.defaults_file(sample_data(alertmanager_port=9193))
    (args_line,) = [line for line in text.splitlines() if line.startswith("ARGS=")]
    assert "--web.listen-address=127.0.0.1:9193" in args_line
    assert "--cluster.listen-address= " in args_line or args_line.endswith('--cluster.listen-address="')
    assert "AWS_" not in text


def test_inhibitions_silence_what_a_dead_database_breaks():
    rules = alerting.alertmanager_config(sample_data())["inhibit_rules"]
    silenced = [r["target_matchers"] for r in rules if r["source_matchers"] == ['alertname="PostgresqlDown"']]
    assert ['alertname=~"GiteaHealthzFailing|HttpsProbeFailing|BackupFailed"'] in silenced
    assert ['alertname="TargetDown"', 'job=~"gitea|postgres"'] in silenced
    # Every alert name an inhibition mentions is one of the contract's (docs/concepts/alerting.md).
    known = {"Watchdog", "TargetDown", "GiteaHealthzFailing", "PostgresqlDown", "PostgresqlTooManyConnections",
             "HostDiskSpaceLow", "HostDiskWillFillIn24Hours", "HostInodesLow", "HostMemoryLow", "HostOomKill",
             "SystemdUnitFailed", "ContainerRestarting", "CertificateExpiresIn20Days", "CertificateExpiresIn7Days",
             "HttpsProbeFailing", "GitSshProbeFailing", "BackupTooOld", "BackupFailed", "ResticCheckFailed",
             "RebootRequired", "PrometheusRuleFailures", "AlertmanagerNotificationsFailing"}
    for rule in rules:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname"):
                names = matcher.split('"')[1].split("|")
                assert set(names) <= known, matcher


RULES = """groups:
- name: sample
  rules:
  - alert: PostgresqlDown
    expr: pg_up == 0
    labels: {severity: critical}
    annotations:
      summary: down
      runbook_url: docs/runbooks/alerts.md#postgresqldown
  - alert: Elsewhere
    expr: vector(1)
    annotations: {runbook_url: "https://example.com/x"}
"""


def test_runbook_links_are_rebased_only_when_a_base_is_set(tmp_path):
    (tmp_path / "sample.yml").write_text(RULES)
    (tmp_path / "notes.txt").write_text("not a rule file")
    assert alerting.rule_files(sample_data(), tmp_path) == {"sample.yml": RULES}  # the file as it is
    base = "https://git.example.com/ops/gitea-deploy/src/branch/main/"
    (text,) = alerting.rule_files(sample_data(alert_runbook_base_url=base), tmp_path).values()
    rules = yaml.safe_load(text)["groups"][0]["rules"]
    assert rules[0]["annotations"]["runbook_url"] == \
        "https://git.example.com/ops/gitea-deploy/src/branch/main/docs/runbooks/alerts.md#postgresqldown"
    assert rules[1]["annotations"]["runbook_url"] == "https://example.com/x"
    assert rules[0]["expr"] == "pg_up == 0" and rules[0]["labels"] == {"severity": "critical"}


@pytest.mark.parametrize(("values", "message"), [
    ({"alert_webhook_urls": ["http://hooks.example.com/x"]}, "http:// only to 127.0.0.1"),
    ({"alert_webhook_urls": ["https://a.example.com/x\n"]}, "must be an https:// URL"),
    ({"alert_webhook_urls": ["https://a.example.com/$(id)"]}, "must be an https:// URL"),
    ({"alert_webhook_urls": ["https://a.example.com/", "https://a.example.com/"]}, "lists an item twice"),
    ({"alert_webhook_urls": "https://a.example.com/"}, "expected list"),
    ({"deadmans_switch_url": "ftp://example.com/"}, "must be an https:// URL"),
    ({"alert_email_to": ["not-an-address"], "mailer_host": "smtp.example.com"}, "not a valid e-mail"),
    ({"alert_email_to": ["ops@example.com"]}, "set mailer_host too"),
    ({**MAIL, "mailer_port": 2465}, "only on port 465"),
    ({"alert_sns_topic_arn": "arn:aws:s3:::bucket", "aws_region": "us-east-1"}, "not an SNS topic ARN"),
    ({"alert_sns_topic_arn": SNS["alert_sns_topic_arn"]}, "set it too"),
])
def test_bad_alerting_settings_are_named(values, message):
    found = "\n".join(problems(sample_data(**values)))
    assert message in found, found


def test_good_alerting_settings_pass():
    data = sample_data(**MAIL, **SNS, alert_webhook_urls=["https://hooks.example.com/a?token=b&c=d",
                                                          "http://127.0.0.1:9999/hook", "http://[::1]:80/"],
                       deadmans_switch_url="https://hc-ping.com/5b2b4d1c", alert_sns_api_url="http://127.0.0.1:5050",
                       alert_runbook_base_url="https://git.example.com/ops/gitea-deploy/src/branch/main")
    assert problems(data) == []
