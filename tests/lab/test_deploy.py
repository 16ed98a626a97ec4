"""End to end on a fresh lab host: deploy → host checks → zero-change redeploy → drift undone →
a failed deploy leaves the service up → reboot → healthy again → destroy.

The steps share one host and run in file order; each asserts what an operator would look at.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time

import pytest

from lab import api
from lab.converge import deploy, host_checks, root_ca_file

pytestmark = pytest.mark.lab

NAME = "gitea-lab-e2e"


@pytest.fixture(scope="module")
def lab_host(lab_engine):
    api.down([NAME])  # a stale host from an earlier, interrupted run
    api.up([NAME])
    yield api.state()["hosts"][NAME]
    api.down([NAME])


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


def test_fresh_deploy(lab_host):
    result = deploy(NAME)
    print(f"fresh deploy: {result['totals']} in {result['seconds']:.0f} s")
    assert result["returncode"] == 0, result["log"][-4000:]
    assert result["totals"]["error"] == 0
    assert result["totals"]["success"] > 20


def test_host_checks_pass(lab_host):
    checks = host_checks(NAME, "-rs")
    print(checks.stdout[-3000:])
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    assert " passed" in checks.stdout and "skipped" not in checks.stdout


def test_rendered_nginx_templates_pass_nginx_t(lab_host):
    """The templates, rendered with non-default values, checked by the nginx production runs
    (Debian 13's; the runner's older nginx does not know `http2 on;`)."""
    from tests.unit.render import render

    values = {"gitea_domain": "code.example.org", "gitea_http_port": 3999,
              "nginx_client_max_body_size": "2G"}
    files = {
        "gitea-http.conf": render("nginx/gitea-http.conf.j2", webroot="/var/www/letsencrypt", **values),
        "gitea-https.conf": render("nginx/gitea-https.conf.j2", cert_dir="/tmp/nginx-t",
                                   tls_snippet="/tmp/nginx-t/tls.conf", **values),
        "tls.conf": render("nginx/gitea-tls.conf.j2"),
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
    assert result["totals"]["success"] == 0
    assert result["totals"]["error"] == 0


def test_redeploy_undoes_drift(lab_host):
    api.exec(NAME, "docker stop gitea-gitea-1 && rm /etc/nginx/conf.d/gitea-http.conf", check=True)
    result = deploy(NAME)
    assert result["returncode"] == 0, result["log"][-4000:]
    changed = {op["name"] for op in result["operations"] if op["success"]}
    assert any("Start the stack" in name for name in changed), changed
    assert any("gitea-http.conf" in name for name in changed), changed
    assert wait_healthy(lab_host["ip"], str(root_ca_file(NAME)), seconds=60) >= 0


def test_failed_deploy_leaves_service_running(lab_host):
    """An image that cannot be pulled fails the deploy; the running stack is untouched."""
    bad = api.state()["images"]["gitea"].rsplit(":", 1)[0] + ":0.0.0-missing"
    result = deploy(NAME, "--data", f"gitea_image={bad}")
    assert result["returncode"] != 0
    assert healthz(lab_host["ip"], str(root_ca_file(NAME))) == "pass"
    # and the next deploy of the real inventory converges back
    assert deploy(NAME)["returncode"] == 0
    assert deploy(NAME)["totals"]["success"] == 0


def test_reboot_comes_back_healthy_without_a_manual_step(lab_host):
    ca = str(root_ca_file(NAME))  # the chain was issued by the root that was current at deploy
    api.reboot(NAME)
    seconds = wait_healthy(lab_host["ip"], ca)
    print(f"healthy {seconds:.0f} s after the host was back")


def test_destroy(lab_host):
    api.down([NAME])
    assert NAME not in api.state().get("hosts", {})
    assert subprocess.run(["docker", "inspect", NAME], capture_output=True).returncode != 0
