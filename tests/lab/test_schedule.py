"""The shipped schedule, run for real (docs/runbooks/schedule.md).

On this test machine as the control machine: the service's own ExecStart, from the unit file,
redeploys the session's converged lab host and runs the host checks against it (the lab's
settings, GITEA_DEPLOY_INVENTORY/LIMIT/TLS_CA, are what an operator's schedule.env would say),
while a second run started meanwhile is refused by the lock; and a run that cannot reach its host
(inventories/prod.py from the recorded Terraform output, pointed at a closed port) fails, and its
OnFailure unit's ExecStart delivers the notification to a webhook on 127.0.0.1 and a command.
This machine's PID 1 is not systemd, so here the test starts the OnFailure unit as systemd would.

On a Debian 13 lab host as the control machine, under real systemd: the units exactly as shipped
pass `systemd-analyze verify`, the timer loads, a run finding the lock held is a success that
notifies nobody, and a failing run (no pyinfra there) and an overrunning one (TimeoutStartSec) are
reported by systemd's OnFailure through the same command and webhook, the journal's tail included.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time

import pytest

from lab import api
from lab.converge import REPO, root_ca_file
from schedule import redeploy
from tests import schedule_units as units

pytestmark = pytest.mark.lab

RECORDED = REPO / "tests/fixtures/terraform-output.json"


def start(name: str, env: dict[str, str], instance: str = "", **popen) -> subprocess.Popen:
    """Start unit `name`'s ExecStart as systemd would, from its WorkingDirectory (this checkout)."""
    svc = units.parse(name)["Service"]
    assert svc["WorkingDirectory"] == units.CHECKOUT
    return subprocess.Popen(units.exec_start(name, checkout=REPO, instance=instance), cwd=REPO,
                            env={**os.environ, **env}, text=True, **popen)


def run_like_systemd(name: str, env: dict[str, str], timeout: float) -> tuple[int, str, str | None]:
    """Start the unit; when it fails (an exit status not in SuccessExitStatus), start its
    OnFailure= unit with %n = its name. Returns (status, its output, the hook's output or None)."""
    proc = start(name, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=timeout)
    section = units.parse(name)
    ok = {0, *(int(c) for c in section["Service"].get("SuccessExitStatus", "").split())}
    if proc.returncode in ok:
        return proc.returncode, out, None
    hook = section["Unit"]["OnFailure"].replace("%n", name)
    template, instance = hook.split("@", 1)
    hook_proc = start(f"{template}@.service", env, instance=instance.removesuffix(".service"),
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    hook_out, _ = hook_proc.communicate(timeout=120)
    assert hook_proc.returncode == 0, f"the notification failed:\n{hook_out}"
    return proc.returncode, out, hook_out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_service_redeploys_and_checks_the_lab_host_one_run_at_a_time(converged_host, tmp_path):
    name = converged_host["name"]
    lock = tmp_path / "redeploy.lock"
    env = {"GITEA_DEPLOY_INVENTORY": "inventories/lab.py", "GITEA_DEPLOY_LIMIT": name,
           "GITEA_DEPLOY_TLS_CA": str(root_ca_file(name)), "GITEA_DEPLOY_LOCK_FILE": str(lock)}
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = start(units.SERVICE, env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: lock.exists() and "pid " in lock.read_text(), 30, "the first run to take the lock")
        second = subprocess.run(units.exec_start(units.SERVICE, checkout=REPO), cwd=REPO, env={**os.environ, **env},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == redeploy.EXIT_LOCKED, second.stdout + second.stderr
        assert f"another run holds {lock} (pid {first.pid} " in second.stdout
        assert first.wait(timeout=900) == 0, log.read_text()[-8000:]
    finally:
        if first.poll() is None:
            first.kill()
    text = log.read_text()
    assert f"[1/2] redeploy: pyinfra -y inventories/lab.py deploy.py --limit {name}" in text
    assert f"[2/2] host checks: pytest tests/host --inventory inventories/lab.py --limit {name} --tls-ca " in text
    assert "every step passed" in text
    # the host was already converged: the scheduled redeploy changed nothing on it
    (total,) = [line.split() for line in text.splitlines() if line.strip().startswith("Grand total")]
    assert total[3:5] == ["-", "-"], f"changed/failed operations (pyinfra's Success/Error columns): {total}"


def test_a_failed_run_is_notified_by_webhook_and_command(tmp_path):
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"ssh_hostname": "127.0.0.1", "ssh_port": closed_port(),
                                     "acme_email": "ops@schedule.test", "gitea_admin_email": "gitadmin@schedule.test"}))
    got = tmp_path / "notified by command"
    listener = units.Listener()
    try:
        env = {"GITEA_DEPLOY_TERRAFORM_OUTPUT": str(RECORDED), "GITEA_DEPLOY_OVERRIDES": str(overrides),
               "GITEA_DEPLOY_LOCK_FILE": str(tmp_path / "redeploy.lock"),
               "GITEA_DEPLOY_NOTIFY_URL": listener.url + "/hooks/ops",
               "GITEA_DEPLOY_NOTIFY_COMMAND": shlex.join(["tee", str(got)])}
        status, out, hook = run_like_systemd(units.SERVICE, env, timeout=120)
    finally:
        listener.close()
    assert status == redeploy.EXIT_FAILED, out
    assert "FAILED: redeploy exited" in out and "Could not connect" in out and "[2/2]" not in out
    assert hook is not None and "notified through the command" in hook and "notified through the webhook" in hook
    assert got.read_text().startswith(f"gitea-deploy: {units.SERVICE} failed on {socket.gethostname()}")
    (posted,) = listener.received
    assert posted["path"] == "/hooks/ops" and posted["body"]["unit"] == units.SERVICE


# ---- under real systemd, on a Debian 13 lab host playing the control machine ---------------------

PROBE = "/var/lib/gitea-deploy-probe"  # outside PrivateTmp, writable under ProtectSystem=full
PROBE_PORT = 18097  # in the host's network namespace: clear of the sidecars' and the stack's ports
NOTIFY_UNIT = units.NOTIFY.replace("@.", f"@{units.SERVICE}.")
LISTENER = f"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open({PROBE + '/webhook.jsonl'!r}, "ab") as f:
            f.write(body + b"\\n")
        self.send_response(204)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", {PROBE_PORT}), H).serve_forever()
"""
# Read by systemd: the quoted path with a space must reach tee as one argument.
SETTINGS = (f'GITEA_DEPLOY_NOTIFY_COMMAND=/usr/bin/tee -a "{PROBE}/notified by command"\n'
            f"GITEA_DEPLOY_NOTIFY_URL=http://127.0.0.1:{PROBE_PORT}/hook\n")


def sh(host: str, command: str, *, check: bool = True, input: str | None = None, timeout: float = 120):
    cp = api.exec(host, ["bash", "-c", command], input=input, timeout=timeout)
    if check:
        assert cp.returncode == 0, f"{command}\n{cp.stdout}{cp.stderr}"
    return cp


def put(host: str, path: str, content: str, mode: str = "0644", owner: str = "root:root"):
    sh(host, f"install -D -m {mode} -o {owner.split(':')[0]} -g {owner.split(':')[1]} /dev/stdin {shlex.quote(path)}",
       input=content)


@pytest.fixture(scope="module")
def control(converged_host):
    """The converged host also plays an operator's control machine with the units installed as the
    runbook says: user gitea-deploy, the checkout in /opt/gitea-deploy (here: the script, and a
    python in .venv that is the system's; no pyinfra, so the redeploy step fails), the settings
    file. All of it is removed afterwards: the host stays what the other modules expect."""
    host = converged_host["name"]
    install_control(host)
    yield host
    remove_control(host)


def install_control(host: str):
    sh(host, "id gitea-deploy >/dev/null 2>&1 || useradd --system --user-group --home-dir /opt/gitea-deploy "
             "--shell /usr/sbin/nologin gitea-deploy")
    for rel in ("schedule/__init__.py", "schedule/redeploy.py", "schedule/lock.py", "inventories/prod.py"):
        put(host, f"/opt/gitea-deploy/{rel}", (REPO / rel).read_text())
    sh(host, f"mkdir -p /opt/gitea-deploy/.venv/bin {PROBE} && ln -sfn /usr/bin/python3 /opt/gitea-deploy/.venv/bin/python "
             f"&& chown -R gitea-deploy:gitea-deploy /opt/gitea-deploy {PROBE}")
    for name in (units.SERVICE, units.TIMER, units.NOTIFY):
        put(host, f"/etc/systemd/system/{name}", (units.UNITS / name).read_text())
    put(host, "/etc/gitea-deploy/schedule.env", SETTINGS, mode="0640", owner="root:gitea-deploy")
    put(host, f"{PROBE}/listener.py", LISTENER)
    sh(host, "systemctl daemon-reload && systemd-run --quiet --unit=gitea-deploy-probe-webhook "
             f"--uid=gitea-deploy /usr/bin/python3 {PROBE}/listener.py")
    wait_for(lambda: sh(host, f"curl -fsS -o /dev/null -X POST -d '{{}}' http://127.0.0.1:{PROBE_PORT}/ready",
                        check=False).returncode == 0, 20, "the probe webhook")
    sh(host, f": > {PROBE}/webhook.jsonl")


def remove_control(host: str):
    # Only what install_control added: /etc/gitea-deploy also holds the deploy's own staged configs
    # and backup.env, which the modules after this one (and the backup job) need.
    sh(host, "systemctl stop gitea-deploy-redeploy.timer gitea-deploy-redeploy.service gitea-deploy-probe-webhook "
             "gitea-deploy-probe-holder 2>/dev/null; "
             f"rm -rf /etc/systemd/system/{units.SERVICE} /etc/systemd/system/{units.TIMER} "
             f"/etc/systemd/system/{units.NOTIFY} /run/systemd/system/{units.SERVICE}.d /etc/gitea-deploy/schedule.env "
             f"/opt/gitea-deploy {PROBE}; systemctl daemon-reload; systemctl reset-failed; userdel gitea-deploy",
       check=False)


def notifications(host: str) -> tuple[str, list[dict]]:
    command = sh(host, f"cat '{PROBE}/notified by command' 2>/dev/null", check=False).stdout
    posted = sh(host, f"cat {PROBE}/webhook.jsonl", check=False).stdout
    return command, [json.loads(line) for line in posted.splitlines() if line.strip()]


def clear_notifications(host: str):
    sh(host, f"rm -f '{PROBE}/notified by command' && : > {PROBE}/webhook.jsonl")


def show(host: str, unit: str, *props: str) -> dict[str, str]:
    out = sh(host, f"systemctl show {unit} " + " ".join(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def notify_invocation(host: str) -> str:
    return show(host, NOTIFY_UNIT, "InvocationID")["InvocationID"]


def wait_notified(host: str, before: str) -> tuple[str, list[dict]]:
    """Wait for a run of the notification unit other than `before` to finish; what it delivered."""
    def done():
        s = show(host, NOTIFY_UNIT, "ActiveState", "Result", "InvocationID")
        return s if s["InvocationID"] not in ("", before) and s["ActiveState"] in ("inactive", "failed") else None
    state = wait_for(done, 60, f"{NOTIFY_UNIT} to run")
    assert state["Result"] == "success", sh(host, f"journalctl -u {NOTIFY_UNIT} -n 30 --no-pager", check=False).stdout
    return notifications(host)


def test_units_as_shipped_verify_on_debian_13(control):
    cp = sh(control, f"cd /etc/systemd/system && systemd-analyze verify {units.SERVICE} {units.TIMER} {NOTIFY_UNIT}",
            check=False)
    assert cp.returncode == 0 and not (cp.stdout + cp.stderr).strip(), cp.stdout + cp.stderr
    sh(control, f"systemctl start {units.TIMER}")
    timer = show(control, units.TIMER, "ActiveState", "NextElapseUSecRealtime", "Triggers")
    assert timer["ActiveState"] == "active" and timer["NextElapseUSecRealtime"] and timer["Triggers"] == units.SERVICE
    sh(control, f"systemctl stop {units.TIMER}")


def test_a_run_that_finds_the_lock_held_succeeds_quietly(control):
    """Held by a manual `flock` (which writes no holder), on a lock file root made by hand: the
    service's user can still take (here: test) the lock through a read-only descriptor."""
    clear_notifications(control)
    sh(control, "rm -f /opt/gitea-deploy/.redeploy.lock && flock /opt/gitea-deploy/.redeploy.lock true && "
                "stat -c %U /opt/gitea-deploy/.redeploy.lock | grep -qx root")
    sh(control, "systemd-run --quiet --unit=gitea-deploy-probe-holder --uid=gitea-deploy "
                "flock /opt/gitea-deploy/.redeploy.lock sleep 120")
    try:
        wait_for(lambda: sh(control, "runuser -u gitea-deploy -- flock -n /opt/gitea-deploy/.redeploy.lock true",
                            check=False).returncode == 1,
                 20, "the holder to take the lock")
        sh(control, f"systemctl start {units.SERVICE}")  # succeeds: SuccessExitStatus=75
        assert show(control, units.SERVICE, "Result")["Result"] == "success"  # exit 75 (the journal says why)
        said = "another run holds /opt/gitea-deploy/.redeploy.lock (unknown): not running this one"
        # (a unit that ended well keeps no InvocationID to ask the journal by: its last lines, then)
        wait_for(lambda: said in sh(control, f"journalctl --no-pager -o cat -n 4 -u {units.SERVICE}").stdout,
                 10, "the run's journal to say why it did nothing")
    finally:
        sh(control, "systemctl stop gitea-deploy-probe-holder", check=False)
    time.sleep(1)
    assert notifications(control) == ("", [])


def test_a_failing_run_is_reported_by_on_failure(control):
    clear_notifications(control)
    before = notify_invocation(control)
    assert sh(control, f"systemctl start {units.SERVICE}", check=False).returncode != 0
    assert show(control, units.SERVICE, "Result")["Result"] == "exit-code"
    command, posted = wait_notified(control, before)
    head = f"gitea-deploy: {units.SERVICE} failed on "
    assert command.startswith(head) and "(result: exit-code)" in command
    assert "FAILED: redeploy: could not start pyinfra" in command  # the journal's tail, read as gitea-deploy
    (body,) = posted
    assert body["unit"] == units.SERVICE and body["result"] == "exit-code" and "could not start pyinfra" in body["log"]


def test_an_overrunning_run_is_stopped_and_reported(control):
    """TimeoutStartSec is the backstop: shortened here, with a pyinfra that never ends."""
    clear_notifications(control)
    put(control, "/opt/gitea-deploy/.venv/bin/pyinfra", "#!/bin/sh\nexec sleep 600\n", mode="0755")
    put(control, f"/run/systemd/system/{units.SERVICE}.d/short.conf", "[Service]\nTimeoutStartSec=3s\n")
    try:
        sh(control, "systemctl daemon-reload")
        before = notify_invocation(control)
        started = time.monotonic()
        assert sh(control, f"systemctl start {units.SERVICE}", check=False).returncode != 0
        assert time.monotonic() - started < 40
        assert show(control, units.SERVICE, "Result")["Result"] == "timeout"
        # nothing of the run is left (no procps in a minimal host: read /proc)
        left = sh(control, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null", check=False)
        assert not [line for line in left.stdout.splitlines() if line.startswith("sleep 600")]
        command, (body,) = wait_notified(control, before)
        assert "(result: timeout)" in command and body["result"] == "timeout"
    finally:
        sh(control, f"rm -rf /run/systemd/system/{units.SERVICE}.d /opt/gitea-deploy/.venv/bin/pyinfra && "
                    "systemctl daemon-reload", check=False)


def test_python_here_runs_the_script(control):
    """The control container's python is Debian 13's: the script runs there as it does here."""
    cp = sh(control, "cd /opt/gitea-deploy && runuser -u gitea-deploy -- .venv/bin/python schedule/redeploy.py steps")
    assert cp.stdout.splitlines() == [shlex.join(a) for _, a in redeploy.STEPS]
