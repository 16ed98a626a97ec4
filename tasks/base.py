"""The host itself: packages the rest needs, security updates, time zone, and the
administrator's hardened sshd."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from tasks import settings
from tasks.common import REPO, apt_install, template

PACKAGES = ["ca-certificates", "curl", "openssl", "tzdata", "unattended-upgrades"]
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/gitea-deploy.conf"


@deploy("Base system", data_defaults=settings.defaults("base"))
def base():
    files.put(name="apt waits for the dpkg lock", src=str(REPO / "files/base/50gitea-deploy"),
              dest="/etc/apt/apt.conf.d/50gitea-deploy", mode="644")
    apt_install(PACKAGES)
    files.put(name="Daily security updates", src=str(REPO / "files/base/20auto-upgrades"),
              dest="/etc/apt/apt.conf.d/20auto-upgrades", mode="644")

    files.link(
        name="Time zone",
        path="/etc/localtime",
        target=f"/usr/share/zoneinfo/{host.data.timezone}",
    )

    # cloud-init (or the lab) wrote this file with the admin port before the first deploy; the
    # deploy owns it from then on and keeps the port, so git SSH can have port 22.
    sshd = files.template(
        name="Harden sshd and keep it on the admin port",
        src=template("ssh/gitea-deploy.conf.j2"),
        dest=SSHD_DROP_IN,
        mode="644",
    )
    # A config sshd rejects must never be reloaded: the operator would be locked out.
    server.shell(name="Check sshd configuration", commands=["sshd -t"], _if=sshd.did_change)
    systemd.service(name="Reload sshd", service="ssh", running=True, enabled=True,
                    reloaded=sshd.will_change)
