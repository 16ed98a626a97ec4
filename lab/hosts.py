"""Lab hosts: Debian 13 containers booting systemd, set up the way cloud-init sets up the EC2
instance (user admin + sudo + the operator's key, sshd on the admin port), and their sidecars."""

import hashlib
import json
import random
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

from lab import LAB_DIR, LabError, forward, images
from lab.config import (
    AWS_PREFIX,
    HOST_PORT_RANGE,
    HOST_RUN_FLAGS,
    LABEL_ADMIN_PORT,
    LABEL_AWS,
    LABEL_HOST,
    LABEL_IMAGE,
    LABEL_KEY,
    LABEL_ROLE,
    LABEL_SPEC,
    MOTO_PORT,
    NETWORK,
    PUBLISHED,
    REGISTRY_VOLUME,
    SIDECAR_TIMEOUT,
    SIDECARS,
    SSH_TIMEOUT,
    SYSTEMD_TIMEOUT,
)
from lab.engine import container, docker, logs, remove_containers, remove_volumes, running
from lab.secrets import PEBBLE_DIR, SSH_KEY
from lab.state import host_entry, known_hosts_lines
from lab.util import GiveUp, locked, rel, say, wait_until

HOSTS_DIR = LAB_DIR / "hosts"


# --- names ----------------------------------------------------------------------------------------

def volumes(name: str) -> dict[str, str]:
    """Named volumes of a host: mount point -> volume. /srv/gitea is the data volume (EBS in AWS)."""
    return {"/var/lib/docker": f"{name}-docker", "/srv/gitea": f"{name}-data"}


def sidecar_name(name: str, kind: str) -> str:
    return f"{name}-{kind}"


def known_hosts_file(name: str) -> Path:
    return HOSTS_DIR / name / "known_hosts"


def validate_name(name: str) -> None:
    ok = name and len(name) <= 50 and name[0].isalnum() and all(c.isalnum() or c in "-." for c in name)
    if not ok:
        raise LabError(f"bad host name {name!r}: letters, digits, '-' and '.', at most 50")


# --- published ports -------------------------------------------------------------------------------

def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ports_reserved() -> set[int]:
    """Fixed host ports in any container's config, running or stopped (bound again at its start)."""
    taken = set()
    names = docker("ps", "-aq", timeout=30).stdout.split()
    if not names:
        return taken
    cp = docker("inspect", "--format", "{{json .HostConfig.PortBindings}}", *names, check=False)
    for line in cp.stdout.splitlines():
        for binds in (json.loads(line) or {}).values():
            for b in binds or []:
                if str(b.get("HostPort", "")).isdigit():
                    taken.add(int(b["HostPort"]))
    return taken


def pick_ports(count: int, reserved: set[int], rng=random) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 from HOST_PORT_RANGE, avoiding `reserved`.

    Fixed per host (not docker's random ones) so a reboot (`docker restart`) keeps them."""
    lo, hi = HOST_PORT_RANGE
    chosen: list[int] = []
    for _ in range(200):
        p = rng.randrange(lo, hi)
        if p not in reserved and p not in chosen and _free(p):
            chosen.append(p)
            if len(chosen) == count:
                return chosen
    raise LabError(f"no {count} free ports on 127.0.0.1 in {lo}-{hi}")


def ports_of(info: dict, admin_port: int) -> dict[str, int]:
    """state key -> published 127.0.0.1 port, from a host container's inspect data."""
    bindings = info["HostConfig"]["PortBindings"] or {}
    out = {}
    for key, cport in PUBLISHED.items():
        cport = admin_port if cport is None else cport
        b = [x for x in bindings.get(f"{cport}/tcp") or [] if x.get("HostIp") == "127.0.0.1"]
        if not b:
            raise LabError(f"{info['Name'].lstrip('/')}: port {cport} is not published on 127.0.0.1")
        out[key] = int(b[0]["HostPort"])
    return out


def ip_of(info: dict) -> str:
    return info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


# --- exec helpers ------------------------------------------------------------------------------------

def exec_(name: str, cmd, *, check=False, input=None, timeout=120, user=None, env=None):
    """Run cmd (a shell string or an argv list) inside the host as root (or `user`)."""
    argv = ["exec"] + (["-i"] if input is not None else [])
    if user:
        argv += ["-u", user]
    for k, v in (env or {}).items():
        argv += ["-e", f"{k}={v}"]
    argv.append(name)
    argv += ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    return docker(*argv, check=check, input=input, timeout=timeout)


def systemd_state(name: str) -> str:
    cp = exec_(name, ["systemctl", "is-system-running"], timeout=30)
    return cp.stdout.strip() or cp.stderr.strip()


def ssh_argv(name: str, port: int, *extra: str, batch=True) -> list[str]:
    argv = ["ssh", "-i", str(SSH_KEY), "-p", str(port), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts_file(name)}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
    if batch:
        argv += ["-F", "/dev/null", "-o", "BatchMode=yes"]
    return argv + ["admin@127.0.0.1", *extra]


def ssh_ok(name: str, port: int) -> bool:
    try:
        cp = subprocess.run(ssh_argv(name, port, "sudo", "-n", "true"), capture_output=True, text=True,
                            timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LabError("ssh did not answer in 20s") from None
    if cp.returncode != 0:
        raise LabError(f"ssh exit {cp.returncode}: {cp.stderr.strip()}")
    return True


# --- host lifecycle ----------------------------------------------------------------------------------

def remove_host(name: str) -> None:
    """Remove a host's container, sidecars, volumes and .lab/hosts/NAME (idempotent)."""
    remove_containers(*(sidecar_name(name, k) for k in SIDECARS), name)
    remove_volumes(*volumes(name).values())
    shutil.rmtree(HOSTS_DIR / name, ignore_errors=True)  # known_hosts and anything else kept per host


def run_spec() -> str:
    return hashlib.sha256("\0".join(HOST_RUN_FLAGS).encode()).hexdigest()[:12]


def expected_labels(base: str, key_fp: str, admin_port: int) -> dict[str, str]:
    return {LABEL_ROLE: "host", LABEL_IMAGE: base, LABEL_KEY: key_fp, LABEL_ADMIN_PORT: str(admin_port),
            LABEL_SPEC: run_spec()}


def reusable(name: str, labels: dict[str, str], admin_port: int) -> dict | None:
    """The running host's inspect data if it is ours, current, booted and reachable by ssh; else None."""
    info = container(name)
    if not running(info):
        return None
    have = info["Config"]["Labels"] or {}
    if any(have.get(k) != v for k, v in labels.items()):
        say(f"{name}: exists but was made from another image/key/port/flags: recreating")
        return None
    try:
        if systemd_state(name) not in ("running", "degraded"):
            return None
        write_known_hosts(name, info, admin_port)
        ssh_ok(name, ports_of(info, admin_port)["ssh_port"])
    except LabError as e:
        say(f"{name}: running but not healthy ({e}): recreating")
        return None
    return info


def create(name: str, base: str, labels: dict[str, str], admin_port: int) -> dict:
    for vol in volumes(name).values():
        docker("volume", "create", "--label", f"{LABEL_HOST}={name}", vol)
    label_args = [a for k, v in {**labels, LABEL_HOST: name}.items() for a in ("--label", f"{k}={v}")]
    last = None
    for _attempt in range(5):  # a chosen port may be grabbed before docker binds it: pick again
        ports = pick_ports(len(PUBLISHED), _ports_reserved())
        publish = []
        for port, cport in zip(ports, PUBLISHED.values(), strict=True):
            publish += ["-p", f"127.0.0.1:{port}:{admin_port if cport is None else cport}"]
        cp = docker(
            "run", "-d", "--name", name, "--hostname", name, *label_args,
            "--network", NETWORK,
            *HOST_RUN_FLAGS,
            *[a for mount, vol in volumes(name).items() for a in ("-v", f"{vol}:{mount}")],
            *publish, base, "/sbin/init", check=False, timeout=120,
        )
        if cp.returncode == 0:
            return container(name)
        last = cp.stderr.strip()
        remove_containers(name)
        if "port is already allocated" not in last and "address already in use" not in last:
            break
    raise LabError(f"docker run {name} failed: {last}")


def wait_booted(name: str) -> str:
    def booted():
        if not running(container(name)):
            raise GiveUp(f"{name} stopped while booting\n{logs(name)}")
        state = systemd_state(name)
        if state in ("running", "degraded"):
            return state
        raise LabError(f"systemd: {state}")

    state = wait_until(f"{name}: systemd to finish booting", booted, timeout=SYSTEMD_TIMEOUT, interval=1,
                       on_fail=lambda: logs(name) + "\n" + exec_(
                           name, "systemctl --failed --no-pager; systemctl list-jobs --no-pager").stdout)
    if state == "degraded":
        failed = exec_(name, "systemctl --failed --no-legend --plain --no-pager").stdout.strip()
        say(f"{name}: systemd degraded (failed units: {failed or 'none listed'})")
    return state


CLOUD_INIT = r"""
set -eu
# What cloud-init does on the EC2 instance before the first deploy (docs/dev/contracts.md).
id admin >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --comment "Debian" admin
install -d -m 0700 -o admin -g admin /home/admin/.ssh
printf '%s\n' "$LAB_PUBKEY" > /home/admin/.ssh/authorized_keys
chown admin:admin /home/admin/.ssh/authorized_keys
chmod 0600 /home/admin/.ssh/authorized_keys
printf 'admin ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-cloud-init-users
chmod 0440 /etc/sudoers.d/90-cloud-init-users
visudo -cq
# Unique host keys per instance (the image's were made once, at debootstrap time).
rm -f /etc/ssh/ssh_host_*
ssh-keygen -A >/dev/null
install -d -m 0755 /etc/ssh/sshd_config.d
printf 'Port %s\n' "$LAB_ADMIN_PORT" > /etc/ssh/sshd_config.d/gitea-deploy.conf
chmod 0644 /etc/ssh/sshd_config.d/gitea-deploy.conf
sshd -t
systemctl restart ssh
"""


def cloud_init(name: str, pubkey: str, admin_port: int) -> None:
    cp = exec_(name, CLOUD_INIT, env={"LAB_PUBKEY": pubkey, "LAB_ADMIN_PORT": str(admin_port)}, timeout=120)
    if cp.returncode != 0:
        raise LabError(f"{name}: host setup (cloud-init's part) failed:\n{cp.stdout}{cp.stderr}")


def write_known_hosts(name: str, info: dict, admin_port: int) -> Path:
    """known_hosts from the host's real host keys, for the published port and for IP:admin port."""
    cp = exec_(name, "cat /etc/ssh/ssh_host_*_key.pub", check=True, timeout=30)
    keys = [line for line in cp.stdout.splitlines() if line.strip()]
    if not keys:
        raise LabError(f"{name}: no ssh host keys")
    ports = ports_of(info, admin_port)
    lines = known_hosts_lines(keys, [("127.0.0.1", ports["ssh_port"]), (ip_of(info), admin_port)])
    path = known_hosts_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_ssh(name: str, port: int) -> None:
    wait_until(f"{name}: ssh -p {port} admin@127.0.0.1 sudo true", lambda: ssh_ok(name, port),
               timeout=SSH_TIMEOUT, interval=1,
               on_fail=lambda: exec_(name, "systemctl status ssh --no-pager -l | tail -20").stdout)


def entry(name: str, info: dict, admin_port: int, aws: str | None = None) -> dict:
    return host_entry(ip=ip_of(info), admin_ssh_port=admin_port, known_hosts=rel(known_hosts_file(name)), aws=aws,
                      **ports_of(info, admin_port))


# --- sidecars ----------------------------------------------------------------------------------------

# kind -> shell probe run inside the host (exit 0 = answers)
SIDECAR_PROBES = {
    "registry": "curl -fsS -o /dev/null http://127.0.0.1:5000/v2/",
    "pebble": "curl -fksS -o /dev/null https://127.0.0.1:14000/dir"
              " && curl -fksS -o /dev/null https://127.0.0.1:15000/roots/0"
              " && test \"$(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8055/)\" != 000",
    "moto": "curl -fsS -o /dev/null http://127.0.0.1:5050/moto-api/",
}


def sidecar_answers(name: str, kind: str) -> bool:
    cp = exec_(name, SIDECAR_PROBES[kind], timeout=30)
    if cp.returncode != 0:
        raise LabError(f"{kind} probe exit {cp.returncode}: {cp.stderr.strip()[-300:]}")
    return True


def _run_sidecar(name: str, kind: str, host_id: str, aws: str | None = None) -> None:
    tag = images.ensure(kind)
    extra = {
        "registry": ["-v", f"{REGISTRY_VOLUME}:/var/lib/docker-registry"],
        "pebble": ["-v", f"{PEBBLE_DIR}:/certs:ro"],
        "moto": [],
    }[kind]
    command = []
    if kind == "moto" and aws:
        # Same address inside the host, but relayed to the shared server: the deploy sees no difference.
        extra = ["--label", f"{LABEL_AWS}={aws}"]
        command = ["python3", "-c", Path(forward.__file__).read_text(),
                   f"127.0.0.1:{MOTO_PORT}", f"{ensure_shared_aws(aws)}:{MOTO_PORT}"]
    docker("run", "-d", "--name", sidecar_name(name, kind), "--init",
           "--label", f"{LABEL_ROLE}=sidecar", "--label", f"{LABEL_HOST}={name}",
           "--network", f"container:{host_id}", *extra, tag, *command)


def sidecar_aws(name: str) -> str | None:
    """The shared emulated AWS a host's moto sidecar forwards to (None: the host's own moto)."""
    info = container(sidecar_name(name, "moto"))
    return ((info or {}).get("Config", {}).get("Labels") or {}).get(LABEL_AWS) or None


def ensure_sidecars(name: str, *, fresh: bool, aws: str | None = None) -> None:
    """Start (or with fresh=False: keep the ones that answer) the host's sidecars; wait for each.

    aws: the name of a shared emulated AWS (see ensure_shared_aws) the moto sidecar relays to,
    instead of running the host's own moto."""
    host_id = container(name)["Id"]
    started = []
    for kind in SIDECARS:
        sc = sidecar_name(name, kind)
        if not fresh:
            info = container(sc)
            try:
                if (running(info) and info["HostConfig"]["NetworkMode"] == f"container:{host_id}"
                        and info["Config"]["Image"] == images.ensure(kind)
                        and (kind != "moto" or sidecar_aws(name) == aws) and sidecar_answers(name, kind)):
                    continue
            except LabError:
                pass
        remove_containers(sc)
        _run_sidecar(name, kind, host_id, aws)
        started.append(kind)
    for kind in started:
        sc = sidecar_name(name, kind)

        def answers(kind=kind, sc=sc):
            if not running(container(sc)):
                raise GiveUp(f"{sc} exited\n{logs(sc)}")
            return sidecar_answers(name, kind)

        wait_until(f"{sc} to answer inside {name}", answers, timeout=SIDECAR_TIMEOUT, interval=0.5,
                   on_fail=lambda sc=sc: logs(sc))


# --- shared emulated AWS -----------------------------------------------------------------------------

def aws_container(aws: str) -> str:
    return f"{AWS_PREFIX}{aws}"


def ensure_shared_aws(aws: str) -> str:
    """Start (or reuse) the shared moto server `aws` on the lab network; return its IP there.

    It listens on its own address on the lab bridge (never published on the machine), so only lab
    containers reach it. Its state is in memory and outlives the hosts that use it, not itself."""
    validate_name(aws)
    cname = aws_container(aws)
    with locked(f"aws-{aws}"):  # hosts brought up at once must not start it twice
        return _ensure_shared_aws(cname)


def _ensure_shared_aws(cname: str) -> str:
    info = container(cname)
    if not running(info) or info["Config"]["Image"] != images.ensure("moto"):
        remove_containers(cname)
        docker("run", "-d", "--name", cname, "--init", "--label", f"{LABEL_ROLE}=aws",
               "--network", NETWORK, "-e", "MOTO_HOST=0.0.0.0", "-e", f"MOTO_PORT={MOTO_PORT}",
               images.ensure("moto"))

        def answers():
            if not running(container(cname)):
                raise GiveUp(f"{cname} exited\n{logs(cname)}")
            cp = docker("exec", cname, "sh", "-c", SIDECAR_PROBES["moto"], check=False, timeout=30)
            if cp.returncode != 0:
                raise LabError(f"moto probe exit {cp.returncode}: {cp.stderr.strip()[-300:]}")
            return True

        wait_until(f"{cname} to answer", answers, timeout=SIDECAR_TIMEOUT, interval=0.5,
                   on_fail=lambda: logs(cname))
        info = container(cname)
    return info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


def sidecar_states(name: str) -> dict[str, str]:
    out = {}
    for kind in SIDECARS:
        info = container(sidecar_name(name, kind))
        out[kind] = info["State"]["Status"] if info else "-"
    return out


def shell_quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
