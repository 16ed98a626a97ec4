"""tasks/heartbeat.py: the timer runs, its last heartbeat was accepted by CloudWatch, and the
configuration is the inventory's, with no credentials in the units or in any file others can read.
Run against production too: nothing here writes to the host (it only waits for the first beat)."""

import json
import shlex
import time

import pytest

from tasks.backup import CREDENTIALS_FILE
from tasks.heartbeat import CONFIG_FILE, PROGRAM, SERVICE, TIMER, UNITS, enabled, render_config

FIRST_BEAT_SECONDS = 90  # the timer's first run is 10 s after it starts; then one every 60 s


# No heartbeat without AWS (metrics_namespace or aws_region unset): deselected there, not skipped.
pytestmark = pytest.mark.applies.with_args(enabled)


def unit_state(target, unit: str, *properties: str) -> dict[str, str]:
    out = target.sudo(f"systemctl show {shlex.quote(unit)} " + " ".join(f"-p {p}" for p in properties)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_the_timer_is_active_and_enabled(target):
    assert target.service(TIMER) == (True, True)
    # Every minute: the next run is at most a minute (and the accuracy) away. Times in µs, realtime.
    # While a run is in progress (about a second) the timer has no next elapse yet: ask again.
    deadline = time.monotonic() + 10
    while True:
        out = target.sudo(f"systemctl list-timers {TIMER} --output=json --no-pager; echo; date +%s%6N").stdout
        timers, _, now = out.strip().rpartition("\n")
        [timer] = json.loads(timers)
        if timer["next"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert timer["next"] is not None, f"{TIMER} has no next run: {timer}"
    assert 0 <= (timer["next"] - int(now)) / 1e6 <= 62, timer


def test_the_last_heartbeat_was_sent(target):
    """The last run exited 0 (CloudWatch accepted the datapoint) and was recent."""
    deadline = time.monotonic() + FIRST_BEAT_SECONDS
    while True:
        state = unit_state(target, SERVICE, "Result", "ExecMainStatus", "ExecMainExitTimestampMonotonic",
                           "ActiveState")
        ran = int(state.get("ExecMainExitTimestampMonotonic") or 0) > 0 and state["ActiveState"] != "activating"
        if ran or time.monotonic() > deadline:
            break
        time.sleep(3)
    journal = target.sudo("journalctl -t gitea-heartbeat --no-pager -n 5").stdout
    assert ran, f"{SERVICE} has not run within {FIRST_BEAT_SECONDS} s of the checks starting: {state}"
    assert (state["Result"], state["ExecMainStatus"]) == ("success", "0"), f"{state}\n{journal}"
    uptime = float(target.sudo("cut -d' ' -f1 /proc/uptime").stdout)
    age = uptime - int(state["ExecMainExitTimestampMonotonic"]) / 1e6
    assert age <= 75, f"the last heartbeat ended {age:.0f} s ago: the timer is not firing every minute"


def test_the_configuration_is_the_inventorys(target):
    config = target.host.file(CONFIG_FILE)
    assert (config.user, config.mode) == ("root", 0o644)
    assert config.content_string == render_config(target.data)
    shown = json.loads(target.sudo(f"{PROGRAM} --dry-run").stdout)
    assert shown["monitoring"] == "ok", shown
    assert shown["request"]["Namespace"] == target.data["metrics_namespace"]
    assert shown["request"]["MetricData"][0]["Dimensions"] == [{"Name": "Domain", "Value": target.domain}]


def test_no_credentials_in_the_units_or_any_file_others_can_read(target):
    units = target.sudo(f"systemctl cat {SERVICE} {TIMER}").stdout
    environment = target.sudo(f"systemctl show -p Environment -p LoadCredential {SERVICE}").stdout
    for text in (units, environment):
        assert "aws_secret_access_key" not in text.lower() and "AWS_SECRET" not in text
    for path in [*UNITS.values(), PROGRAM, CONFIG_FILE]:
        assert target.host.file(path).user == "root" and not target.host.file(path).mode & 0o022, path
    secret = target.data.get("backup_aws_secret_access_key")
    if secret:  # emulated AWS: the static keys' only file is root-only, and nothing else holds the secret
        assert target.sudo(f"stat -c '%u %a' {CREDENTIALS_FILE}").stdout.split() == ["0", "600"]
        readable = target.sudo(
            f"grep -rlF -- {shlex.quote(secret)} /etc/gitea-deploy /etc/systemd/system /usr/local 2>/dev/null "
            "| xargs -r stat -c '%a %n' | awk '$1 !~ /00$/'").stdout.strip()
        assert not readable, f"files others can read hold the static secret key: {readable}"
        assert secret not in units and secret not in environment
    else:  # production: no key file at all; the instance role through IMDS
        assert json.loads(target.host.file(CONFIG_FILE).content_string)["credentials_file"] is None
