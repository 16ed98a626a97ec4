"""The alert rules judged by the promtool of the host's own Prometheus: Debian 13's 2.53 (the lab
image `promtool`, lab/images/promtool: Debian's package, built once and cached by content tag).
`promtool check rules` parses files/alerting/rules/gitea-deploy.yml as the host's Prometheus
would; `promtool test rules` runs tests/alerting/*.test.yml, where every alert fires on the series
that should trigger it and stays silent just below its threshold and while pending.
tests/unit/test_alert_rules.py checks the file's shape without Docker.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
import yaml

from tests.unit.test_alert_rules import ROOT as REPO
from tests.unit.test_alert_rules import RULES, TESTS_DIR, alerts

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def promtool(lab_engine):
    from lab import images

    tag = images.ensure("promtool")

    def run(*args: str) -> subprocess.CompletedProcess:
        # No network: the rules and tests are all it needs. Read-only: it judges, never writes.
        name = f"gitea-lab-promtool-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return subprocess.run(
            ["docker", "run", "--rm", "--name", name, "--network", "none", "-v", f"{REPO}:/repo:ro",
             "-w", f"/repo/{TESTS_DIR.relative_to(REPO).as_posix()}", tag, *args],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)

    return run


def test_promtool_is_debians_2_53(promtool):
    """The same release as the host's prometheus package (trixie: 2.53.3+ds1)."""
    out = promtool("--version")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    print(first)
    assert first.startswith("promtool, version 2.53.") and "+ds" in first, first


def test_rules_pass_promtool_check(promtool):
    out = promtool("check", "rules", "/repo/" + RULES.relative_to(REPO).as_posix())
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout, out.stdout


def test_every_rule_unit_test_passes(promtool):
    files = sorted(p.name for p in TESTS_DIR.glob("*.test.yml"))
    started = time.monotonic()
    out = promtool("test", "rules", *files)
    print(f"promtool test rules: {len(files)} files, "
          f"{sum(len(yaml.safe_load((TESTS_DIR / f).read_text())['tests']) for f in files)} tests, "
          f"{time.monotonic() - started:.1f} s")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert out.stdout.count("SUCCESS") == len(files), out.stdout
