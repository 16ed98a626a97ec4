"""End to end on a fresh lab host: deploy → host checks → zero-change redeploy → drift undone →
a killed deploy is finished by the next → a failed deploy leaves the service up → broken nginx
and sshd configs never go live, not even across a reboot → reboot → healthy again → destroy.

The steps share one host and run in file order; each asserts what an operator would look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import api
from lab.config import NETWORK
from lab.converge import INVENTORY, REPO, deploy, host_checks
from tests.unit.test_fake_deploy import STAGES

pytestmark = pytest.mark.lab

# GITEA_LAB_E2E_HOST names another host, to run this module beside a suite that uses this one.
NAME = os.environ.get("GITEA_LAB_E2E_HOST", "gitea-lab-e2e")


@pytest.fixture(scope="module")
def lab_host(lab_engine):
    api.down([NAME])  # a stale host from an earlier, interrupted run
    api.up([NAME])
    yield api.state()["hosts"][NAME]
    api.down([NAME])


@pytest.fixture(scope="module")
def issuing_ca(lab_host, tmp_path_factory) -> str:
    """The ACME root current when the certificate is issued (first used before the fresh deploy).
    Pebble makes a new root at every reboot and the deploy keeps its certificate, so the served
    chain verifies against this root, not against the root of the moment."""
    path = tmp_path_factory.mktemp("ca") / "issuing-root.pem"
    path.write_text(api.pebble_root(NAME))
    return str(path)


def healthz(ip: str, ca: str) -> str:
    """Gitea's health as a user sees it: through nginx, TLS verified against the lab CA."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((ip, 443), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="git.lab.test") as tls:
        tls.sendall(b"GET /api/healthz HTTP/1.1\r\nHost: git.lab.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])["status"]


def host_ip() -> str:
    """The host's address now: a reboot may give it another one on the lab bridge (Docker
    assigns addresses at start, and other lab hosts may have been created meanwhile)."""
    return api.state()["hosts"][NAME]["ip"]


def wait_healthy(ip: str, ca: str, seconds: int = 240) -> float:
    started = time.monotonic()
    last = None
    for _ in range(seconds // 3):
        try:
            if healthz(ip, ca) == "pass":
                return time.monotonic() - started
        except (OSError, ValueError, ssl.SSLError) as error:
            last = error
        time.sleep(3)
    raise AssertionError(f"not healthy within {seconds} s: {last}")


def test_fresh_deploy(lab_host, issuing_ca):
    result = deploy(NAME)
    print(f"fresh deploy: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-4000:]
    assert result["totals"]["error"] == 0
    assert result["totals"]["success"] > 20
    # What an operator following the run sees: each stage as it starts, in deploy order, and the
    # long steps with what they wait for and their bound.
    started = re.findall(r"^--> Starting operation: (.+?) \| (.+?) ?$", result["log"], re.M)
    assert list(dict.fromkeys(stage for stage, _ in started)) == STAGES
    ops = [op for _, op in started]
    assert any(op.startswith("Start the stack (pulls missing images, then waits up to ") for op in ops), ops
    assert any(op.startswith("TLS certificate | Obtain the certificate") and "at most" in op for op in ops), ops


def test_host_checks_pass(lab_host):
    checks = host_checks(NAME, "-rs")
    print(checks.stdout[-3000:])
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    assert " passed" in checks.stdout and "skipped" not in checks.stdout


def test_rendered_nginx_templates_pass_nginx_t(lab_host):
    """The templates, rendered with non-default values, checked by the nginx production runs
    (Debian 13's; the runner's older nginx does not know `http2 on;`)."""
    from tests.unit.render import context, render_with, sample_data

    data = sample_data(gitea_domain="code.example.org", gitea_http_port=3999, nginx_client_max_body_size="2G")

    def rendered(name: str, **where) -> str:  # the task's own context, its paths moved to /tmp/nginx-t
        return render_with(f"nginx/{name}.j2", data, {**context(f"nginx/{name}.j2", data), **where})

    files = {
        "gitea-http.conf": rendered("gitea-http.conf"),
        "gitea-https.conf": rendered("gitea-https.conf", cert_dir="/tmp/nginx-t", tls_snippet="/tmp/nginx-t/tls.conf"),
        "tls.conf": rendered("gitea-tls.conf"),
        "nginx.conf": "events {}\nhttp { include /tmp/nginx-t/gitea-http.conf; include /tmp/nginx-t/gitea-https.conf; }\n",
    }
    script = "set -e; rm -rf /tmp/nginx-t; mkdir -p /tmp/nginx-t\n"
    for name, text in files.items():
        script += f"cat > /tmp/nginx-t/{name} <<'EOF_{name}'\n{text}\nEOF_{name}\n"
    script += ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
               "-subj /CN=code.example.org -keyout /tmp/nginx-t/privkey.pem -out /tmp/nginx-t/fullchain.pem 2>/dev/null\n"
               "nginx -t -c /tmp/nginx-t/nginx.conf -g 'pid /tmp/nginx-t/pid;' 2>&1; rm -rf /tmp/nginx-t\n")
    out = api.exec(NAME, script).stdout
    assert "syntax is ok" in out and "test is successful" in out, out


def test_second_deploy_reports_zero_changes(lab_host):
    result = deploy(NAME)
    print(f"second deploy: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-4000:]
    assert result["totals"]["success"] == 0, changed_ops(result)
    assert result["totals"]["error"] == 0


def test_redeploy_undoes_drift(lab_host, issuing_ca):
    # ... and a run killed after it installed the sshd drop-in, before the reload: installing
    # removes the reload marker first, so its absence is exactly what such a run leaves.
    api.exec(NAME, "docker stop gitea-gitea-1 && rm /etc/nginx/conf.d/gitea-http.conf "
                   "/var/lib/gitea-deploy/applied/sshd.sha256", check=True)
    result = deploy(NAME)
    assert result["returncode"] == 0, result["log"][-4000:]
    changed = {op["name"] for op in result["operations"] if op["success"]}
    assert any("Start the stack" in name for name in changed), changed
    assert any("gitea-http.conf" in name for name in changed), changed
    assert any("Reload nginx" in name for name in changed), changed
    assert any("Reload sshd" in name for name in changed), changed
    assert wait_healthy(host_ip(), issuing_ca, seconds=60) >= 0


def sh(script: str) -> str:
    """Run a shell script as root in the host; its stdout (it must succeed)."""
    return api.exec(NAME, script, check=True).stdout


def gitea_env() -> dict[str, str]:
    out = sh("docker inspect gitea-gitea-1 --format '{{range .Config.Env}}{{println .}}{{end}}'")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def changed_ops(result: dict) -> set[str]:
    return {op["name"] for op in result.get("operations", []) if op["success"]}


def hold(binary: str, pattern: str) -> str:
    """A stand-in for /usr/bin/<binary> (sudo's secure_path puts /usr/local/sbin first): it holds
    every call whose arguments contain `pattern` until the test kills it, and passes every other
    call (the facts, the rest of the deploy) through."""
    return f"""cat > /usr/local/sbin/{binary} <<'HOLD'
#!/bin/sh
# tests/lab/test_deploy.py: hold this call so the deploy can be killed in front of it
case " $* " in *"{pattern}"*) echo $$ > /run/test-held; while :; do sleep 1; done ;; esac
exec /usr/bin/{binary} "$@"
HOLD
chmod 755 /usr/local/sbin/{binary}"""


def release(binary: str) -> str:
    return (f"rm -f /usr/local/sbin/{binary}; "
            'if [ -s /run/test-held ]; then kill -KILL "$(cat /run/test-held)" 2>/dev/null || true; fi; '
            "rm -f /run/test-held")


def killed_deploy(log: Path, binary: str, pattern: str, *extra: str) -> None:
    """Run the deploy with `extra` and SIGKILL it while the host holds its `binary ... pattern`
    call. Deterministic rather than racing: the kill always lands after everything before that
    call and before the call itself. (Racing a file watcher against pyinfra would often let the
    remote command, which outlives its SSH channel, finish anyway.)"""
    sh(hold(binary, pattern))
    try:
        with open(log, "w") as out:
            run = subprocess.Popen([sys.executable, "-m", "pyinfra", "-y", "--json", INVENTORY, "deploy.py",
                                    "--limit", NAME, *extra],
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                for _ in range(300):  # bounded at ~5 min
                    if run.poll() is not None or api.exec(NAME, "test -s /run/test-held").returncode == 0:
                        break
                    time.sleep(1)
                assert run.poll() is None, f"the deploy ended before the held call:\n{log.read_text()[-4000:]}"
                assert api.exec(NAME, "test -s /run/test-held").returncode == 0, "the held call never came"
            finally:
                if run.poll() is None:
                    os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=30)
    finally:
        sh(release(binary))
    assert run.returncode == -signal.SIGKILL


def test_killed_deploy_is_finished_by_the_next(lab_host, tmp_path):
    """pyinfra SIGKILLed after it wrote a changed compose file and before `up` ran: the next
    deploy of the same inventory recreates Gitea from that file, and the one after changes nothing.
    The value changed is the site title: it reaches only the compose file. The host keeps this
    title; the next test's final deploy converges it back."""
    title = "Gitea after a killed deploy"
    assert gitea_env().get("GITEA____APP_NAME") != title
    killed_deploy(tmp_path / "killed-deploy.log", "docker", " up ", "--data", f"gitea_app_name={title}")
    # What the kill left: the file has the new title, the running Gitea the old one.
    assert title in sh("cat /srv/gitea/compose.yaml")
    assert gitea_env().get("GITEA____APP_NAME") != title

    result = deploy(NAME, "--data", f"gitea_app_name={title}")
    print(f"deploy after the kill: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-4000:]
    assert any("Start the stack" in name for name in changed_ops(result)), changed_ops(result)
    assert gitea_env()["GITEA____APP_NAME"] == title
    want = sh("docker compose -f /srv/gitea/compose.yaml config --hash gitea").split()[1]
    label = sh("docker inspect gitea-gitea-1 --format '{{index .Config.Labels \"com.docker.compose.config-hash\"}}'")
    assert label.strip() == want

    again = deploy(NAME, "--data", f"gitea_app_name={title}")
    print(f"and the next: {again['totals']} in {again['seconds']:.0f} s")
    assert again["returncode"] == 0, again["log"][-4000:]
    assert again["totals"]["success"] == 0, changed_ops(again)


def admin_logs_in() -> None:
    """The admin's key through the published admin port, the way pyinfra comes in."""
    from tests.lab.test_sshd import login, with_key

    host = api.state()["hosts"][NAME]
    login(host, "admin", **with_key(host)).close()


def test_deploy_killed_in_the_firewall_stage_keeps_the_admin_and_is_finished(lab_host, tmp_path):
    """Killed after it installed new rules (the admin port only from the operator's network) and
    before they were loaded: the kernel keeps the old ones, the admin still gets in, and the next
    deploy loads the new ones; the one after changes nothing. The default rules come back last."""
    gateway = json.loads(subprocess.run(["docker", "network", "inspect", NETWORK], capture_output=True, text=True,
                                        check=True).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    only_operator = ("--data", f"admin_cidrs={json.dumps([f'{gateway}/32'])}")
    killed_deploy(tmp_path / "killed-firewall.log", "systemctl", " reload-or-restart gitea-deploy-firewall",
                  *only_operator)
    assert gateway in sh("cat /etc/gitea-deploy/firewall.nft")
    assert gateway not in sh("nft list table inet gitea_deploy")  # installed, not loaded
    admin_logs_in()

    try:
        result = deploy(NAME, *only_operator)
        assert result["returncode"] == 0, result["log"][-4000:]
        assert any("Load the firewall rules" in name for name in changed_ops(result)), changed_ops(result)
        assert gateway in sh("nft list table inet gitea_deploy")
        admin_logs_in()
        again = deploy(NAME, *only_operator)
        assert again["returncode"] == 0 and again["totals"]["success"] == 0, changed_ops(again)
    finally:
        restored = deploy(NAME)
    assert restored["returncode"] == 0, restored["log"][-4000:]
    assert gateway not in sh("nft list table inet gitea_deploy")


def test_failed_deploy_leaves_service_running(lab_host, issuing_ca):
    """An image that cannot be pulled fails the deploy; the running stack is untouched."""
    bad = api.state()["images"]["gitea"].rsplit(":", 1)[0] + ":0.0.0-missing"
    result = deploy(NAME, "--data", f"gitea_image={bad}")
    assert result["returncode"] != 0
    assert healthz(host_ip(), issuing_ca) == "pass"
    # and the next deploy of the real inventory converges back
    assert deploy(NAME)["returncode"] == 0
    again = deploy(NAME)
    assert again["totals"]["success"] == 0, changed_ops(again)


LIVE_CONFIGS = ("/etc/ssh/sshd_config.d/gitea-deploy.conf /etc/nginx/conf.d/gitea-http.conf "
                "/etc/nginx/conf.d/gitea-https.conf /etc/nginx/snippets/gitea-tls.conf /etc/docker/daemon.json")


def repo_copy(where: Path) -> Path:
    """This working tree's files (tracked and new, not ignored) in `where`, with the lab's state
    reachable: inventories/lab.py reads .lab/ next to itself."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, where / name)
    (where / ".lab").symlink_to(REPO / ".lab")
    return where


def deploy_from(copy: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyinfra", "-y", "--json", INVENTORY, "deploy.py",
                           "--limit", NAME], cwd=copy, capture_output=True, text=True, timeout=900)


def serving(ip: str, ca: str) -> None:
    """nginx and sshd run, the admin logs in with the lab key, Gitea is healthy through nginx."""
    assert sh("systemctl is-active ssh nginx").split() == ["active", "active"]
    login = subprocess.run(api.ssh_command(NAME, "sudo", "-n", "true"), capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
    assert login.returncode == 0, login.stderr
    assert healthz(ip, ca) == "pass"


def test_invalid_configs_never_go_live(lab_host, issuing_ca, tmp_path):
    """A template that renders a config sshd or nginx rejects fails the deploy with the
    validator's message; the live files stay byte for byte what they were, so the running daemons,
    a reboot and the admin's login are untouched; the next good deploy converges back."""
    copy = repo_copy(tmp_path / "repo")
    before = sh(f"sha256sum {LIVE_CONFIGS}")
    cases = [
        ("templates/ssh/gitea-deploy.conf.j2", "NoSuchKeyword yes\n", "Bad configuration option: NoSuchKeyword"),
        ("templates/nginx/gitea-https.conf.j2", "no_such_directive on;\n", 'unknown directive "no_such_directive"'),
    ]
    for template, bad_line, message in cases:
        path = copy / template
        good = path.read_text()
        path.write_text(good + bad_line)
        try:
            result = deploy_from(copy)
        finally:
            path.write_text(good)
        assert result.returncode != 0, f"{template}: the deploy accepted an invalid config"
        assert message in result.stderr, result.stderr[-4000:]
        assert sh(f"sha256sum {LIVE_CONFIGS}") == before, f"{template}: a live config changed"
        serving(host_ip(), issuing_ca)
    # What a reboot or a package upgrade would load passes the validators.
    sh("sshd -t && nginx -t -q && dockerd --validate --config-file /etc/docker/daemon.json")

    api.reboot(NAME)
    print(f"healthy {wait_healthy(host_ip(), issuing_ca):.0f} s after the reboot")
    serving(host_ip(), issuing_ca)
    assert sh(f"sha256sum {LIVE_CONFIGS}") == before

    result = deploy(NAME)  # the real templates (the emulated AWS lost its state in the reboot)
    print(f"deploy after the reboot: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-4000:]
    again = deploy(NAME)
    assert again["returncode"] == 0 and again["totals"]["success"] == 0, changed_ops(again)
    assert sh(f"sha256sum {LIVE_CONFIGS}") == before


# What a boot must bring back by itself, with no deploy after it: every host check (the firewall
# and what answers from outside, fail2ban's jails, the kernel settings, the confined stack, nginx
# and TLS, monitoring) but the backups': their emulated S3 and SSM (moto, a sidecar) lose their
# state at a reboot, which real ones do not.
BOOT_CHECKS = "not test_backup"


def test_reboot_comes_back_healthy_and_locked_down_without_a_manual_step(lab_host, issuing_ca):
    from tests.lab.test_firewall import from_outside

    api.reboot(NAME)
    seconds = wait_healthy(host_ip(), issuing_ca)
    print(f"healthy {seconds:.0f} s after the host was back")
    checks = host_checks(NAME, "-k", BOOT_CHECKS, "--tls-ca", issuing_ca)  # the chain's root, not pebble's new one
    print(checks.stdout[-1500:])
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    public = {22, 80, 443, int(lab_host["admin_ssh_port"])}
    assert from_outside(host_ip(), public | {3000, 5432, 9100}) == public


def test_destroy(lab_host):
    api.down([NAME])
    assert NAME not in api.state().get("hosts", {})
    assert subprocess.run(["docker", "inspect", NAME], capture_output=True).returncode != 0
