"""The host firewall attacked as the internet would (issue 13): from a container of its own on the
lab network (its own address, not the operator's), only git SSH, 80, 443 and the admin port answer.
Every other port the host listens on does not (Gitea's HTTP, PostgreSQL, the exporters, the lab's
own sidecars), nor a container port a test publishes on 0.0.0.0 "by mistake", which still answers
on the host itself. With admin_cidrs the admin port answers only its networks.

Runs on the shared converged host; the admin_cidrs deploy is undone by the module's last deploy.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from lab import api, images
from lab.config import LABEL_ROLE, NETWORK
from lab.converge import deploy
from tests.lab.stack_support import backups_held, ok

pytestmark = pytest.mark.lab

MISTAKE = "exposed-by-mistake"
MISTAKE_PORT = 18080

# Connect to each port at once, 3 s each; print the ones that accepted (a dropped SYN times out).
SCAN = r'''
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
address, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
def opens(port):
    try:
        socket.create_connection((address, port), timeout=3).close()
        return port
    except OSError:
        return None
with ThreadPoolExecutor(len(ports)) as pool:
    print(json.dumps(sorted(p for p in pool.map(opens, ports) if p)))
'''


def from_outside(address: str, ports: set[int]) -> set[int]:
    """The ports that accept a TCP connection from another container on the lab network."""
    cp = subprocess.run(["docker", "run", "--rm", "--label", f"{LABEL_ROLE}=test", "--network", NETWORK,
                         images.ensure("mail"), "python3", "-c", SCAN, address, *map(str, sorted(ports))],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    return set(json.loads(cp.stdout))


def sh(name: str, script: str) -> str:
    cp = api.exec(name, ["bash", "-c", "set -euo pipefail\n" + script], timeout=300)
    assert cp.returncode == 0, f"{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
    return cp.stdout


def listening(name: str) -> set[int]:
    """Every TCP port anything listens on in the host, on any address."""
    out = sh(name, "ss -Hltn")
    return {int(line.split()[3].rpartition(":")[2]) for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def host(converged_host):
    name = converged_host["name"]
    public = {22, 80, 443, int(converged_host["admin_ssh_port"])}
    # A container port published on every address, as a careless `docker run -p` would.
    sh(name, f"""docker rm -f {MISTAKE} >/dev/null 2>&1 || true
        image=$(docker inspect gitea-db-1 --format '{{{{.Config.Image}}}}')
        docker run -d --name {MISTAKE} -p 0.0.0.0:{MISTAKE_PORT}:5432 -e POSTGRES_PASSWORD=mistake "$image" >/dev/null
        for i in $(seq 60); do (exec 3<>/dev/tcp/127.0.0.1/{MISTAKE_PORT}) 2>/dev/null && exit 0; sleep 1; done; exit 1""")
    with backups_held(name):  # a backup's pause stops Gitea, and git SSH (22) with it
        yield {"name": name, "ip": converged_host["ip"], "public": public}
    sh(name, f"docker rm -f {MISTAKE} >/dev/null")


def test_only_the_public_ports_answer_from_outside(host):
    inside = listening(host["name"])
    assert MISTAKE_PORT in inside and 3000 in inside, inside  # they do listen, on the host
    answered = from_outside(host["ip"], inside | host["public"] | {5432})
    assert answered == host["public"], f"from outside: {sorted(answered)}; expected only {sorted(host['public'])}"


def test_admin_cidrs_leave_the_admin_port_to_their_networks(host):
    """The operator's address (the lab network's gateway, where the lab's published ports come
    from) keeps the admin port; the outside container, at another address, loses it."""
    gateway = json.loads(subprocess.run(["docker", "network", "inspect", NETWORK], capture_output=True, text=True,
                                        check=True).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    try:
        ok(deploy(host["name"], "--data", f"admin_cidrs={json.dumps([f'{gateway}/32'])}"))
        admin = max(host["public"] - {22, 80, 443})
        assert from_outside(host["ip"], host["public"]) == host["public"] - {admin}
    finally:
        ok(deploy(host["name"]))  # pyinfra itself came through the admin port: the operator kept it
    assert from_outside(host["ip"], host["public"]) == host["public"]
