"""The lab tool itself: one host brought up, its observable state checked the way an operator or
the deploy would see it, then rebooted, reused and removed. Steps run in file order.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

pytestmark = pytest.mark.lab

NAME = "gitea-lab-t1"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab(lab_engine):
    api = lab_engine
    api.down([NAME])  # a stale host of an interrupted run
    t0 = time.monotonic()
    api.up([NAME])
    TIMINGS["up (fresh host)"] = time.monotonic() - t0
    yield api
    api.down([NAME])
    print("\nlab timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items()))


@pytest.fixture
def host(lab):
    return lab.state()["hosts"][NAME]


def sh(api, cmd: str, **kw) -> subprocess.CompletedProcess:
    return api.exec(NAME, cmd, **kw)


def ssh(api, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(api.ssh_command(NAME, *cmd), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def inspect(name: str) -> dict | None:
    cp = subprocess.run(["docker", "inspect", name], capture_output=True, text=True)
    return json.loads(cp.stdout)[0] if cp.returncode == 0 else None


def test_state_file_has_the_contract_shape(lab, host):
    from lab import REPO

    st = lab.state()
    assert list(st)[:5] == ["ssh_key", "acme_ca_bundle", "images_mode", "images", "hosts"]
    assert st["images_mode"] in ("standin", "upstream")
    assert set(st["images"]) == {"gitea", "postgres"}
    assert set(host) == {"ip", "admin_ssh_port", "ssh_port", "https_port", "http_port", "git_ssh_port", "known_hosts"}
    assert host["admin_ssh_port"] == 2222  # `up` without --admin-port
    for rel in (st["ssh_key"], st["acme_ca_bundle"], host["known_hosts"]):
        assert not rel.startswith("/") and (REPO / rel).is_file(), rel
    assert (REPO / st["ssh_key"]).stat().st_mode & 0o077 == 0, "the lab key must be 0600"
    assert host["ip"] == inspect(NAME)["NetworkSettings"]["Networks"]["gitea-lab"]["IPAddress"]


def test_published_only_on_loopback(lab, host):
    bindings = inspect(NAME)["HostConfig"]["PortBindings"]
    assert set(bindings) == {"2222/tcp", "443/tcp", "80/tcp", "22/tcp"}
    assert all(b["HostIp"] == "127.0.0.1" for bs in bindings.values() for b in bs)
    assert int(bindings["2222/tcp"][0]["HostPort"]) == host["ssh_port"]
    assert int(bindings["22/tcp"][0]["HostPort"]) == host["git_ssh_port"]
    for name in (f"{NAME}-registry", f"{NAME}-pebble", f"{NAME}-moto"):
        assert not inspect(name)["HostConfig"]["PortBindings"], f"{name} publishes nothing"
    reg = inspect("gitea-lab-registry")
    assert all(b["HostIp"] == "127.0.0.1" for bs in reg["HostConfig"]["PortBindings"].values() for b in bs)


def test_host_is_a_booted_debian_13(lab):
    assert sh(lab, "systemctl is-system-running").stdout.strip() in ("running", "degraded")
    assert 'VERSION_ID="13"' in sh(lab, "cat /etc/os-release").stdout
    assert sh(lab, "hostname").stdout.strip() == NAME
    assert sh(lab, "findmnt -no TARGET /srv/gitea").stdout.strip() == "/srv/gitea", "the data volume"


def test_network_sysctls_writable_like_a_vm_and_nothing_else(lab):
    # a nested engine writes each new container's network sysctls (its own netns): must work
    cp = sh(lab, "unshare --net sh -c 'echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6'")
    assert cp.returncode == 0, cp.stderr
    # the outer machine's kernel settings stay out of reach
    assert sh(lab, "test -w /proc/sys/kernel/domainname").returncode != 0
    assert sh(lab, "test -w /proc/sys/vm/swappiness").returncode != 0


def test_root_sees_other_users_processes_like_on_a_vm(lab):
    # the nested engine's `docker exec` (health checks) enters a non-root container's namespaces
    cp = sh(lab, "setpriv --reuid=65534 --regid=65534 --clear-groups sleep 30 & "
                 "sleep 0.5; readlink /proc/$!/ns/net; kill $!")
    assert cp.returncode == 0 and cp.stdout.startswith("net:["), cp.stderr


def test_ssh_as_admin_with_sudo_on_the_published_port(lab):
    cp = ssh(lab, "sudo -n id -un && id -un")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["root", "admin"]


def test_sshd_listens_on_the_admin_port_only(lab):
    assert sh(lab, "cat /etc/ssh/sshd_config.d/gitea-deploy.conf").stdout.strip() == "Port 2222"
    ports = {line.split()[3].rsplit(":", 1)[1] for line in sh(lab, "ss -ltnH").stdout.splitlines()}
    assert "2222" in ports
    assert "22" not in ports, "port 22 must be free for Gitea's own SSH server"


def test_host_stays_clean_of_lab_software(lab):
    cp = sh(lab, "command -v docker-registry pebble moto_server docker; dpkg -l | grep -cE 'docker|pebble|moto'")
    assert cp.stdout.split() == ["0"], cp.stdout


def test_registry_sidecar_serves_the_pushed_images(lab):
    assert sh(lab, "curl -fsS http://127.0.0.1:5000/v2/").returncode == 0
    catalog = json.loads(sh(lab, "curl -fsS http://127.0.0.1:5000/v2/_catalog", check=True).stdout)
    st = lab.state()
    if st["images_mode"] != "standin":
        pytest.skip("LAB_IMAGES=upstream: nothing is pushed")
    for ref in st["images"].values():
        assert ref.startswith("127.0.0.1:5000/")
        repo, tag = ref.removeprefix("127.0.0.1:5000/").rsplit(":", 1)
        assert repo in catalog["repositories"]
        code = sh(lab, "curl -s -o /dev/null -w '%{http_code}' -H "
                       "'Accept: application/vnd.docker.distribution.manifest.v2+json' "
                       f"http://127.0.0.1:5000/v2/{repo}/manifests/{tag}").stdout
        assert code == "200", f"{ref}: manifest HTTP {code}"


def test_pebble_directory_verifies_with_the_lab_listener_cert(lab):
    from lab import REPO

    pem = (REPO / lab.state()["acme_ca_bundle"]).read_text()
    # curl and Python's strict default context (what certbot runs on), with only the lab's bundle.
    probe = r"""f=$(mktemp); cat > "$f"; trap 'rm -f "$f"' EXIT
curl -fsS --cacert "$f" https://127.0.0.1:14000/dir >/dev/null && python3 -c '
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
d = json.load(urllib.request.urlopen("https://127.0.0.1:14000/dir", context=ctx))
print(d["newOrder"])' "$f"
"""
    cp = sh(lab, probe, input=pem)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "https://127.0.0.1:14000/order-plz"


def test_pebble_root_and_challtestsrv(lab):
    assert lab.pebble_root(NAME).startswith("-----BEGIN CERTIFICATE-----")
    # challtestsrv's management API answers and can override the default answer
    cp = sh(lab, """curl -fsS -X POST -d '{"ip":"127.0.0.1"}' http://127.0.0.1:8055/set-default-ipv4""")
    assert cp.returncode == 0, cp.stderr


def test_moto_answers_and_emulates_s3(lab):
    assert sh(lab, "curl -fsS -o /dev/null http://127.0.0.1:5050/moto-api/").returncode == 0
    cp = sh(lab, "curl -fsS -X PUT http://127.0.0.1:5050/lab-probe && curl -fsS http://127.0.0.1:5050/")
    assert cp.returncode == 0 and "<Name>lab-probe</Name>" in cp.stdout, cp.stdout + cp.stderr


def test_second_up_reuses_the_running_host(lab, host):
    before = inspect(NAME)["Id"]
    sidecars = [inspect(f"{NAME}-{k}")["Id"] for k in ("registry", "pebble", "moto")]
    t0 = time.monotonic()
    st = lab.up([NAME])
    TIMINGS["up (reuse)"] = time.monotonic() - t0
    assert inspect(NAME)["Id"] == before
    assert [inspect(f"{NAME}-{k}")["Id"] for k in ("registry", "pebble", "moto")] == sidecars
    assert st["hosts"][NAME] == host


def test_reboot_keeps_data_and_brings_everything_back(lab, host):
    marker = f"written before reboot {time.time()}"
    assert ssh(lab, f"echo '{marker}' | sudo tee /srv/gitea/lab-marker >/dev/null").returncode == 0
    root_before = lab.pebble_root(NAME)
    started_before = inspect(NAME)["State"]["StartedAt"]
    t0 = time.monotonic()
    st = lab.reboot(NAME)
    TIMINGS["reboot"] = time.monotonic() - t0
    assert inspect(NAME)["State"]["StartedAt"] != started_before
    assert st["hosts"][NAME]["ssh_port"] == host["ssh_port"], "published ports survive a reboot"
    cp = ssh(lab, "cat /srv/gitea/lab-marker")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == marker
    assert sh(lab, "systemctl is-system-running").stdout.strip() in ("running", "degraded")
    assert sh(lab, "curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ && "
                   "curl -fksS -o /dev/null https://127.0.0.1:14000/dir && "
                   "curl -fsS -o /dev/null http://127.0.0.1:5050/moto-api/").returncode == 0
    assert lab.pebble_root(NAME) != root_before, "pebble makes a new root at every start (documented)"


def test_down_removes_containers_volumes_and_state(lab):
    lab.down([NAME])
    for name in (NAME, f"{NAME}-registry", f"{NAME}-pebble", f"{NAME}-moto"):
        assert inspect(name) is None, name
    vols = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True).stdout.split()
    assert f"{NAME}-docker" not in vols and f"{NAME}-data" not in vols
    assert NAME not in lab.state()["hosts"]
