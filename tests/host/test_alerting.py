"""tasks/alerting.py: Alertmanager on loopback only with no cluster port, running the configuration
the deploy built (amtool accepts it), its secrets readable by root and Alertmanager only."""

import json

from tasks import alerting

CONFIG = alerting.CONFIG


def test_running_enabled_and_listening_on_loopback_only(target):
    assert target.service(alerting.SERVICE) == (True, True)
    pid = target.sudo(f"systemctl show -p MainPID --value {alerting.SERVICE}").stdout.strip()
    listeners = [line.split()[4] for line in target.sudo("ss -Hltunp").stdout.splitlines() if f"pid={pid}," in line]
    # Only the HTTP API: no cluster listener (TCP and UDP 9094 by default). Columns: Netid State Recv-Q Send-Q Local.
    assert listeners == [f"127.0.0.1:{target.data['alertmanager_port']}"], listeners


def test_it_runs_the_configuration_on_disk_and_amtool_accepts_it(target):
    check = target.sudo(f"amtool check-config {CONFIG}")
    assert check.rc == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    status = json.loads(target.sudo(f"curl -fsS http://127.0.0.1:{target.data['alertmanager_port']}/api/v2/status").stdout)
    # The API's copy of the loaded configuration is the file on disk (less its comment line).
    on_disk = alerting.yaml.safe_load(target.sudo(f"cat {CONFIG}").stdout)
    assert alerting.yaml.safe_load(status["config"]["original"])["route"]["receiver"] == on_disk["route"]["receiver"]
    assert status["cluster"]["status"] == "disabled", status["cluster"]


def test_amtool_talks_to_this_host_by_default(target):
    cp = target.sudo("amtool config routes")
    assert cp.rc == 0 and "receiver: operators" in cp.stdout, cp.stdout + cp.stderr


def test_secrets_are_readable_by_root_and_alertmanager_only(target):
    listing = target.sudo(f"stat -c '%a %U %G %n' {alerting.SECRETS_DIR} {alerting.SECRETS_DIR}/*").stdout.splitlines()
    directory, *files = listing
    assert directory == f"750 root prometheus {alerting.SECRETS_DIR}"
    assert all(line.startswith("640 root prometheus ") for line in files), files
    # Every file the configuration names is there; the configuration itself holds no URL or secret.
    text = target.sudo(f"cat {CONFIG}").stdout
    named = [line.split(": ", 1)[1] for line in text.splitlines() if line.strip().startswith(("url_file:", "auth_password_file:"))]
    assert {f"{alerting.SECRETS_DIR}/{line.split()[-1].rsplit('/', 1)[1]}" for line in files} >= set(named)
    assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text


def test_the_alertmanager_user_reads_its_secrets_and_others_cannot(target):
    assert target.sudo(f"sudo -u prometheus ls {alerting.SECRETS_DIR}").rc == 0
    assert target.sudo(f"sudo -u nobody ls {alerting.SECRETS_DIR}").rc != 0
