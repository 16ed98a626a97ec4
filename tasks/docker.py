"""The container engine: Debian's docker.io with Compose v2, rotating logs, live-restore."""

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from tasks import settings
from tasks.common import apt_install, template


@deploy("Docker engine", data_defaults=settings.defaults("docker"))
def docker():
    apt_install(["docker.io", "docker-compose"])

    daemon = files.template(
        name="Docker daemon settings (log rotation, live-restore)",
        src=template("docker/daemon.json.j2"),
        dest="/etc/docker/daemon.json",
        mode="644",
    )
    # live-restore keeps the containers running while the daemon restarts.
    systemd.service(name="Docker running", service="docker", running=True, enabled=True,
                    restarted=daemon.will_change)
