"""The drift command (tasks/drift/): its exit codes, what it reads from pyinfra and the probe, and,
end to end against pyinfra's @local connector with a small deploy of its own, that it names what
would change, changes nothing and says when it cannot tell. No Docker, no lab."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tasks import drift
from tasks.drift import evaluate


def report(host: str, status: str, *changes: str) -> dict:
    return {"host": host, "status": status, "operations": 10, "error": None,
            "changes": [{"name": name, "because": [], "commands": [], "diff": [], "definite": True}
                        for name in changes]}


# --- exit codes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("statuses", "code"), [
    (["match"], 0),
    (["match", "match"], 0),
    (["drift"], 1),
    (["match", "drift"], 1),
    (["unknown"], 2),
    (["drift", "unknown"], 2),  # one host could not be told: the inventory as a whole could not
    ([], 2),
])
def test_exit_code(statuses, code):
    hosts = {f"h{i}": report(f"h{i}", status) for i, status in enumerate(statuses)}
    assert drift.exit_code(hosts) == code


CONNECT_FAILED = """--> Loading config...
--> Loading inventory...
--> Connecting to hosts...
    Failed to load host keys from /root/.ssh/known_hosts: [Errno 2] No such file or directory
    [127.0.0.1] Could not connect ([Errno None] Unable to connect to port 9 on 127.0.0.1)

--> Disconnecting from hosts...
--> pyinfra error: No hosts remaining!
"""
BAD_INVENTORY = """--> Loading config...
--> Loading inventory...
--> pyinfra error in inventories/prod.py line 40: gitea_doman: unknown key (did you mean gitea_domain?)
"""


SETTINGS_ERROR = """--> Preparing operation files...
    Loading: deploy.py
--> pyinfra error in deploy.py line 21: invalid inventory data for host gitea-1:
    gitea_domain: 'bad domain' is not a valid fully qualified domain name (e.g. git.example.com)
    acme_email: is required (ACME account e-mail (expiry notices).)

--> Disconnecting from hosts...
"""


def test_failure_reason_names_what_pyinfra_said():
    reason = drift.failure_reason(SETTINGS_ERROR)
    assert reason.splitlines() == [
        "--> pyinfra error in deploy.py line 21: invalid inventory data for host gitea-1:",
        "gitea_domain: 'bad domain' is not a valid fully qualified domain name (e.g. git.example.com)",
        "acme_email: is required (ACME account e-mail (expiry notices).)"]
    reason = drift.failure_reason(CONNECT_FAILED)
    assert "Failed to load host keys" not in reason
    assert "Could not connect" in reason and "No hosts remaining" in reason
    assert "Loading config" not in reason and "Disconnecting" not in reason
    assert "gitea_doman: unknown key" in drift.failure_reason(BAD_INVENTORY)
    assert drift.failure_reason("") == "pyinfra printed nothing"
    assert drift.failure_reason("just\nsome\nlines\n", limit=2) == "some\nlines"


def test_no_summary_means_pyinfra_stopped_before_any_host_was_probed():
    hosts = drift.verdicts(None, {}, 1, BAD_INVENTORY)
    assert drift.exit_code(hosts) == 2
    assert "gitea_doman" in hosts["(inventory)"]["error"]


def test_a_targeted_host_without_a_report_could_not_be_told():
    summary = {"targeted": ["a", "b"], "failed": ["b"]}
    hosts = drift.verdicts(summary, {"a": report("a", "match")}, 1, CONNECT_FAILED)
    assert hosts["a"]["status"] == "unknown"  # pyinfra exited 1: something failed that a match did not see
    assert hosts["b"]["status"] == "unknown" and "Could not connect" in hosts["b"]["error"]
    assert drift.exit_code(hosts) == 2


def test_a_failed_exit_keeps_a_definite_drift_but_not_a_match():
    summary = {"targeted": ["a", "b"], "failed": []}
    hosts = drift.verdicts(summary, {"a": report("a", "drift", "x"), "b": report("b", "match")}, 1, "boom")
    assert hosts["a"]["status"] == "drift"
    assert hosts["b"]["status"] == "unknown" and "pyinfra exited 1" in hosts["b"]["error"]


def test_an_empty_limit_is_not_a_match():
    hosts = drift.verdicts({"targeted": [], "failed": []}, {}, 0, "")
    assert drift.exit_code(hosts) == 2


def test_read_reports(tmp_path):
    assert drift.read_reports(tmp_path) == (None, {})
    (tmp_path / drift.SUMMARY).write_text(json.dumps({"targeted": ["a"], "failed": []}))
    (tmp_path / "a.json").write_text(json.dumps(report("a", "drift", "Base system | Reload sshd")))
    summary, reports = drift.read_reports(tmp_path)
    assert summary == {"targeted": ["a"], "failed": []}
    assert reports["a"]["changes"][0]["name"] == "Base system | Reload sshd"


def test_render_names_each_change_and_why():
    stack = "Gitea stack | Start the stack (pulls missing images, then waits up to 300 s for healthy)"
    change = {"name": stack, "because": ["StaleServices(...) = ['gitea']"],
              "commands": ["docker compose -f /srv/gitea/compose.yaml up -d"], "diff": ["--- a", "+++ b"],
              "follows": None}
    text = drift.render({"h": {"host": "h", "status": "drift", "operations": 80, "changes": [change]},
                         "m": report("m", "match")}, seconds=2.5)
    assert "h: DRIFTED: 1 of 80 operations would change" in text
    assert f"  ~ {stack}" in text
    assert "because StaleServices(...) = ['gitea']" in text
    assert "runs: docker compose" in text and "--- a" in text
    assert "m: matches the deploy" in text and "(drift check took 2.5 s)" in text


def test_parse_args():
    assert drift.parse_args(["inventories/prod.py"]) == {"inventory": "inventories/prod.py", "limits": [],
                                                         "data": [], "json": False, "wait": drift.LOCK_WAIT}
    parsed = drift.parse_args(["inventories/lab.py", "--limit", "h1", "--data", "a=b", "--json", "--wait", "0"])
    assert parsed["limits"] == ["h1"] and parsed["data"] == ["a=b"] and parsed["json"] and parsed["wait"] == 0
    for bad in ([], ["--limit"], ["a.py", "b.py"], ["--yes", "a.py"], ["a.py", "--wait", "soon"],
                ["a.py", "--wait", "-1"], ["a.py", "--wait"]):
        with pytest.raises(ValueError):
            drift.parse_args(bad)


def test_the_pyinfra_run_executes_nothing():
    argv = drift.pyinfra_argv("inventories/prod.py", ["h"], ["k=v"], python="py")
    assert argv[:5] == ["py", "-m", "pyinfra", "--dry", "-y"]
    assert argv[5:8] == ["inventories/prod.py", "deploy.py", "tasks/drift/probe.py"]
    assert argv[8:] == ["--limit", "h", "--data", "k=v"]


def test_inventory_path():
    assert drift.inventory_path("inventories/prod.py") == "inventories/prod.py"
    assert drift.inventory_path("inventories/nope.py") is None
    assert drift.inventory_path("some-host.example.com") is None  # pyinfra would take it for a host


# --- the probe's pieces ---------------------------------------------------------------------------

def test_a_condition_on_an_earlier_ops_result_reads_that_ops_verdict():
    from pyinfra.api.operation import OperationMeta

    earlier = OperationMeta("hash-1", is_change=None)
    names = {"hash-1": "Certbot | drop-in"}
    assert evaluate.condition_holds(earlier.did_change, {"hash-1": True}, names) == (True, "Certbot | drop-in")
    assert evaluate.condition_holds(earlier.did_change, {"hash-1": False}, names)[0] is False
    assert evaluate.condition_holds(earlier.did_not_change, {"hash-1": False}, names)[0] is True
    assert evaluate.condition_holds(lambda: 0, {}, names) == (False, None)


def test_commands_are_masked_and_short():
    from pyinfra.api.command import FileUploadCommand, MaskString, StringCommand

    lines = evaluate.command_lines([StringCommand("echo", MaskString("s3cret"), "| login"),
                                    FileUploadCommand("/tmp/x", "/etc/x"),
                                    StringCommand("set -e\n" + "x" * 500)])
    assert lines[0] == "echo *MASKED* | login"
    assert lines[1] == "write /etc/x"
    assert lines[2].startswith("set -e; x") and len(lines[2]) <= evaluate.COMMAND_CHARS
    assert len(evaluate.command_lines([StringCommand("true")] * 5)) == evaluate.COMMANDS_SHOWN + 1


@pytest.mark.parametrize(("mode", "private"), [(644, False), ("755", False), (600, True), ("0440", True),
                                               (None, False)])
def test_private_mode(mode, private):
    assert evaluate.private_mode(mode) is private


def test_unified_diff():
    assert evaluate.unified(None, ["a"], "live", "want") == ["live: missing"]
    assert evaluate.unified(["a\n"], ["a"], "live", "want") == []
    diff = evaluate.unified(["a\n", "b\n"], ["a", "c"], "live", "want")
    assert diff[:2] == ["--- live", "+++ want"] and "-b" in diff and "+c" in diff


# --- end to end: pyinfra's @local connector, a small deploy, no sudo --------------------------------

MINI_DEPLOY = """
import os
from io import StringIO
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server

ROOT = os.environ["DRIFT_TEST_ROOT"]

@deploy("Mini")
def mini():
    put = files.put(name="Managed file", src=StringIO("wanted\\nline two\\n"), dest=f"{ROOT}/managed.txt", mode="644")
    server.shell(name="Follow-up of the managed file", commands=[f"touch {ROOT}/followed"], _if=put.did_change)
    server.shell(name="Flag once", commands=[f"touch {ROOT}/flag"],
                 _if=lambda: not host.get_fact(File, path=f"{ROOT}/flag"))

mini()
"""


@pytest.fixture
def mini(tmp_path):
    root = tmp_path / "host"
    root.mkdir()
    (tmp_path / "local.py").write_text('hosts = ["@local"]\n')
    (tmp_path / "mini_deploy.py").write_text(MINI_DEPLOY)

    def run(inventory: str = "local.py", **kwargs):
        return drift.check(str(tmp_path / inventory), data=["_sudo=False"], deploy=str(tmp_path / "mini_deploy.py"),
                           env={"DRIFT_TEST_ROOT": str(root), "GITEA_DEPLOY_LOCK_FILE": str(tmp_path / "lock")},
                           **kwargs)
    return root, run


def test_end_to_end_drift_then_match(mini):
    root, run = mini
    code, hosts, _, log = run()
    assert code == 1, log
    changes = {c["name"]: c for c in hosts["@local"]["changes"]}
    assert set(changes) == {"Mini | Managed file", "Mini | Follow-up of the managed file", "Mini | Flag once"}
    assert changes["Mini | Follow-up of the managed file"]["follows"] == "Mini | Managed file would change"
    assert any("File(path=" in line and "= None" in line for line in changes["Mini | Flag once"]["because"])
    assert sorted(os.listdir(root)) == []  # nothing was written

    (root / "managed.txt").write_text("by hand\nline two\n")
    (root / "managed.txt").chmod(0o644)
    (root / "flag").touch()
    code, hosts, _, log = run()
    assert code == 1, log
    change, follow_up = hosts["@local"]["changes"]
    assert change["name"] == "Mini | Managed file" and follow_up["name"] == "Mini | Follow-up of the managed file"
    assert "-by hand" in change["diff"] and "+wanted" in change["diff"]
    assert (root / "managed.txt").read_text() == "by hand\nline two\n"

    (root / "managed.txt").write_text("wanted\nline two\n")
    code, hosts, _, log = run()
    assert code == 0, (hosts, log)
    assert hosts["@local"]["status"] == "match" and hosts["@local"]["operations"] == 3
    assert "matches the deploy" in drift.render(hosts)


def test_end_to_end_unreachable_host(mini, tmp_path):
    _, run = mini
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the socket is: connection refused
    (tmp_path / "closed.py").write_text(f'hosts = [("127.0.0.1", {{"ssh_port": {port}, "ssh_user": "admin"}})]\n')
    code, hosts, _, _ = run("closed.py")
    assert code == 2
    assert "Could not connect" in hosts["(inventory)"]["error"]


def test_end_to_end_bad_inventory(mini, tmp_path):
    _, run = mini
    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        from tasks.settings import SettingsError
        raise SettingsError("gitea_doman: unknown key (did you mean gitea_domain?)")
    """))
    code, hosts, _, _ = run("bad.py")
    assert code == 2 and "gitea_doman: unknown key" in hosts["(inventory)"]["error"]
    code, hosts, _, _ = run("missing.py")
    assert code == 2 and "no such inventory file" in hosts["(inventory)"]["error"]


def test_the_probe_refuses_to_run_outside_the_drift_command():
    text = Path(drift.REPO / drift.PROBE).read_text()
    assert "REPORT_DIR_ENV" in text and "raise PyinfraError" in text


def test_a_report_for_any_host_name(tmp_path):
    """write_report's files are read back by name inside: a connector name with a slash is fine."""
    class Host:
        name = "@docker/abc"
        op_hash_order: list = []

    class State:
        inventory = [Host()]
        failed_hosts: set = set()

        def is_host_in_limit(self, host):
            return True

    assert evaluate.write_report(State(), State.inventory[0], tmp_path)["status"] == "match"
    summary, reports = drift.read_reports(tmp_path)
    assert summary == {"targeted": ["@docker/abc"], "failed": []}
    assert reports["@docker/abc"]["operations"] == 0
    assert drift.exit_code(drift.verdicts(summary, reports, 0, "")) == 0


def test_a_running_system_check_asked_concurrently_is_shown_as_its_own_fact(monkeypatch):
    """tasks/snapshot.py answers the running-system checks from one Concurrently look; the report
    names the fact that decided (StaleServices and the stale service), not the combined command."""
    from tasks import snapshot
    from tasks.gitea import StaleServices

    monkeypatch.setattr(snapshot, "_registry", {})
    snapshot.register("system", (StaleServices, (("config_cmd", "config"), ("ps_cmd", "ps"))))
    lines = evaluate.fact_lines(snapshot.Concurrently, {"commands": ("config; ps",)},
                                {0: ["want db 1", "want gitea 2", "have db 1"]})
    assert lines == ["StaleServices(config_cmd=config, ps_cmd=ps) = ['gitea']"]


# --- the redeploy's lock --------------------------------------------------------------------------

def hold_lock(path: Path, seconds: float = 120) -> subprocess.Popen:
    """Another process holding the lock as a scheduled redeploy holds it (an exclusive flock(2) on
    the file, its holder written in it), for `seconds`."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid %d on ctl since 2026-12-03T10:00:00Z' % os.getpid()); "
            "print('held', flush=True); time.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


@pytest.fixture
def listener():
    """A TCP port on 127.0.0.1 that keeps every connection made to it: the inventory's host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_a_drift_check_during_a_redeploy_could_not_tell_and_touches_no_host(tmp_path, listener):
    lock = tmp_path / "redeploy.lock"
    inventory = tmp_path / "bogus.py"
    inventory.write_text(f'hosts = [("127.0.0.1", {{"ssh_port": {listener.getsockname()[1]}, "ssh_user": "admin"}})]\n')
    holder = hold_lock(lock)
    try:
        run = subprocess.run([sys.executable, "-m", "tasks.drift", str(inventory), "--wait", "0"], cwd=drift.REPO,
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "GITEA_DEPLOY_LOCK_FILE": str(lock)})
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == drift.UNKNOWN, run.stdout + run.stderr
    assert f"COULD NOT TELL: a redeploy is running (lock {lock} held by pid {holder.pid} on ctl" in run.stdout
    assert connections(listener) == 0  # pyinfra never ran: no host was asked anything


def test_a_drift_check_waits_a_bounded_time_for_a_redeploy(mini, tmp_path):
    root, run = mini
    holder = hold_lock(tmp_path / "lock", seconds=1)  # a redeploy that ends in a second
    started = time.monotonic()
    code, hosts, _, log = run(wait=30)
    holder.wait()
    assert code == 1 and time.monotonic() - started >= 0.9, (hosts, log)  # waited, then told
    holder = hold_lock(tmp_path / "lock")
    try:
        started = time.monotonic()
        code, hosts, _, _ = run(wait=0.5)
        assert code == 2 and time.monotonic() - started >= 0.5
        assert "a redeploy is running" in hosts["(inventory)"]["error"] and "waited 0.5 s" in hosts["(inventory)"]["error"]
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(root)) == []


def test_the_redeploy_and_the_drift_check_share_one_lock(tmp_path, monkeypatch, capsys):
    """One definition (schedule/lock.py): the same file by default and under GITEA_DEPLOY_LOCK_FILE,
    and a drift check in progress holds off a scheduled run as another run would (exit 75)."""
    from schedule import lock as shared
    from schedule import redeploy

    assert redeploy.lock_path is shared.lock_path and drift.lock_path is shared.lock_path
    assert shared.lock_path({}) == drift.REPO / ".redeploy.lock"
    mine = shared.Lock(shared.lock_path({"GITEA_DEPLOY_LOCK_FILE": str(tmp_path / "lock")}), "drift check")
    assert mine.acquire()
    try:
        monkeypatch.setattr(redeploy, "run_steps", lambda *args: pytest.fail("a step ran under a held lock"))
        assert redeploy.run({"GITEA_DEPLOY_LOCK_FILE": str(tmp_path / "lock")}) == redeploy.EXIT_LOCKED
        assert "drift check" in capsys.readouterr().out
    finally:
        mine.release()


def test_a_released_lock_names_no_holder(tmp_path):
    """flock(1) by hand writes nothing in the file: what a released lock wrote must not be shown as
    the hand run's holder."""
    from schedule.lock import Lock

    mine = Lock(tmp_path / "lock", "drift check")
    assert mine.acquire() and "drift check" in mine.holder()
    mine.release()
    hand = os.open(tmp_path / "lock", os.O_RDONLY)
    fcntl.flock(hand, fcntl.LOCK_EX)  # as `flock FILE pyinfra ...` does
    try:
        assert not Lock(tmp_path / "lock").acquire()
        assert Lock(tmp_path / "lock").holder() == "unknown"
    finally:
        os.close(hand)
