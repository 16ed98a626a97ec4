"""The HTTPS front door: nginx on 80 (ACME challenges, redirect) and 443 (proxy to Gitea).

Stages, because nginx must run before any certificate exists: the port-80 vhost first, then
the certificate (tasks/certbot.py) through it, then the 443 vhost that uses the certificate.

Every file is staged, checked by `nginx -t` with the candidates in place, and only then
installed and loaded (tasks/common.py): a config nginx rejects never reaches /etc/nginx, where a
reboot or a package upgrade would load it, and a reload that did not happen is done by the next
deploy.
"""

from pyinfra import host
from pyinfra.api import deploy

from tasks import snapshot
from tasks.certbot import WEBROOT, certificate, live_dir
from tasks.common import StagedFile, apply_when_stale, install_validated, staged_template, template

CONF_DIR = "/etc/nginx/conf.d"
TLS_SNIPPET = "/etc/nginx/snippets/gitea-tls.conf"
# Refused requests only (401 with credentials, 429), in a form no client can shape: fail2ban's jails.
REFUSED_LOG = "/var/log/nginx/gitea-refused.log"
PACKAGES = ["nginx"]


def contexts(data) -> dict[str, dict]:
    """Each nginx template's context beyond host data (the unit tests render with it too)."""
    return {
        "nginx/gitea-tls.conf.j2": {},
        "nginx/gitea-http.conf.j2": {"webroot": WEBROOT},
        "nginx/gitea-https.conf.j2": {"cert_dir": live_dir(data), "tls_snippet": TLS_SNIPPET,
                                      "refused_log": REFUSED_LOG},
        "nginx/gitea-status.conf.j2": {},
    }


def vhost(name: str) -> StagedFile:
    return staged_template(f"nginx {name}", src=template(f"nginx/{name}.j2"), dest=f"{CONF_DIR}/{name}",
                           **contexts(host.data)[f"nginx/{name}.j2"])


def install_and_reload(stage: str, staged: list[StagedFile]) -> None:
    """Validate and install the staged files, then reload nginx unless it runs what is on disk."""
    names = ", ".join(f.live.rsplit("/", 1)[1] for f in staged)
    install_validated(f"Install nginx {names} (validated by nginx -t)", staged,
                      check="nginx -t -q", marker="nginx")
    apply_when_stale(f"Reload nginx ({stage})", marker="nginx", effective="nginx -T",
                     command="nginx -t -q && systemctl reload nginx")


@deploy("Nginx and TLS")
def nginx():
    # Debian's default site also claims port 80 as default_server. Removing it changes what
    # `nginx -T` shows, so the reload below follows even if this run is cut short.
    snapshot.link(name="No default site", path="/etc/nginx/sites-enabled/default", present=False)
    snapshot.service(name="nginx running", service="nginx", running=True, enabled=True)
    snippet = staged_template("nginx TLS settings (Mozilla intermediate)", src=template("nginx/gitea-tls.conf.j2"),
                              dest=TLS_SNIPPET)
    http = vhost("gitea-http.conf")
    # The loopback-only stub_status server the nginx exporter reads (tasks/monitoring.py).
    status = vhost("gitea-status.conf")
    install_and_reload("port 80", [http, status])

    certificate()

    # Created here, not by nginx, so it is never world-readable (client addresses); Debian's
    # logrotate keeps the mode. No owner: logrotate's is as good as nginx's (root opens it).
    snapshot.file(name="Refused-requests log, not world-readable", path=REFUSED_LOG, mode="0640")
    https = vhost("gitea-https.conf")
    install_and_reload("port 443", [snippet, https])
