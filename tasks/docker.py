"""The container engine: Debian's docker.io with Compose v2, logging to the journal, live-restore."""

from pyinfra.api import deploy

from tasks import snapshot
from tasks.common import apply_when_stale, install_validated, staged_template, template

# docker-cli is only a recommend of docker.io; AppArmor too, and dockerd confines containers with
# its profile wherever the kernel has AppArmor (Debian's does).
PACKAGES = ["docker.io", "docker-cli", "docker-compose", "apparmor"]
DAEMON_JSON = "/etc/docker/daemon.json"


@deploy("Docker engine")
def docker():
    # Staged and checked by dockerd itself (`--validate`, Docker 23+; Debian 13 has 26): a
    # daemon.json dockerd rejects would keep the engine, and so the stack, down after a reboot.
    daemon = staged_template(
        "Docker daemon settings (journald logging, live-restore)",
        src=template("docker/daemon.json.j2"),
        dest=DAEMON_JSON,
    )
    install_validated("Install daemon.json (validated by dockerd --validate)", [daemon],
                      check=f"dockerd --validate --config-file {daemon.staged}", marker="docker",
                      overlay=False)
    snapshot.service(name="Docker running", service="docker", running=True, enabled=True)
    # Restarted until it has run with the daemon.json on disk (tasks/common.py); live-restore
    # keeps the containers running meanwhile.
    apply_when_stale("Restart Docker for its settings", marker="docker", effective=f"cat {DAEMON_JSON}",
                     command=f"dockerd --validate --config-file {DAEMON_JSON} && systemctl restart docker")
