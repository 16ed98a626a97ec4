"""The alert rules' shape, without Docker (tests/lab/test_alerting_rules.py runs promtool): the
alerts the helpers agreed on (docs/dev/contracts.md), each with `for:`, a severity, a summary, a
description and a runbook_url whose section exists in docs/runbooks/alerts.md, and a promtool test
that fires it and one that keeps it silent."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "files/alerting/rules/gitea-deploy.yml"
TESTS_DIR = ROOT / "tests/alerting"
RUNBOOK = ROOT / "docs/runbooks/alerts.md"

# The fixed interface: the alerting stage's routes and inhibitions and the lab fault tests use these.
ALERTS = {
    "Watchdog": "none", "TargetDown": "warning", "GiteaHealthzFailing": "critical",
    "PostgresqlDown": "critical", "PostgresqlTooManyConnections": "warning", "HostDiskSpaceLow": "critical",
    "HostDiskWillFillIn24Hours": "warning", "HostInodesLow": "warning", "HostMemoryLow": "warning",
    "HostOomKill": "warning", "SystemdUnitFailed": "warning", "ContainerRestarting": "warning",
    "CertificateExpiresIn20Days": "warning", "CertificateExpiresIn7Days": "critical",
    "HttpsProbeFailing": "critical", "GitSshProbeFailing": "critical", "BackupTooOld": "critical",
    "BackupFailed": "warning", "ResticCheckFailed": "critical", "RebootRequired": "warning",
    "PrometheusRuleFailures": "warning", "AlertmanagerNotificationsFailing": "critical",
    "GiteaUpdateFailed": "warning",
}
# The scrape job names of the fixed interface.
JOBS = {"prometheus", "node", "gitea", "postgres", "nginx", "blackbox", "blackbox_https", "blackbox_git_ssh",
        "alertmanager"}


@cache
def alerts() -> dict[str, dict]:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in rules if "alert" in rule]
    assert len(names) == len(set(names)), f"an alert is defined twice: {names}"
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def github_anchor(heading: str) -> str:
    """The id GitHub (and Gitea) give a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_rule_file_has_exactly_the_agreed_alerts_and_severities():
    assert {name: rule["labels"]["severity"] for name, rule in alerts().items()} == ALERTS


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_has_for_labels_and_annotations(name):
    rule = alerts()[name]
    assert re.fullmatch(r"\d+[smhd]", str(rule.get("for", ""))), f"{name}: no `for:`"
    assert set(rule["labels"]) == {"severity"}
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert all(rule["annotations"][key].strip() for key in ("summary", "description"))
    assert rule["annotations"]["runbook_url"] == f"docs/runbooks/alerts.md#{name.lower()}"


def test_every_runbook_link_has_its_section():
    anchors = {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines()
               if line.startswith("## ")}
    missing = [name for name, rule in alerts().items()
               if rule["annotations"]["runbook_url"].partition("#")[2] not in anchors]
    assert not missing, f"docs/runbooks/alerts.md has no section for {missing}"


def test_expressions_name_only_the_agreed_scrape_jobs():
    used = {job for rule in alerts().values() for job in re.findall(r'job="([^"]+)"', rule["expr"])}
    assert used <= JOBS, used - JOBS


@cache
def rule_tests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(TESTS_DIR.glob("*.test.yml")):
        doc = yaml.safe_load(path.read_text())
        assert [(path.parent / f).resolve() for f in doc["rule_files"]] == [RULES], path
        found += [(f"{path.name}: {test['name']}", case) for test in doc["tests"]
                  for case in test.get("alert_rule_test", [])]
    return found


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_has_a_firing_and_a_silent_promtool_test(name):
    cases = [(where, case) for where, case in rule_tests() if case["alertname"] == name]
    firing = [where for where, case in cases if case.get("exp_alerts")]
    silent = [where for where, case in cases if not case.get("exp_alerts")]
    assert firing, f"{name}: no promtool test expects it to fire"
    # Watchdog is silent only when the pipeline is dead: that is the dead-man's switch's test.
    assert silent or name == "Watchdog", f"{name}: no promtool test expects it to stay silent"


def test_promtool_tests_name_only_real_alerts():
    unknown = {case["alertname"] for _, case in rule_tests()} - set(alerts())
    assert not unknown, unknown
