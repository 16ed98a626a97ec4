"""node_exporter: the host's metrics on 127.0.0.1 only, with the textfile collector the backup
job writes its outcome to. A minimal start; the monitoring work builds on it."""

from pyinfra import host
from pyinfra.api import deploy

from tasks import snapshot
from tasks.common import apply_when_stale, template

SERVICE = "prometheus-node-exporter"
# No recommends (tasks/packages.py): the collectors package and dbus are the monitoring stage's.
PACKAGES = [SERVICE]
DROP_IN = f"/etc/systemd/system/{SERVICE}.service.d/gitea-deploy.conf"


def before_install() -> None:
    """Run by the packages stage before the package: its postinst reloads systemd and starts the
    service, which then never listens beyond loopback, not even for a moment."""
    snapshot.template(
        name="node_exporter on loopback, with the textfile collector",
        src=template("node_exporter/gitea-deploy.conf.j2"),
        dest=DROP_IN,
        mode="644",
    )


@deploy("Node exporter")
def node_exporter():
    snapshot.directory(name="Textfile collector directory", path=host.data.node_exporter_textfile_dir, mode="755")
    snapshot.service(name="node_exporter running", service=SERVICE, running=True, enabled=True)
    # Restarted until it has run with the drop-in on disk (tasks/common.py): a run killed between
    # writing the drop-in and the restart is finished by the next one.
    apply_when_stale("node_exporter restarted for its unit drop-in", marker="node_exporter",
                     effective=f"cat {DROP_IN}",
                     command=f"systemctl daemon-reload && systemctl restart {SERVICE}")
