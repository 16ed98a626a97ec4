"""The lab's Python API (the CLI is a thin layer over it). Tests use it directly:

    from lab import api
    st = api.up(["gitea-lab-1"])          # -> the state dict (also written to .lab/state.json)
    api.exec("gitea-lab-1", "systemctl is-system-running")
    api.reboot("gitea-lab-1")
    api.pebble_root("gitea-lab-1")        # pebble's current root CA (PEM); new after every reboot
    api.down(["gitea-lab-1"])

The shared mail server every host's Gitea sends through (lab/mail.py), read by tests:
    from lab import mail
    mail.messages()                       # [{"envelope_from", "envelope_to", "from", "to", "subject", ...}]

A real external PostgreSQL (what RDS is to the deploy), TLS only, on the lab network:
    db = api.rds_up("prod")              # {"endpoint": "IP:5432", "ca": PEM, "password": ...}
    api.rds_down("prod")

Two hosts that must see the same AWS (a backup on one, restored on the other after it is gone):
    api.up(["host-a"], aws="drill")       # moto in container gitea-lab-aws-drill, 127.0.0.1:5050 in each host
    api.aws_down("drill")
"""

import os
import shutil
import subprocess
from pathlib import Path

from lab import LabError, registry
from lab import hosts as _hosts
from lab import images as _images
from lab import mail as _mail
from lab import state as _state
from lab.config import (
    DEFAULT_ADMIN_PORT,
    IMAGES_MODES,
    LABEL_ADMIN_PORT,
    LABEL_HOST,
    LABEL_ROLE,
    NETWORK,
    REGISTRY_VOLUME,
    SIDECARS,
)
from lab.engine import (
    container,
    containers_with_label,
    docker,
    ensure_engine,
    ensure_network,
    inspect,
    logs,
    remove_containers,
    remove_volumes,
    volumes_with_label,
)
from lab.secrets import PEBBLE_CERT, PEBBLE_DIR, SSH_KEY, ensure_pebble_cert, ensure_ssh_key, key_fingerprint
from lab.util import Timer, locked, rel, say

__all__ = ["engine", "images", "up", "down", "reboot", "state", "status", "pebble_root", "exec",
           "ssh_command", "images_mode", "aws_down", "rds_up", "rds_down", "LabError"]


def images_mode(mode: str | None = None) -> str:
    """"standin" (default: the lab's own images from the lab registry) or "upstream" (LAB_IMAGES)."""
    mode = mode or os.environ.get("LAB_IMAGES") or "standin"
    if mode not in IMAGES_MODES:
        raise LabError(f"LAB_IMAGES={mode!r}: expected one of {', '.join(IMAGES_MODES)}")
    return mode


def engine() -> str:
    """Make sure a Docker engine answers (start dockerd if needed). Returns "running" or "started"."""
    return ensure_engine()


def images(mode: str | None = None) -> dict[str, str]:
    """Build (or reuse) every lab image; in stand-in mode publish the deploy's images to the lab
    registry. Returns the image references the deploy will pull (state["images"])."""
    mode = images_mode(mode)
    ensure_engine()
    t = Timer()
    for name in ["base", "host", *SIDECARS]:
        _images.ensure(name)
    if mode == "standin":
        refs = registry.publish_standins()
        say(f"images mode: stand-in (lab-built images from the lab registry; Gitea is a STAND-IN, "
            f"not Gitea) [{t}]")
    else:
        refs = registry.references("upstream")
        say(f"images mode: upstream (real pinned images, pulled by each host from the internet) [{t}]")
    for key, ref in refs.items():
        say(f"  {key}: {ref}")
    return refs


def _top(mode: str, refs: dict[str, str]) -> dict:
    return {"ssh_key": rel(SSH_KEY), "acme_ca_bundle": rel(PEBBLE_CERT), "images_mode": mode, "images": refs}


def up(names: list[str], *, admin_port: int = DEFAULT_ADMIN_PORT, mode: str | None = None,
       aws: str | None = None) -> dict:
    """Bring lab hosts up (reuse running healthy ones); returns the new state.

    aws: name of a shared emulated AWS (one moto server for every host given the same name, which
    outlives them); None: each host has its own moto, gone with the host."""
    if not names:
        raise LabError("up: name at least one host")
    for n in names:
        _hosts.validate_name(n)
    mode = images_mode(mode)
    total = Timer()
    ensure_engine()
    pubkey = ensure_ssh_key()
    ensure_pebble_cert()
    ensure_network(NETWORK, {LABEL_ROLE: "network"})
    refs = images(mode)
    _mail.ensure()  # the shared SMTP server every host's Gitea mails through (lab/mail.py)
    base = _images.ensure("host")  # the base image + the container-only fix in lab/images/host
    labels = _hosts.expected_labels(base, key_fingerprint(pubkey), admin_port)
    entries = {}
    for name in names:
        with locked(f"host-{name}"):
            t = Timer()
            info = _hosts.reusable(name, labels, admin_port)
            if info is not None:
                say(f"{name}: running and healthy: reused")
                _hosts.ensure_sidecars(name, fresh=False, aws=aws)
                if not issuing_root_file(name).exists():  # a host made before `up` recorded it
                    record_issuing_root(name)
            else:
                _hosts.remove_host(name)
                say(f"{name}: creating from {base}")
                _hosts.create(name, base, labels, admin_port)
                info = _booted(name, admin_port, aws, setup=lambda name=name: _hosts.cloud_init(name, pubkey, admin_port))
                record_issuing_root(name)
            entries[name] = _hosts.entry(name, info, admin_port, aws)
            say(f"{name}: ready in {t}")
    new = _state.update(top=_top(mode, refs), hosts=entries)
    for name in names:
        h = new["hosts"][name]
        say(f"{name}: ip {h['ip']}  https 127.0.0.1:{h['https_port']}  http 127.0.0.1:{h['http_port']}  "
            f"git-ssh 127.0.0.1:{h['git_ssh_port']}")
        say(f"{name}: ssh: python -m lab ssh {name}   (= {_hosts.shell_quote(ssh_command(name, state=new))})")
    say(f"images mode: {'stand-in' if mode == 'standin' else 'upstream'}; state: {rel(_state.STATE_FILE)} "
        f"[up took {total}]")
    return new


def _booted(name: str, admin_port: int, aws: str | None, setup=None) -> dict:
    """The one path from a started container to a usable host, for a new host and after a reboot:
    systemd up, (new host only: cloud-init's part), its host keys known, ssh as admin with sudo on
    the admin port, fresh sidecars. Returns the container's inspect data."""
    _hosts.wait_booted(name)
    if setup is not None:
        setup()
    info = container(name)
    _hosts.write_known_hosts(name, info, admin_port)
    _hosts.wait_ssh(name, _hosts.ports_of(info, admin_port)["ssh_port"])
    _hosts.ensure_sidecars(name, fresh=True, aws=aws)
    return info


def _admin_port(info: dict) -> int:
    return int((info["Config"]["Labels"] or {}).get(LABEL_ADMIN_PORT, DEFAULT_ADMIN_PORT))


def reboot(name: str) -> dict:
    """`docker restart` = a reboot (systemd stops and starts every unit). Sidecars lost the host's
    network namespace: they are recreated. Pebble makes a NEW root CA. Returns the new state."""
    ensure_engine()
    t = Timer()
    with locked(f"host-{name}"):
        info = container(name)
        if info is None or (info["Config"]["Labels"] or {}).get(LABEL_ROLE) != "host":
            raise LabError(f"reboot: no lab host {name!r} (run `python -m lab up {name}`)")
        admin_port = _admin_port(info)
        aws = _hosts.sidecar_aws(name)  # a host on a shared AWS stays on it
        say(f"{name}: rebooting")
        cp = docker("restart", "-t", "60", name, check=False, timeout=180)
        if cp.returncode != 0:
            raise LabError(f"{name}: docker restart failed: {cp.stderr.strip()}\n{logs(name)}")
        info = _booted(name, admin_port, aws)
        new = _state.update(hosts={name: _hosts.entry(name, info, admin_port, aws)})
    say(f"{name}: rebooted in {t} (pebble has a new root CA now)")
    return new


def down(names: list[str] | None = None, *, all: bool = False) -> dict:
    """Remove hosts with their sidecars, volumes and state entries. all=True: every lab host, the
    registry, the network and the .lab state (built images stay, as cache)."""
    ensure_engine()
    if all:
        hostnames = set(containers_with_label(f"{LABEL_ROLE}=host")) | set(_state.load().get("hosts", {}))
        names = sorted(hostnames | set(names or []))
    if not names and not all:
        raise LabError("down: name hosts, or --all")
    for name in names:
        with locked(f"host-{name}"):
            _hosts.remove_host(name)
            _state.update(remove=[name])
            say(f"{name}: removed (container, sidecars, volumes, state)")
    if not all:
        return _state.load()
    remove_containers(*containers_with_label(LABEL_ROLE))  # sidecars of hosts not in state, registry
    remove_volumes(REGISTRY_VOLUME, *volumes_with_label(LABEL_HOST))
    if inspect("network", NETWORK) is not None:
        docker("network", "rm", NETWORK, check=False)
    with locked("state"):
        for p in (_state.STATE_FILE, _hosts.HOSTS_DIR, PEBBLE_DIR):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    say(f"removed the registry, network {NETWORK} and the lab state; built images kept as cache")
    return _state.empty()


def aws_down(name: str) -> None:
    """Remove a shared emulated AWS (its buckets and parameters are gone with it). Idempotent."""
    ensure_engine()
    remove_containers(_hosts.aws_container(name))
    say(f"shared AWS {name}: removed")


def rds_up(name: str) -> dict:
    """A real PostgreSQL standing in for RDS (lab/rds.py): its own container on the lab network,
    TLS only. Returns {"endpoint": "IP:5432", "ca": PEM, "password": ..., "user", "database"}."""
    from lab import rds

    ensure_engine()
    ensure_network(NETWORK, {LABEL_ROLE: "network"})
    return rds.up(name)


def rds_down(name: str) -> None:
    """Remove an RDS stand-in and its data. Idempotent."""
    from lab import rds

    ensure_engine()
    rds.down(name)
    say(f"external PostgreSQL {rds.name_of(name)}: removed")


def state() -> dict:
    """The current .lab/state.json (an empty skeleton if there is none)."""
    return _state.load()


def status() -> list[dict]:
    """One row per lab host (in state or found in Docker): container and sidecar states, ports."""
    ensure_engine()
    st = _state.load()
    names = sorted(set(st.get("hosts", {})) | set(containers_with_label(f"{LABEL_ROLE}=host")))
    rows = []
    for name in names:
        info = container(name)
        h = st.get("hosts", {}).get(name, {})
        rows.append({
            "host": name,
            "container": info["State"]["Status"] if info else "missing",
            "ip": h.get("ip", "-"),
            "ssh": h.get("ssh_port", "-"), "https": h.get("https_port", "-"), "http": h.get("http_port", "-"),
            "git_ssh": h.get("git_ssh_port", "-"),
            **_hosts.sidecar_states(name),
        })
    return rows


def pebble_root(name: str) -> str:
    """Pebble's current root CA (PEM), from inside the host. It changes at every pebble start."""
    cp = exec(name, "curl -fksS https://127.0.0.1:15000/roots/0", check=False)
    if cp.returncode != 0 or "BEGIN CERTIFICATE" not in cp.stdout:
        raise LabError(f"{name}: could not read pebble's root: {cp.stderr.strip()}")
    return cp.stdout


def issuing_root_file(name: str) -> Path:
    """Where `up` keeps the pebble root current when a host is new: the root that signs the
    certificate its first deploy obtains. Pebble makes a new root at every reboot, but the deploy
    keeps its certificate, so this root, not the current one, is what the served chain verifies
    against (a reboot before the first deploy breaks that; `down` and `up` again)."""
    return _hosts.HOSTS_DIR / name / "issuing-root.pem"


def record_issuing_root(name: str) -> None:
    path = issuing_root_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pebble_root(name))


def exec(name: str, cmd, *, check: bool = False, input: str | None = None, user: str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    """Run cmd (shell string or argv list) in the host via `docker exec` (root unless user=...).
    Returns the CompletedProcess (text); check=True raises LabError on a non-zero exit."""
    return _hosts.exec_(name, cmd, check=check, input=input, user=user, timeout=timeout)


def ssh_command(name: str, *cmd: str, state: dict | None = None) -> list[str]:
    """argv for `ssh admin@127.0.0.1` into the host on its published admin port, lab key, its known_hosts."""
    st = state or _state.load()
    h = st.get("hosts", {}).get(name)
    if not h:
        raise LabError(f"no lab host {name!r} in {rel(_state.STATE_FILE)} (run `python -m lab up {name}`)")
    return _hosts.ssh_argv(name, h["ssh_port"], *cmd, batch=bool(cmd))
