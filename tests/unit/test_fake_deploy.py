"""The whole deploy against pyinfra's @fake connector: every command answers nothing, so the host
looks bare and every op runs. Shows, without a host, the op names and order an operator sees on
a first converge, and what each stage asks of the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tasks import (
    REPO,
    alerting,
    backup,
    base,
    certbot,
    docker,
    fail2ban,
    firewall,
    hardening,
    heartbeat,
    monitoring,
    nginx,
    node_exporter,
)
from tests.unit.render import sample_data

FAKE_INVENTORY = """
import sys
sys.path.insert(0, {repo!r})
from tests.unit.render import sample_data
hosts = [("@fake/fresh", {{**sample_data(**{values!r}), "fake_delay": 0, "fake_delay_jitter": 0}})]
"""
STAGES = ["Packages", "Base system", "Hardening", "Firewall", "Docker engine", "Secrets", "Update programs", "Gitea stack",
          "Nginx and TLS", "fail2ban", "Node exporter", "Monitoring", "Alerting", "Heartbeat", "Backups"]


def fake_deploy(folder, **values) -> tuple[dict, str]:
    """The deploy against one @fake host with the sample data and `values` (settings) over it:
    (pyinfra's JSON results, its --debug log)."""
    inventory = folder / "fake_inventory.py"
    inventory.write_text(FAKE_INVENTORY.format(repo=str(REPO), values=values))
    run = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "--json", "--debug", str(inventory), "deploy.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"})
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(run.stdout)["results"]
    assert results["totals"]["error"] == 0
    return results, run.stderr


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return fake_deploy(tmp_path_factory.mktemp("fake"))


def op_names(fake_run) -> list[str]:
    return [op["name"] for op in fake_run[0]["operations"]]


def test_the_deploy_runs_through_pyinfra_and_names_every_op(fake_run):
    """Every op runs under its name, and each family is looked at through one batched fact."""
    names = op_names(fake_run)
    assert len(names) > 80 and all(names)
    for expected in ("Install nginx", "Compose file", "Start the stack (", "node_exporter running",
                     "Install the sshd drop-in (validated by sshd -t)", "Reload nginx (port 443)"):
        assert any(f"| {expected}" in name for name in names), expected
    loaded = [line for line in fake_run[1].splitlines() if "Loaded fact " in line]
    assert sum("tasks.snapshot.ManagedPaths" in line for line in loaded) >= 1
    assert not any("pyinfra.facts.files.Sha1File" in line for line in loaded[:1])


def test_stages_run_in_deploy_order_and_each_op_says_its_stage(fake_run):
    """An operator follows a run by its stage prefixes: each stage once, in deploy.py's order."""
    names = op_names(fake_run)
    assert all(" | " in name for name in names), [n for n in names if " | " not in n]
    seen = list(dict.fromkeys(name.split(" | ", 1)[0] for name in names))
    assert seen == STAGES


def test_every_package_is_installed_in_one_apt_transaction(fake_run):
    """One `apt-get install` with every stage's packages, no recommends, after only the configs a
    postinst would start a service with (node_exporter's loopback drop-in, Alertmanager's arguments)."""
    installs = [op for op in fake_run[0]["operations"] if op["name"].startswith("Packages | Install ")]
    assert len(installs) == 1, [op["name"] for op in installs]
    wanted = [*base.PACKAGES, *hardening.PACKAGES, *firewall.PACKAGES, *docker.PACKAGES, *nginx.PACKAGES,
              *certbot.PACKAGES, *fail2ban.PACKAGES, *node_exporter.PACKAGES, *monitoring.packages(sample_data()),
              *alerting.PACKAGES, *heartbeat.packages(sample_data()), *backup.packages(sample_data())]
    apt_gets = [line.split(": ", 1)[1] for line in fake_run[1].splitlines()
                if "simulating command" in line and "apt-get" in line]
    assert len(apt_gets) == 2 and apt_gets[0] == "apt-get update", apt_gets  # one refresh, one install
    install = apt_gets[1].split()
    assert "install" in install and "--no-install-recommends" in install, install
    assert install[install.index("--no-install-recommends") + 1:] == wanted
    names = op_names(fake_run)
    drop_in = names.index("Packages | node_exporter on loopback, with the textfile collector")
    assert drop_in < names.index(installs[0]["name"])
    # Every monitoring daemon's loopback drop-in too, and the blackbox exporter's /etc/hosts.
    for service in (*monitoring.exporters(sample_data()), monitoring.PROMETHEUS, monitoring.APT_COLLECTOR):
        assert names.index(f"Packages | {service} unit drop-in (loopback only)") < names.index(installs[0]["name"])
    assert names.index("Packages | The blackbox exporter's own /etc/hosts") < names.index(installs[0]["name"])
    # Alertmanager's first start (its postinst) is already loopback-only, without a cluster port.
    assert names.index("Packages | Alertmanager on loopback, no cluster port") < names.index(installs[0]["name"])


def test_a_dpkg_run_cut_short_is_finished_before_the_install(fake_run):
    """A deploy killed inside the apt transaction leaves packages unpacked; apt-get then refuses
    to install until `dpkg --configure -a` has run, so the next deploy runs it first."""
    names = op_names(fake_run)
    finish = names.index("Packages | Finish an interrupted dpkg run")
    assert finish < next(i for i, n in enumerate(names) if n.startswith("Packages | Install "))
    commands = [line.split(": ", 1)[1] for line in fake_run[1].splitlines() if "simulating command" in line]
    assert "DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold --configure -a" in commands


def test_long_steps_say_what_they_wait_for_and_for_how_long(fake_run):
    names = op_names(fake_run)
    stack = [n for n in names if "| Start the stack" in n]
    certificate = [n for n in names if "| Obtain the certificate" in n]
    assert stack == ["Gitea stack | Start the stack (pulls missing images, then waits up to 300 s for healthy)"]
    assert certificate == ["Nginx and TLS | TLS certificate | Obtain the certificate for git.example.com "
                           "(ACME http-01 on port 80, at most 300 s)"]
