"""fail2ban attacked as the internet would (issue 13). Each jail gets its own attacker: a container
on the lab network, with its own address, that fails to log in until it is banned. Then its next
attempt does not get through, the operator (the lab network's gateway: pyinfra's and this test's
address) still does, and after the ban time the attacker is let in again.

The jails (templates/fail2ban/jail.local.j2): the admin's sshd, git SSH (Gitea's own server, behind
Docker's DNAT: the ban is on the forward path), Gitea's sign-in form and HTTP basic auth through
nginx. Then nginx's rate limits: 429 past the burst, the health check exempt, and the client that
keeps going banned. The filters' own lines, a hostile user name included, go through
fail2ban-regex on the host.

Runs on the shared converged host with a short ban time; the module's last deploy restores it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid

import pytest

from lab import api, images, registry
from lab.config import LABEL_ROLE, NETWORK, STANDIN_GITEA_DEFAULT
from lab.converge import deploy, root_ca_file
from tasks.settings.table import defaults
from tests.lab.stack_support import backups_held, ok
from tests.lab.test_deploy import healthz
from tests.lab.test_sshd import login, with_key

pytestmark = pytest.mark.lab

BANTIME = 20
MAXRETRY = defaults("fail2ban")["fail2ban_maxretry"]
DOMAIN = "git.lab.test"

# One attempt per call from the attacker; prints what it got: "refused" (SSH), an HTTP status, or
# "unreachable" (no connection: what a ban looks like). The attacker image is the Gitea stand-in's:
# it has python3 and paramiko.
ATTEMPT = r'''
import base64, http.client, json, socket, ssl, sys
mode, ip, port, count, domain = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ctx = ssl._create_unverified_context()

def ssh(user):
    import paramiko
    try:
        sock = socket.create_connection((ip, port), timeout=4)
    except OSError:
        return "unreachable"
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=8)
        t.auth_publickey(user, paramiko.RSAKey.generate(2048))
        return "in"
    except paramiko.AuthenticationException:
        return "refused"
    except (paramiko.SSHException, OSError, EOFError):
        return "unreachable"
    finally:
        t.close()

class Conn(http.client.HTTPSConnection):
    def connect(self):
        self.sock = ctx.wrap_socket(socket.create_connection((ip, port), timeout=4), server_hostname=domain)

def https(conn, method, path, body=None, headers={}):
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        return str(r.status)
    except (OSError, http.client.HTTPException):
        return "unreachable"

out = []
conn = Conn(domain, port, context=ctx)  # one keep-alive connection, reopened after an error
for i in range(count):
    if mode == "ssh-admin":
        out.append(ssh("intruder"))
    elif mode == "ssh-git":
        out.append(ssh("git"))
    elif mode in ("web", "web-spaced"):
        name = "admin" if mode == "web" else "no+such+user"
        out.append(https(conn, "POST", "/user/login", f"user_name={name}&password=guess{i}",
                         {"Content-Type": "application/x-www-form-urlencoded"}))
    elif mode == "basic":
        auth = base64.b64encode(f"gitadmin:wrong-{i}".encode()).decode()
        out.append(https(conn, "GET", "/api/v1/user", headers={"Authorization": "Basic " + auth}))
    else:
        out.append(https(conn, "GET", mode))
    if out[-1] == "unreachable":
        conn.close()
        if mode.startswith("/"):
            break
print(json.dumps(out))
'''

# jail -> (attack mode, port on the host, what one failed attempt answers)
JAILS = {
    "sshd": ("ssh-admin", None, "refused"),
    "gitea-git-ssh": ("ssh-git", 22, "refused"),
    "gitea-web": ("web", 443, "200"),  # Gitea shows the sign-in form again
    "gitea-basic-auth": ("basic", 443, "401"),
}


def host_sh(name: str, script: str) -> str:
    cp = api.exec(name, ["bash", "-c", "set -euo pipefail\n" + script], timeout=120)
    assert cp.returncode == 0, f"{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
    return cp.stdout


def banned(name: str, jail: str) -> set[str]:
    out = host_sh(name, f"fail2ban-client status {shlex.quote(jail)}")
    line = next(line for line in out.splitlines() if "Banned IP list:" in line)
    return set(line.split(":", 1)[1].split())


def wait_for(what: str, probe, timeout: float):
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(1)
    return result


class Attacker:
    """A long-lived container on the lab network: its address is the one fail2ban sees."""

    def __init__(self, image: str, target: str):
        self.target = target
        self.name = f"gitea-lab-attacker-{uuid.uuid4().hex[:8]}"
        subprocess.run(["docker", "run", "-d", "--rm", "--name", self.name, "--label", f"{LABEL_ROLE}=test",
                        "--network", NETWORK, "--entrypoint", "sleep", image, "infinity"],
                       check=True, capture_output=True, timeout=60)
        self.ip = json.loads(subprocess.run(["docker", "inspect", self.name], check=True, capture_output=True,
                                            text=True).stdout)[0]["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]

    def attempt(self, mode: str, port: int, count: int = 1) -> list[str]:
        cp = subprocess.run(["docker", "exec", self.name, "python3", "-c", ATTEMPT, mode, self.target, str(port),
                             str(count), DOMAIN], capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr[-2000:]
        return json.loads(cp.stdout)

    def remove(self):
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def host(converged_host):
    name = converged_host["name"]
    image = images.ensure("gitea-standin", registry.gitea_build_args(STANDIN_GITEA_DEFAULT))
    attackers: list[Attacker] = []

    def attacker() -> Attacker:
        attackers.append(Attacker(image, converged_host["ip"]))
        return attackers[-1]

    try:
        ok(deploy(name, "--data", f"fail2ban_bantime={BANTIME}"))
        with backups_held(name):  # a backup's pause would answer the attacks with 502
            yield {**converged_host, "attacker": attacker, "ca": str(root_ca_file(name))}
    finally:
        for a in attackers:
            a.remove()
        ok(deploy(name))  # the default ban time again


def operator_gets_in(host: dict) -> None:
    """The operator, at the gateway's address: the admin's key logs in through the published admin
    port, and users' HTTPS answers."""
    login(host, "admin", **with_key(host)).close()
    assert healthz(host["ip"], host["ca"]) == "pass"


@pytest.mark.parametrize("jail", list(JAILS))
def test_repeated_failures_ban_the_address_until_the_ban_time_is_over(host, jail):
    mode, port, failed = JAILS[jail]
    port = port or int(host["admin_ssh_port"])
    attacker = host["attacker"]()
    answers = []
    while len(answers) < MAXRETRY and attacker.ip not in banned(host["name"], jail):
        answers += attacker.attempt(mode, port)
    assert answers and set(answers) == {failed}, answers
    wait_for(f"{attacker.ip} banned by {jail}", lambda: attacker.ip in banned(host["name"], jail), 15)
    assert attacker.attempt(mode, port) == ["unreachable"]
    operator_gets_in(host)

    wait_for(f"{attacker.ip} unbanned by {jail}", lambda: attacker.ip not in banned(host["name"], jail), BANTIME + 20)
    assert attacker.attempt(mode, port) == [failed]


def test_nginx_answers_429_past_the_api_burst_and_bans_who_keeps_going(host):
    attacker = host["attacker"]()
    health = attacker.attempt("/api/healthz", 443, 60)
    assert set(health) == {"200"}, health  # the health check is never limited
    answers = attacker.attempt("/api/v1/version", 443, 200)
    assert answers[:20] == ["200"] * 20, answers  # the burst
    assert "429" in answers, answers
    wait_for(f"{attacker.ip} banned by gitea-rate-limited",
             lambda: attacker.ip in banned(host["name"], "gitea-rate-limited"), 15)
    assert attacker.attempt("/api/v1/version", 443) == ["unreachable"]
    operator_gets_in(host)


def test_sign_in_form_is_limited_per_address(host):
    answers = host["attacker"]().attempt("/user/login", 443, 8)  # GETs are not limited: only POSTs
    assert set(answers) == {"200"}, answers
    # A name no account can have (a space): the web jail does not count it (the test above proves
    # the jail), so eight quick POSTs show nginx's limit alone.
    posts = host["attacker"]().attempt("web-spaced", 443, 8)
    assert posts[:6] == ["200"] * 6 and "429" in posts[6:], posts  # one, then the burst of 5


# The lines the filters read, as fail2ban's journal backend presents them ("IDENT[PID]: MESSAGE"),
# each with the addresses fail2ban must take from it (none for the hostile name).
FILTER_LINES = {
    "gitea-deploy-web": [
        ("gitea[812]: 2026/12/03 19:00:00 routers/web/auth/auth.go:250:SignInPost() [I] Failed authentication "
         "attempt for alice from 203.0.113.7: user's password is invalid [uid: 1, name: alice]", {"203.0.113.7"}),
        ("gitea[812]: 2026/12/03 19:00:00 routers/web/auth/auth.go:250:SignInPost() [I] Failed authentication "
         "attempt for x from 198.51.100.9: from 203.0.113.8: user does not exist [uid: 0, name: x from "
         "198.51.100.9:]", set()),
    ],
    "gitea-deploy-git-ssh": [
        ("gitea[812]: 2026/12/03 19:00:00 modules/ssh/ssh.go:180:publicKeyHandler() [W] Failed authentication "
         "attempt from 203.0.113.9:40022", {"203.0.113.9"}),
        ("gitea[812]: 2026/12/03 19:00:00 modules/ssh/ssh.go:180:publicKeyHandler() [W] Unknown public key: "
         "SHA256:abc from 203.0.113.9:40022", set()),
    ],
    "gitea-deploy-basic-auth": [("2026-12-03T19:00:00+00:00 203.0.113.10 401", {"203.0.113.10"}),
                                ("2026-12-03T19:00:00+00:00 203.0.113.10 429", set())],
    "gitea-deploy-rate-limited": [("2026-12-03T19:00:00+00:00 203.0.113.11 429", {"203.0.113.11"}),
                                  ("2026-12-03T19:00:00+00:00 203.0.113.11 401", set())],
}


@pytest.mark.parametrize("filter_name", list(FILTER_LINES))
def test_filters_take_the_address_only_from_where_gitea_and_nginx_put_it(host, filter_name):
    for line, addresses in FILTER_LINES[filter_name]:
        out = host_sh(host["name"], f"fail2ban-regex --out ip {shlex.quote(line)} "
                                    f"/etc/fail2ban/filter.d/{filter_name}.conf")
        assert set(out.split()) == addresses, (line, out)
