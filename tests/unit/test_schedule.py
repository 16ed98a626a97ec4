"""The shipped schedule (schedule/, .gitea/workflows/redeploy.yaml; docs/runbooks/schedule.md):
the workflow runs exactly the commands the systemd service's script runs, the units pass
`systemd-analyze verify` and are wired to each other, and the script's lock, time bound and
notifications do what they say. No Docker, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from schedule import redeploy
from tasks import REPO
from tests import schedule_units as units
from tests.conftest import skip_because

WORKFLOW = REPO / ".gitea" / "workflows" / "redeploy.yaml"


# ---- the workflow and the script run the same commands ----------------------------------------

def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_parses_and_is_scheduled_bounded_and_single():
    wf = workflow()
    # YAML 1.1 reads a bare `on:` key as True; Gitea (and GitHub) mean the trigger section.
    triggers = wf.get("on", wf.get(True))
    assert triggers["schedule"][0]["cron"].split() == ["17", "*", "*", "*", "*"]
    assert "workflow_dispatch" in triggers
    assert wf["concurrency"] == {"group": "gitea-deploy-redeploy", "cancel-in-progress": False}
    (job,) = wf["jobs"].values()
    assert job["timeout-minutes"] == 30


def test_workflow_run_steps_are_the_scripts_commands():
    (job,) = workflow()["jobs"].values()
    names = [name for name, _ in redeploy.STEPS]
    by_name = {s.get("name"): s for s in job["steps"]}
    assert [s["name"] for s in job["steps"] if s.get("name") in names] == names  # all of them, in order
    for name, argv in redeploy.steps({}):
        assert by_name[name]["run"].strip() == shlex.join(argv), name
        assert "if" not in by_name[name]  # runs only while every step before it passed, as in the script
    # and nothing else in the workflow deploys or checks
    others = [s.get("run", "") for s in job["steps"] if s.get("name") not in names]
    assert not [r for r in others if "pyinfra" in r or "pytest" in r]


def test_the_steps_are_the_readmes_production_commands():
    assert [shlex.join(a) for _, a in redeploy.steps({})] == [
        "pyinfra -y inventories/prod.py deploy.py",
        "pytest tests/host --inventory inventories/prod.py",
    ]
    readme = (REPO / "README.md").read_text()
    assert "pyinfra inventories/prod.py deploy.py" in readme
    assert "pytest tests/host --inventory inventories/prod.py" in readme


def test_workflow_ssh_key_is_a_secret_written_0600_and_never_echoed():
    (job,) = workflow()["jobs"].values()
    step = next(s for s in job["steps"] if s.get("name") == "ssh key")
    assert step["env"]["SSH_KEY"] == "${{ secrets.DEPLOY_SSH_KEY }}"
    assert step["env"]["KNOWN_HOSTS"] == "${{ vars.DEPLOY_KNOWN_HOSTS }}"
    script = step["run"]
    assert "umask 077" in script and 'chmod 600 "$dir/id_deploy"' in script
    assert '"ssh_strict_host_key_checking": "yes"' in script
    # the key's value goes to the file and nowhere else (no echo, no set -x)
    uses = [line.strip() for line in script.splitlines() if "$SSH_KEY" in line]
    assert uses == ['if [ -z "$SSH_KEY" ] || [ -z "$KNOWN_HOSTS" ]; then',
                    'printf \'%s\\n\' "$SSH_KEY" > "$dir/id_deploy"'], uses
    assert "set -x" not in script and "set -eux" not in script
    # no expression is expanded into a shell script: values arrive through env only
    for s in job["steps"]:
        assert "${{" not in s.get("run", ""), s.get("name")
    # Gitea refuses secret and variable names that start with GITEA_ or GITHUB_
    refs = " ".join(json.dumps(s) for s in job["steps"]) + json.dumps(job["env"])
    for kind in ("secrets.", "vars."):
        for ref in refs.split(kind)[1:]:
            assert not ref.upper().startswith(("GITEA_", "GITHUB_")), ref


def test_steps_take_the_lab_settings_as_argv_elements(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    plan = redeploy.steps({"GITEA_DEPLOY_INVENTORY": "inventories/lab.py", "GITEA_DEPLOY_LIMIT": "gitea-lab-1",
                           "GITEA_DEPLOY_TLS_CA": str(ca)})
    assert plan == [
        ("redeploy", ["pyinfra", "-y", "inventories/lab.py", "deploy.py", "--limit", "gitea-lab-1"]),
        ("host checks", ["pytest", "tests/host", "--inventory", "inventories/lab.py", "--limit", "gitea-lab-1",
                         "--tls-ca", str(ca)]),
    ]


@pytest.mark.parametrize("env", [
    {"GITEA_DEPLOY_LIMIT": "--help"},
    {"GITEA_DEPLOY_LIMIT": "a b"},
    {"GITEA_DEPLOY_LIMIT": "host;reboot"},
    {"GITEA_DEPLOY_INVENTORY": "inventories/nope.py"},
    {"GITEA_DEPLOY_INVENTORY": "--version"},
    {"GITEA_DEPLOY_TLS_CA": "/no/such/ca.pem"},
])
def test_steps_refuse_unusable_settings(env):
    with pytest.raises(redeploy.SettingsError, match=next(iter(env))):
        redeploy.steps(env)


@pytest.mark.parametrize("value", ["0", "-5", "1e3", "30min", "1234567"])
def test_timeout_must_be_whole_seconds(value):
    with pytest.raises(redeploy.SettingsError, match="GITEA_DEPLOY_TIMEOUT"):
        redeploy.timeout_seconds({"GITEA_DEPLOY_TIMEOUT": value})


def test_the_script_runs_by_path_as_the_unit_runs_it():
    # ExecStart runs `python schedule/redeploy.py` from the checkout: no package import path needed
    cp = subprocess.run([sys.executable, "schedule/redeploy.py", "steps"], cwd=REPO, capture_output=True,
                        text=True, env={"PATH": os.defpath}, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == [shlex.join(a) for _, a in redeploy.STEPS]


# ---- the units ---------------------------------------------------------------------------------

def test_service_runs_the_script_bounded_and_hooks_the_notification():
    svc = units.parse(units.SERVICE)
    assert svc["Service"]["Type"] == "oneshot"
    assert units.exec_start(units.SERVICE) == ["/opt/gitea-deploy/.venv/bin/python", "schedule/redeploy.py", "run"]
    assert svc["Service"]["WorkingDirectory"] == units.CHECKOUT
    assert svc["Service"]["TimeoutStartSec"] == "30min"  # RuntimeMaxSec= does nothing for oneshot
    assert redeploy.DEFAULT_TIMEOUT < 30 * 60  # the script reports an overrun itself, first
    assert svc["Service"]["SuccessExitStatus"] == str(redeploy.EXIT_LOCKED)
    assert svc["Unit"]["OnFailure"] == "gitea-deploy-notify@%n.service"
    assert svc["Service"]["EnvironmentFile"] == "-/etc/gitea-deploy/schedule.env"
    assert "Install" not in svc  # only the timer is enabled


def test_notify_unit_reports_the_failed_unit_with_the_settings_file():
    n = units.parse(units.NOTIFY)
    assert units.exec_start(units.NOTIFY, instance="X.service") == [
        "/opt/gitea-deploy/.venv/bin/python", "schedule/redeploy.py", "notify", "X.service"]
    assert n["Service"]["EnvironmentFile"] == "/etc/gitea-deploy/schedule.env"  # required: no silent hook
    assert n["Service"]["User"] == units.parse(units.SERVICE)["Service"]["User"]
    assert "OnFailure" not in n.get("Unit", {})  # a failing hook must not call itself


def test_timer_is_hourly_and_persistent():
    t = units.parse(units.TIMER)
    assert t["Timer"]["OnCalendar"] == "hourly"
    assert t["Timer"]["Persistent"] == "true"
    assert t["Install"]["WantedBy"] == "timers.target"


def systemd_analyze_verify(directory: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *[str(directory / n) for n in names]],
                          capture_output=True, text=True, timeout=60)


def test_units_pass_systemd_analyze_verify(tmp_path):
    """As installed: the checkout path is the one thing an installation may move (here: this
    checkout, so that verify finds the venv's python it checks ExecStart for)."""
    if not shutil.which("systemd-analyze"):
        skip_because("no systemd-analyze on this machine (Debian: package systemd); the lab test "
                     "tests/lab/test_schedule.py verifies the units on a Debian 13 host too")
    for name in (units.SERVICE, units.TIMER, units.NOTIFY):
        (tmp_path / name).write_text(units.text(name, checkout=REPO))
    instance = units.NOTIFY.replace("@.", f"@{units.SERVICE}.")
    cp = systemd_analyze_verify(tmp_path, units.SERVICE, units.TIMER, instance)
    # verify exits 0 on an unknown key or section and only warns: any output at all is a finding
    assert cp.returncode == 0 and not cp.stdout.strip() and not cp.stderr.strip(), cp.stdout + cp.stderr


def test_verify_would_catch_a_broken_unit(tmp_path):
    if not shutil.which("systemd-analyze"):
        skip_because("no systemd-analyze on this machine (Debian: package systemd)")
    (tmp_path / units.SERVICE).write_text(units.text(units.SERVICE, checkout=REPO)
                                          .replace("TimeoutStartSec=", "TimeoutStartSecs="))
    cp = systemd_analyze_verify(tmp_path, units.SERVICE)
    assert "Unknown key" in cp.stderr


# ---- the lock, the bound, the steps' environment ------------------------------------------------

@pytest.fixture
def no_steps(monkeypatch):
    """run() with the steps replaced by a recorder: nothing is deployed."""
    ran = []

    def fake(plan, env, timeout):
        ran.append((plan, env, timeout))
        return 0

    monkeypatch.setattr(redeploy, "run_steps", fake)
    return ran


def test_a_second_run_is_refused_while_the_lock_is_held(tmp_path, no_steps, capsys):
    lock_file = tmp_path / "redeploy.lock"
    env = {"GITEA_DEPLOY_LOCK_FILE": str(lock_file), "PATH": os.defpath}
    holder = redeploy.Lock(lock_file)
    assert holder.acquire()  # flock(2) locks conflict between open files, in one process too
    try:
        assert redeploy.run(env) == redeploy.EXIT_LOCKED
        assert f"pid {os.getpid()}" in capsys.readouterr().out  # says who holds it
        assert no_steps == []
    finally:
        holder.release()
    assert redeploy.run(env) == 0 and len(no_steps) == 1


def test_lock_taken_by_flock_1_is_honoured(tmp_path, no_steps):
    """An operator's `flock FILE pyinfra ...` by hand excludes the scheduled run too."""
    if not shutil.which("flock"):
        skip_because("no flock(1) on this machine (Debian: package util-linux)")
    lock_file = tmp_path / "redeploy.lock"
    holder = subprocess.Popen(["flock", str(lock_file), "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while not lock_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert redeploy.run({"GITEA_DEPLOY_LOCK_FILE": str(lock_file)}) == redeploy.EXIT_LOCKED
    finally:
        holder.kill()
        holder.wait()
    assert no_steps == []


def test_steps_find_the_venv_first_on_path(tmp_path, no_steps):
    env = {"PATH": "/usr/bin:/bin", "GITEA_DEPLOY_LOCK_FILE": str(tmp_path / "lock")}
    assert redeploy.run(env) == 0
    ((plan, step_env, timeout),) = no_steps
    assert step_env["PATH"] == f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin"
    assert timeout == redeploy.DEFAULT_TIMEOUT


def test_bad_settings_stop_before_the_lock(tmp_path, no_steps):
    lock_file = tmp_path / "redeploy.lock"
    assert redeploy.run({"GITEA_DEPLOY_LIMIT": "-x", "GITEA_DEPLOY_LOCK_FILE": str(lock_file)}) == redeploy.EXIT_USAGE
    assert not lock_file.exists() and no_steps == []


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_first_failing_step_ends_the_run(tmp_path):
    marker = tmp_path / "second-ran"
    plan = [("one", py("raise SystemExit(3)")), ("two", py(f"open({str(marker)!r}, 'w')"))]
    assert redeploy.run_steps(plan, dict(os.environ), 60) == redeploy.EXIT_FAILED
    assert not marker.exists()
    assert redeploy.run_steps([("two", plan[1][1])], dict(os.environ), 60) == 0 and marker.exists()


def test_a_missing_command_is_a_failed_step():
    assert redeploy.run_steps([("x", ["no-such-command-gitea-deploy"])], dict(os.environ), 60) == redeploy.EXIT_FAILED


def test_an_overrunning_step_is_stopped_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    # the step starts a grandchild (as pyinfra starts ssh) and both would outlive the bound
    code = ("import subprocess, time, sys; c = subprocess.Popen(['sleep', '300']); "
            f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(300)")
    started = time.monotonic()
    assert redeploy.run_steps([("slow", py(code))], dict(os.environ), 2) == redeploy.EXIT_TIMEOUT
    assert time.monotonic() - started < 2 + redeploy.KILL_GRACE
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


# ---- notifications -----------------------------------------------------------------------------

@pytest.fixture
def listener():
    got = units.Listener()
    yield got
    got.close()


def test_notify_posts_json_to_the_webhook(listener):
    assert redeploy.notify("gitea-deploy-redeploy.service", env={"GITEA_DEPLOY_NOTIFY_URL": listener.url + "/hook"}) == 0
    (got,) = listener.received
    assert got["path"] == "/hook" and got["type"] == "application/json"
    body = got["body"]
    assert body["unit"] == "gitea-deploy-redeploy.service"
    assert body["text"].startswith("gitea-deploy: gitea-deploy-redeploy.service failed on ")
    assert set(body) >= {"text", "unit", "host", "result", "details", "log"}


def test_notify_command_is_split_not_shell_evaluated(tmp_path):
    out = tmp_path / "a b;$(touch pwned)"
    command = shlex.join([sys.executable, "-c",
                          "import os, sys; open(sys.argv[1], 'w').write(os.environ['GITEA_DEPLOY_NOTIFY_UNIT'] + '\\n' + sys.stdin.read())",
                          str(out)])
    assert redeploy.notify("x.service", details="see $HOME", env={"GITEA_DEPLOY_NOTIFY_COMMAND": command}) == 0
    unit, text = out.read_text().split("\n", 1)
    assert unit == "x.service"
    assert "x.service failed on" in text and "see $HOME" in text
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_notify_tries_every_channel_and_fails_when_one_does(tmp_path, listener):
    env = {"GITEA_DEPLOY_NOTIFY_COMMAND": "false", "GITEA_DEPLOY_NOTIFY_URL": listener.url}
    assert redeploy.notify("x.service", env=env) == redeploy.EXIT_FAILED
    assert len(listener.received) == 1  # the webhook still got it


def test_notify_with_nothing_configured_fails(capsys):
    assert redeploy.notify("x.service", env={}) == redeploy.EXIT_FAILED
    assert "no notification configured" in capsys.readouterr().out


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "127.0.0.1:9/x"])
def test_notify_refuses_other_url_schemes(url):
    assert redeploy.notify("x.service", env={"GITEA_DEPLOY_NOTIFY_URL": url}) == redeploy.EXIT_FAILED


def test_a_failed_webhook_does_not_print_its_url(capsys):
    # a closed port on loopback: the URL's path is a token and must not reach the journal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/s3cr3t-t0ken"
    assert redeploy.notify("x.service", env={"GITEA_DEPLOY_NOTIFY_URL": url}) == redeploy.EXIT_FAILED
    out = capsys.readouterr().out
    assert "notification through the webhook failed" in out and "s3cr3t-t0ken" not in out


def test_example_settings_file_names_only_known_settings():
    text = (REPO / "schedule" / "schedule.env.example").read_text()
    keys = {line.lstrip("#").split("=", 1)[0] for line in text.splitlines()
            if "=" in line and line.lstrip("#").split("=", 1)[0].isupper()}
    documented = set(redeploy.__doc__.split())
    assert {k for k in keys if k.startswith("GITEA_DEPLOY_")} - documented <= {
        "GITEA_DEPLOY_SOURCE", "GITEA_DEPLOY_REGION"}  # inventories/prod.py's own
    assert {"GITEA_DEPLOY_NOTIFY_COMMAND", "GITEA_DEPLOY_NOTIFY_URL"} <= keys


def test_notify_takes_the_result_systemd_hands_an_on_failure_unit(listener):
    env = {"GITEA_DEPLOY_NOTIFY_URL": listener.url, "MONITOR_SERVICE_RESULT": "timeout",
           "MONITOR_INVOCATION_ID": "0123456789abcdef0123456789abcdef"}
    assert redeploy.notify("gitea-deploy-redeploy.service", env=env) == 0
    body = listener.received[0]["body"]
    assert body["result"] == "timeout" and "(result: timeout)" in body["text"]
