"""The host firewall (nftables): inbound default drop, in the project's own table.

Allowed in: established traffic, loopback, the containers' bridges, ICMP essentials, the admin's
sshd (only from admin_cidrs when set), 80 and 443. Docker publishes git SSH by DNAT, which the
input hook never sees: the forward chain lets in from outside only DNATed connections to the ports
the inventory publishes (git_ssh_port), so a container port published on 0.0.0.0 by mistake stays
unreachable. Docker's own tables are never touched and nothing flushes the whole ruleset (Debian's
nftables.service does both: it stays off). docs/concepts/security.md explains the threat model.
"""

from __future__ import annotations

import ipaddress
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy

from tasks import snapshot
from tasks.common import REPO, apply_when_stale, install_validated, staged_template, template

PACKAGES = ["nftables"]
RULES = "/etc/gitea-deploy/firewall.nft"
TABLE = "inet gitea_deploy"
UNIT = "gitea-deploy-firewall.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"


def contexts(data) -> dict[str, dict]:
    """What the rules template is given: the admin port with its sources split by family, and the
    ports published to the internet through Docker."""
    networks = [ipaddress.ip_network(c, strict=False) for c in data.get("admin_cidrs") or []]
    admin = {"port": int(data.get("admin_ssh_port")),
             "v4": [str(n) for n in networks if n.version == 4], "v6": [str(n) for n in networks if n.version == 6]}
    return {"firewall/firewall.nft.j2": {"admin": admin, "published": [int(data.get("git_ssh_port"))]}}


@deploy("Firewall")
def firewall():
    """Before the engine publishes anything: the rules are live before the stack's ports are."""
    staged = staged_template("Firewall rules", src=template("firewall/firewall.nft.j2"), dest=RULES, mode="600",
                             **contexts(host.data)["firewall/firewall.nft.j2"])
    # `nft -c` checks the candidate against the running kernel without loading it.
    install_validated("Install the firewall rules (validated by nft -c)", [staged],
                      check=f"nft -c -f {RULES}", marker="firewall")
    snapshot.put(name=f"Unit {UNIT}", src=StringIO((REPO / "files/firewall" / UNIT).read_text()), dest=UNIT_FILE,
                 mode="644")
    # Debian's own unit loads /etc/nftables.conf, which begins with `flush ruleset`: Docker's NAT
    # and forward rules would be gone until the engine restarts.
    snapshot.service(name="Debian's nftables.service off (it flushes every table)", service="nftables",
                     running=False, enabled=False)
    # Loaded until the kernel holds what is on disk (tasks/common.py): a run killed between
    # installing the file and loading it is finished by the next one, and so is a table someone
    # deleted or a boot that did not load it (the kernel's listing is part of what is compared).
    # The admin port is in every version of the rules, and each load is one transaction, so no
    # run can lock the admin out.
    apply_when_stale("Load the firewall rules", marker="firewall",
                     effective=f"{{ cat {UNIT_FILE}; nft list table {TABLE}; }}",
                     command=f"systemctl daemon-reload && systemctl enable {UNIT} && systemctl reload-or-restart {UNIT}")
    snapshot.service(name=f"{UNIT} enabled and active", service=UNIT, running=True, enabled=True)
