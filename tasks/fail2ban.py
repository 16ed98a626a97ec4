"""fail2ban: addresses that keep failing to log in are banned in nftables for a while.

Jails (templates/fail2ban/jail.local.j2, filters in files/fail2ban/): the admin's sshd; Gitea's
sign-in form and its SSH server, both read from the gitea container's journal; git over HTTP and
the API with wrong credentials, and clients past nginx's rate limits, both read from nginx's
refused-requests log (Gitea logs basic-auth failures without the client's address). Bans for the
host's own services are in the input hook; git SSH is Docker-published, so its ban is on the
forward path. After nginx: the log it reads exists once nginx has loaded its vhost.
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy

from tasks import snapshot
from tasks.common import REPO, StagedFile, apply_when_stale, install_validated, staged_put, staged_template, template
from tasks.nginx import REFUSED_LOG

# python3-systemd: the journal backend (a recommend, and the stage installs no recommends).
PACKAGES = ["fail2ban", "python3-systemd"]
JAIL = "/etc/fail2ban/jail.d/gitea-deploy.local"
FILTERS = ("gitea-deploy-web", "gitea-deploy-git-ssh", "gitea-deploy-basic-auth", "gitea-deploy-rate-limited")


def contexts(data) -> dict[str, dict]:
    """The jail template's context: never-banned networks (loopback first) and the log nginx writes."""
    ignore = ["127.0.0.0/8", "::1"] + [str(ipaddress.ip_network(c, strict=False))
                                       for c in data.get("fail2ban_ignore_cidrs") or []]
    return {"fail2ban/jail.local.j2": {"ignoreip": ignore, "refused_log": REFUSED_LOG}}


@deploy("fail2ban")
def fail2ban():
    filters: list[StagedFile] = [
        staged_put(f"fail2ban filter {name}", (REPO / "files/fail2ban" / f"{name}.conf").read_text(),
                   dest=f"/etc/fail2ban/filter.d/{name}.conf")
        for name in FILTERS
    ]
    jail = staged_template("fail2ban jails", src=template("fail2ban/jail.local.j2"), dest=JAIL,
                           **contexts(host.data)["fail2ban/jail.local.j2"])
    # `fail2ban-client -t` parses every jail and filter as the server would (a bad regex fails it).
    install_validated("Install the fail2ban jails and filters (validated by fail2ban-client -t)", [*filters, jail],
                      check="fail2ban-client -t", marker="fail2ban")
    snapshot.service(name="fail2ban running", service="fail2ban", running=True, enabled=True)
    # The server's configuration is what `-d` dumps from disk; reloaded until it runs that.
    apply_when_stale("Reload fail2ban", marker="fail2ban", effective="fail2ban-client -d",
                     command="fail2ban-client -t && systemctl reload-or-restart fail2ban")
