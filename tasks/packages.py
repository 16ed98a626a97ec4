"""Every stage's Debian packages, in one apt transaction before the stages that configure them.

Each concern names its packages in its own module (`PACKAGES`, or `packages(data)` where the
inventory decides); this stage only gathers them, in deploy order. One transaction is one
`apt-get update` and one dpkg run whose triggers (systemd, man-db) fire once: about 18 s on a
bare lab host where one transaction per stage took 46 s.

No recommends, for every package: each module lists what it needs instead (docker-cli is only a
recommend of docker.io), so a host gets no mail server (cron's), git and perl (docker.io's) or
FUSE (restic's) it was never meant to run.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server

from tasks import (
    REPO,
    alerting,
    backup,
    base,
    certbot,
    docker,
    fail2ban,
    firewall,
    hardening,
    heartbeat,
    monitoring,
    nginx,
    node_exporter,
    snapshot,
)


def wanted(data) -> list[str]:
    """Every stage's packages, in deploy order, each once."""
    found = [*base.PACKAGES, *hardening.PACKAGES, *firewall.PACKAGES, *docker.PACKAGES, *nginx.PACKAGES,
             *certbot.PACKAGES, *fail2ban.PACKAGES, *node_exporter.PACKAGES, *monitoring.packages(data),
             *alerting.PACKAGES, *heartbeat.packages(data), *backup.packages(data)]
    return list(dict.fromkeys(found))


@deploy("Packages")
def packages():
    snapshot.put(name="apt waits for the dpkg lock", src=str(REPO / "files/base/50gitea-deploy"),
                 dest="/etc/apt/apt.conf.d/50gitea-deploy", mode="644")
    # A package's postinst starts its service: what that service must start with is on disk first.
    node_exporter.before_install()
    monitoring.before_install()
    alerting.before_install()

    names = wanted(host.data)
    # A run killed inside the transaction leaves packages unpacked but not configured; they count
    # as missing, and apt-get refuses to install until dpkg has finished them. Only while some are.
    server.shell(
        name="Finish an interrupted dpkg run",
        commands=["DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold --configure -a"],
        _if=lambda: bool(snapshot.missing_packages(names)),
    )
    apt.packages(
        name=f"Install {', '.join(names)}",
        packages=names,
        # The index is refreshed only when a package is missing: `update=True` on every run would
        # break the zero-changes guarantee scheduled redeploys rely on.
        update=bool(snapshot.missing_packages(names)),
        no_recommends=True,
        _env={"DEBIAN_FRONTEND": "noninteractive"},
        # Skipped, and so none of its facts asked, while every package is installed (one look at
        # the installed packages serves every stage, tasks/snapshot.py).
        _if=lambda: bool(snapshot.missing_packages(names)),
    )
