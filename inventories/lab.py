"""Lab hosts: throwaway Debian 13 containers made by `python -m lab up` (see docs/lab.md).

The lab is the production path with the lab playing Terraform: its state (.lab/state.json)
becomes the same `pyinfra_inventory` output terraform/outputs.tf gives, read by the same
inventories/sources.py, and the lab's own values (lab/environment.py) are laid over it with the
same overrides production allows (sources.ENVIRONMENT_KEYS): how to reach the hosts, the ACME
directory and its CA, the image references (the lab registry) and the emulated AWS. How to connect (user `admin`,
sudo) comes from tasks/settings/table.py as for production. No task has a lab-only code path.
"""

import json

from inventories import sources
from inventories.precedence import checked_hosts
from lab import LAB_DIR, environment
from tasks.settings import SettingsError

_STATE = LAB_DIR / "state.json"

if not _STATE.exists():
    raise SettingsError(f"no lab state at {_STATE}: run `make lab` (or `python -m lab up NAME`) first")

_state = json.loads(_STATE.read_text())


def _terraform_host(name: str, h: dict) -> dict:
    """One host as terraform/outputs.tf's pyinfra_inventory describes it."""
    port = h.get("admin_ssh_port", 2222)
    return {
        "name": name,
        # The host's own address on the lab network, as an EC2 instance's public IP: outside
        # checks (tests/host) reach exactly what the internet would.
        "ssh_hostname": h["ip"],
        "ssh_port": port,
        "ssh_user": sources.SSH_USER,
        "admin_ssh_port": port,
        "gitea_domain": "git.lab.test",
        "aws_region": "us-east-1",
        "backup_s3_bucket": "gitea-lab-backups",
        "backup_s3_prefix": "gitea",
        "ssm_parameter_path": "/gitea-deploy/lab",
        "database_endpoint": None,
        # Named as terraform/iam.tf names it (GiteaDeploy/<name>): the heartbeat goes to the host's
        # moto, like the backups.
        "metrics_namespace": f"GiteaDeploy/{name}",
        "heartbeat_metric": "Heartbeat",
        # The lab plays a Terraform without the alerts topic: the lab tests that publish to moto's
        # SNS create the topic and name it (--data alert_sns_topic_arn=...).
        "alert_sns_topic_arn": None,
    }


try:
    _hosts = [
        host
        for name, h in sorted(_state["hosts"].items())
        for host in sources.with_overrides(
            sources.from_terraform(outputs_json={"pyinfra_inventory": {"value": [_terraform_host(name, h)]}}),
            environment.overrides(_state, name))
    ]
except LookupError as error:
    raise SettingsError(str(error)) from None

lab = checked_hosts(_hosts, group="lab")
