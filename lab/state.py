"""`.lab/state.json`: the lab's contract with inventories/lab.py and the tests (docs/dev/contracts.md).

Pure functions (merge, host entry) are separate from the file I/O so they can be unit-tested.
Writers hold the `state` lock and replace the file atomically; readers need no lock.
"""

import json
import os
from pathlib import Path

from lab import LAB_DIR
from lab.util import locked

STATE_FILE = LAB_DIR / "state.json"
TOP_KEYS = ("ssh_key", "acme_ca_bundle", "images_mode", "images")
HOST_KEYS = ("ip", "admin_ssh_port", "ssh_port", "https_port", "http_port", "git_ssh_port", "known_hosts")


def empty() -> dict:
    return {"hosts": {}}


def host_entry(*, ip: str, admin_ssh_port: int, ssh_port: int, https_port: int, http_port: int,
               git_ssh_port: int, known_hosts: str, aws: str | None = None) -> dict:
    """One host's entry. `admin_ssh_port`: the admin sshd's port inside the host (`up --admin-port`;
    `ssh_port` is where 127.0.0.1 publishes it). `aws` (only when set): the shared emulated AWS its
    moto sidecar relays to."""
    entry = {"ip": ip, "admin_ssh_port": int(admin_ssh_port), "ssh_port": int(ssh_port),
             "https_port": int(https_port), "http_port": int(http_port), "git_ssh_port": int(git_ssh_port),
             "known_hosts": known_hosts}
    if aws:
        entry["aws"] = aws
    return entry


def merge(old: dict | None, *, top: dict | None = None, hosts: dict | None = None,
          remove: tuple | list | set = ()) -> dict:
    """A new state: `old` with top-level keys from `top`, host entries from `hosts` replaced (not
    merged key by key), and hosts in `remove` dropped. Other hosts and unknown keys are kept.
    Key order is the contract's order. `old` is not modified."""
    old = json.loads(json.dumps(old or {}))
    new_hosts = dict(old.get("hosts") or {})
    for name in remove:
        new_hosts.pop(name, None)
    for name, entry in (hosts or {}).items():
        new_hosts[name] = dict(entry)
    merged = {k: v for k, v in old.items() if k != "hosts"}
    merged.update(top or {})
    out = {k: merged.pop(k) for k in TOP_KEYS if k in merged}
    out.update(merged)
    out["hosts"] = {n: new_hosts[n] for n in sorted(new_hosts)}
    return out


def load(path: Path = STATE_FILE) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return empty()
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); `python -m lab down --all` resets it") from None


def save(state: dict, path: Path = STATE_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def update(path: Path = STATE_FILE, **kw) -> dict:
    """Read-merge-write under the lab-wide state lock; returns the new state."""
    with locked("state"):
        new = merge(load(path), **kw)
        save(new, path)
        return new


def known_hosts_lines(host_keys: list[str], endpoints: list[tuple[str, int]]) -> list[str]:
    """known_hosts lines for each (address, port) endpoint and each `type base64` host key."""
    lines = []
    for addr, port in endpoints:
        name = addr if port == 22 else f"[{addr}]:{port}"
        for key in host_keys:
            parts = key.split()
            if len(parts) >= 2:
                lines.append(f"{name} {parts[0]} {parts[1]}")
    return lines
