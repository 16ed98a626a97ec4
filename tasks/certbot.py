"""The TLS certificate: certbot's webroot method against the configured ACME directory.

nginx serves /.well-known/acme-challenge/ from WEBROOT on port 80 before any certificate
exists; certbot's own timer renews, and its deploy hook reloads nginx.
"""

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server, systemd

from tasks import snapshot
from tasks.common import template

WEBROOT = "/var/www/letsencrypt"
CA_BUNDLE = "/etc/letsencrypt/gitea-deploy-acme-ca.pem"
PACKAGES = ["certbot"]
# A first certificate that is not issued by then will not be: the ACME server or port 80 is unreachable.
ISSUE_WAIT = 300
TIMER_DROP_IN = "/etc/systemd/system/certbot.service.d/gitea-deploy.conf"


def certonly_command(email: str, server: str, domain: str, ca_bundle: str | None) -> str:
    """`certbot certonly` by the webroot method, bounded by ISSUE_WAIT; every value shell-quoted (an
    e-mail may hold ')."""
    env = f"REQUESTS_CA_BUNDLE={shlex.quote(ca_bundle)} " if ca_bundle else ""
    return env + shlex.join([
        "timeout", str(ISSUE_WAIT), "certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
        "--email", email, "--server", server, "--webroot", "-w", WEBROOT, "-d", domain, "--cert-name", domain,
        "--deploy-hook", "systemctl reload nginx",
    ])


def live_dir(data) -> str:
    return f"/etc/letsencrypt/live/{data.get('gitea_domain')}"


def contexts(data) -> dict[str, dict]:
    """Each certbot template's context beyond host data (the unit tests render with it too)."""
    return {"certbot/gitea-deploy.conf.j2": {"ca_bundle": CA_BUNDLE if data.get("acme_ca_bundle") else None}}


def renewal_conf() -> str:
    # A regular file (live/*.pem are symlinks, which pyinfra's File fact does not report).
    return f"/etc/letsencrypt/renewal/{host.data.gitea_domain}.conf"


@deploy("TLS certificate")
def certificate():
    snapshot.directory(name="ACME webroot", path=WEBROOT, mode="755")

    # A private ACME CA (the lab's pebble) is trusted by certbot only, never system-wide.
    bundle = host.data.acme_ca_bundle
    snapshot.directory(name="certbot config", path="/etc/letsencrypt", mode="755")
    if bundle:
        snapshot.put(name="ACME server's CA", src=StringIO(bundle), dest=CA_BUNDLE, mode="644")
    else:
        snapshot.file(name="No private ACME CA", path=CA_BUNDLE, present=False)
    drop_in = snapshot.template(
        name="certbot renewals use the same ACME CA",
        src=template("certbot/gitea-deploy.conf.j2"),
        dest=TIMER_DROP_IN,
        **contexts(host.data)["certbot/gitea-deploy.conf.j2"],
    )
    systemd.daemon_reload(name="Reload systemd units", _if=drop_in.did_change)
    snapshot.service(name="Renewal timer", service="certbot.timer", running=True, enabled=True)

    server.shell(
        name=f"Obtain the certificate for {host.data.gitea_domain} (ACME http-01 on port 80, at most {ISSUE_WAIT} s)",
        commands=[certonly_command(host.data.acme_email, host.data.acme_server, host.data.gitea_domain,
                                   CA_BUNDLE if bundle else None)],
        _if=snapshot.missing(renewal_conf()),
    )
