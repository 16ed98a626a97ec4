"""The host itself: security updates, time zone, the administrator's hardened sshd, and the
journal kept on disk within a size and an age."""

from pyinfra import host
from pyinfra.api import deploy

from tasks import snapshot
from tasks.common import REPO, apply_when_stale, install_validated, staged_template, template

# needrestart: after a library upgrade, unattended-upgrades restarts the daemons that use it
# (never dockerd: needrestart leaves docker to a reboot, and live-restore keeps containers up).
PACKAGES = ["ca-certificates", "curl", "openssl", "tzdata", "unattended-upgrades", "needrestart"]
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/gitea-deploy.conf"
JOURNALD_DROP_IN = "/etc/systemd/journald.conf.d/gitea-deploy.conf"


@deploy("Base system")
def base():
    snapshot.put(name="Daily security updates", src=str(REPO / "files/base/20auto-upgrades"),
                 dest="/etc/apt/apt.conf.d/20auto-upgrades", mode="644")

    snapshot.link(
        name="Time zone",
        path="/etc/localtime",
        target=f"/usr/share/zoneinfo/{host.data.timezone}",
    )

    # cloud-init (or the lab) wrote this file with the admin port before the first deploy; the
    # deploy owns it from then on and keeps the port, so git SSH can have port 22.
    # Staged, validated by `sshd -t` with the candidate in place, then installed: a drop-in sshd
    # rejects is never where a reboot or an openssh upgrade would load it (the operator would be
    # locked out), and a reload that did not happen is retried (tasks/common.py explains how).
    drop_in = staged_template(
        "Harden sshd and keep it on the admin port",
        src=template("ssh/gitea-deploy.conf.j2"),
        dest=SSHD_DROP_IN,
    )
    install_validated("Install the sshd drop-in (validated by sshd -t)", [drop_in],
                      check="sshd -t", marker="sshd")
    snapshot.service(name="sshd running", service="ssh", running=True, enabled=True)
    apply_when_stale("Reload sshd", marker="sshd", effective="sshd -T",
                     command="sshd -t && systemctl reload ssh")

    # The journal on disk, capped: what operators and fail2ban read, kept across reboots.
    snapshot.template(name="Journal: persistent, capped", src=template("journald/gitea-deploy.conf.j2"),
                      dest=JOURNALD_DROP_IN, mode="644")
    apply_when_stale("Restart journald for its settings", marker="journald", effective=f"cat {JOURNALD_DROP_IN}",
                     command="systemctl restart systemd-journald")
