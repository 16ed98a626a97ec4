"""Heartbeat: on AWS, one CloudWatch datapoint a minute that a Terraform alarm treats as breaching
when it is missing (terraform/alerts.tf), so the host dying, or its monitoring, pages someone even
though nothing on the host can say so any more. docs/concepts/heartbeat.md explains it.

The job is files/heartbeat/ (gitea-heartbeat and its systemd timer); its configuration,
heartbeat.json, is every value it uses, from the inventory (Terraform's outputs): the namespace,
the metric, the dimension, the region, and for the emulated AWS the endpoint and the static keys'
file. The switch is metrics_namespace (Terraform's output): without it, or without aws_region,
there is no heartbeat, and a host that had one stops it.
"""

from __future__ import annotations

import json
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy

from tasks import REPO, snapshot
from tasks.backup import CONFIG_DIR, CREDENTIALS_FILE, configuration_directory
from tasks.common import apply_when_stale

NAME = "gitea-heartbeat"
SERVICE, TIMER = f"{NAME}.service", f"{NAME}.timer"
PROGRAM = f"/usr/local/sbin/{NAME}"
CONFIG_FILE = f"{CONFIG_DIR}/heartbeat.json"
UNITS = {unit: f"/etc/systemd/system/{unit}" for unit in (SERVICE, TIMER)}
# The dimension the alarm watches (terraform/alerts.tf: the same name, the same value).
DIMENSION = "Domain"
TIMEOUT_SECONDS = 10  # each AWS or Prometheus call; two calls and a retry stay inside the minute


def enabled(data) -> bool:
    """The host publishes a heartbeat only where Terraform gave it a namespace, in a region."""
    return bool(data.get("metrics_namespace") and data.get("aws_region"))


def packages(data) -> list[str]:
    """python3 is on every Debian image (cloud-init needs it); boto3 signs the request and takes the
    instance role's credentials from IMDS."""
    return ["python3-boto3"] if enabled(data) else []


def watches_prometheus(data) -> bool:
    """The heartbeat means "the host and its monitoring are alive" where the deploy installs
    Prometheus: it is sent only while Prometheus answers. A deploy without Prometheus (before the
    monitoring stage) sends it as long as the host runs."""
    from tasks.packages import wanted  # tasks.packages gathers this module's packages too

    return "prometheus" in wanted(data)


def config(data) -> dict:
    """heartbeat.json: everything gitea-heartbeat reads (it has no defaults of its own)."""
    return {
        "namespace": data.get("metrics_namespace"),
        "metric": data.get("heartbeat_metric"),
        "dimensions": {DIMENSION: data.get("gitea_domain")},
        "region": data.get("aws_region"),
        "endpoint_url": data.get("s3_endpoint") or None,
        "credentials_file": CREDENTIALS_FILE if data.get("backup_aws_access_key_id") else None,
        "prometheus_url": (f"http://127.0.0.1:{data.get('prometheus_port')}/-/healthy"
                           if watches_prometheus(data) else None),
        "timeout_seconds": TIMEOUT_SECONDS,
    }


def render_config(data) -> str:
    return json.dumps(config(data), indent=2, sort_keys=True) + "\n"


@deploy("Heartbeat")
def heartbeat():
    data = host.data
    if not enabled(data):
        # No AWS: nothing to publish to. A host that had a heartbeat keeps the files, stopped.
        snapshot.service(name="Heartbeat timer stopped (no metrics_namespace or aws_region)", service=TIMER,
                         running=False, enabled=False)
        return

    # The static keys, when the inventory has them: the backup stage comes later in deploy.py.
    configuration_directory(data)
    snapshot.put(name="Heartbeat configuration", src=StringIO(render_config(data)), dest=CONFIG_FILE, mode="644")
    snapshot.put(name=f"Install {NAME}", src=str(REPO / "files/heartbeat" / NAME), dest=PROGRAM, mode="755")
    for unit, path in UNITS.items():
        snapshot.put(name=f"Unit {unit}", src=str(REPO / "files/heartbeat" / unit), dest=path, mode="644")
    # Reloaded and restarted until it has run with the units on disk (tasks/common.py): a run killed
    # between writing a unit and the restart is finished by the next one. The program and its
    # configuration are read afresh by every run: they need no restart.
    apply_when_stale("Heartbeat timer restarted for its units", marker="heartbeat",
                     effective=f"cat {' '.join(UNITS.values())}",
                     command=f"systemctl daemon-reload && systemctl restart {TIMER}")
    snapshot.service(name="Heartbeat timer running", service=TIMER, running=True, enabled=True)
