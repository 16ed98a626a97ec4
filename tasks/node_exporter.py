"""node_exporter: the host's metrics on 127.0.0.1 only, with the textfile collector the backup
job writes its outcome to. A minimal start; the monitoring work builds on it."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from tasks import snapshot
from tasks.common import apt_install, template

SERVICE = "prometheus-node-exporter"


@deploy("Node exporter")
def node_exporter():
    # Written before the package: its postinst reloads systemd and starts the service, which then
    # never listens beyond loopback, not even for a moment.
    unit = snapshot.template(
        name="node_exporter on loopback, with the textfile collector",
        src=template("node_exporter/gitea-deploy.conf.j2"),
        dest=f"/etc/systemd/system/{SERVICE}.service.d/gitea-deploy.conf",
        mode="644",
    )
    apt_install([SERVICE], no_recommends=True)
    snapshot.directory(name="Textfile collector directory", path=host.data.node_exporter_textfile_dir, mode="755")
    # did_change, not will_change: will_change runs the template op's check while deploy.py loads,
    # two remote commands on every run, whether or not anything changed.
    systemd.service(name="node_exporter restarted for its unit drop-in", service=SERVICE, restarted=True,
                    daemon_reload=True, _if=unit.did_change)
    snapshot.service(name="node_exporter running", service=SERVICE, running=True, enabled=True)
