"""The HTTPS front door: nginx on 80 (ACME challenges, redirect) and 443 (proxy to Gitea).

Stages, because nginx must run before any certificate exists: the port-80 vhost first, then
the certificate (tasks/certbot.py) through it, then the 443 vhost that uses the certificate.
"""

from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from tasks import settings
from tasks.certbot import WEBROOT, certificate, live_dir
from tasks.common import apt_install, template

CONF_DIR = "/etc/nginx/conf.d"
TLS_SNIPPET = "/etc/nginx/snippets/gitea-tls.conf"


def vhost(name: str, **context):
    return files.template(
        name=f"nginx {name}",
        src=template(f"nginx/{name}.j2"),
        dest=f"{CONF_DIR}/{name}",
        mode="644",
        **context,
    )


def reload_if(*changed) -> None:
    """Validate, then reload, only when a vhost changed; a bad config is never loaded."""
    server.shell(name="Check nginx configuration", commands=["nginx -t -q"],
                 _if=[lambda: any(op.did_change() for op in changed)])
    systemd.service(name="nginx running", service="nginx", running=True, enabled=True,
                    reloaded=any(op.will_change for op in changed))


@deploy("Nginx and TLS", data_defaults=settings.defaults("nginx"))
def nginx():
    apt_install(["nginx"])
    # Debian's default site also claims port 80 as default_server.
    default_site = files.link(name="No default site", path="/etc/nginx/sites-enabled/default", present=False)
    snippet = files.template(
        name="nginx TLS settings (Mozilla intermediate)",
        src=template("nginx/gitea-tls.conf.j2"),
        dest=TLS_SNIPPET,
        mode="644",
    )
    http = vhost("gitea-http.conf", webroot=WEBROOT)
    reload_if(default_site, http)

    certificate()

    https = vhost("gitea-https.conf", cert_dir=live_dir(), tls_snippet=TLS_SNIPPET)
    reload_if(snippet, https)
